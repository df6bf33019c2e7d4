"""Every benchmark section runs in quick mode, and ``python -m bench`` writes its page.

Each section is its own test (and its own pytest-xdist group), so the sections spread over the
cores instead of running one after another in a single subprocess. They run in this process:
the imports are paid once per worker, and a failing section fails with its own traceback.
"""

import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow

KEYS = ("query", "log", "build", "lifetime", "crisp", "evaluation", "index", "index-cascade", "ray", "load")


def _section(key: str):
    from bench.__main__ import SECTIONS

    return next(section for section in SECTIONS if section.key == key)


def test_every_section_is_smoke_tested_here():
    from bench.__main__ import SECTIONS

    assert set(KEYS) == {section.key for section in SECTIONS}


@pytest.mark.parametrize("key", [pytest.param(key, marks=pytest.mark.xdist_group(f"bench-{key}")) for key in KEYS])
def test_section_runs_quick_and_renders_its_table_and_summary(key):
    section = _section(key)
    result = section.run(True)
    table = section.markdown(result)
    assert "|---" in table and "nan" not in table.lower()
    summary = section.summary(result)
    assert summary and all(name and outcome for name, outcome, _ in summary)
    if key == "load":  # the load test's own checks: what the page reports as "0 errors, logged exactly once"
        assert all(row.errors == 0 and row.logged_once and row.answered > 0 for row in result)
    if key == "evaluation":  # the batched evaluator's rows equal the one-search-per-query rows
        assert all(row.rows_equal for row in result)


def test_bench_writes_the_page_with_the_sections_asked_for(tmp_path, capsys):
    out = tmp_path / "benchmarks.md"
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--only", "log", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    assert "| benchmark | result | target |" in text and "\n## Query log\n" in text
    assert "FAILED" not in text and "\n## Load\n" not in text
    from bench.__main__ import main

    with pytest.raises(SystemExit) as bad:  # in this process (--threads 0: torch's thread count left as it is)
        main(["--threads", "0", "--only", "nope", "--out", str(out)])
    assert bad.value.code == 2 and "unknown section(s) nope" in capsys.readouterr().err
    assert "\n## Query log\n" in out.read_text()  # the page written above is left as it was
