"""The import direction app.py -> analysis -> cascade, checked on the source."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FORBIDDEN = {
    "cascade": {"gradio", "plotly", "duckdb", "analysis", "app"},
    "analysis": {"gradio", "app"},
}
# The command line is the CLI's "app.py": an entry point at the top of the graph,
# it may reach into analysis (the DuckDB store) like app.py does.
ENTRY_POINTS = {ROOT / "cascade" / "__main__.py"}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_packages_import_only_downwards():
    violations = []
    for package, forbidden in FORBIDDEN.items():
        files = sorted((ROOT / package).rglob("*.py"))
        assert files, f"no python files found in {package}/"
        for path in files:
            if path in ENTRY_POINTS:
                continue
            bad = imported_roots(path) & forbidden
            if bad:
                violations.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert not violations, "\n".join(violations)


def test_importing_the_engine_loads_no_heavy_library():
    """Importing cascade (and the encoder registry) must not pull open_clip, transformers or duckdb."""
    code = (
        "import sys, cascade, cascade.search, cascade.encoders; "
        "heavy = {'open_clip', 'transformers', 'duckdb', 'gradio', 'plotly'} & set(sys.modules); "
        "print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
