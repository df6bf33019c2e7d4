"""The ``cascade`` console script: every command the README documents exists, answers --help, and runs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import cascade_cli
from tests.conftest import ROOT
from tests.fakes import make_gallery

SCRIPT = Path(sys.executable).parent / "cascade"  # installed by `pip install -e .` (dev.sh does it)
TINY = "openclip:tiny-vit-s@random"


def run_script(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)


def readme_commands() -> set[str]:
    """Subcommands the README's command-line section shows, from lines like ``cascade search "QUERY" ...``."""
    text = (ROOT / "README.md").read_text()
    return set(re.findall(r"^cascade ([a-z][a-z0-9-]*)", text, flags=re.MULTILINE))


def registered_commands() -> set[str]:
    sub = next(a for a in cascade_cli.parser()._actions if a.dest == "command")
    return set(sub.choices)


def test_the_script_is_installed():
    assert SCRIPT.is_file(), "run `pip install -e .` (bash dev.sh test does) to install the console script"


def test_the_readme_documents_every_command_and_no_other():
    assert readme_commands() == registered_commands()


@pytest.mark.parametrize("command", sorted(registered_commands()))
def test_every_command_answers_help(command):
    done = run_script(command, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: cascade {command}")


def test_an_unknown_command_is_one_line_and_exit_2():
    done = run_script("serch", "q")
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: cascade: argument COMMAND: invalid choice: 'serch'")
    assert "search" in line  # argparse names the choices (and Python 3.12+ suggests the closest)


def test_a_search_through_the_script_reuses_the_index_and_is_logged(tmp_path, capsys):
    """The real invocation: ``cascade search`` through the script, between an index and a log run in-process.

    In-process, ``index`` and ``log`` run the same ``cascade_cli.main`` the script calls (test_cli covers them);
    the script's process loads the model, reads the index the first wrote and logs what the last reads.
    """
    folder = make_gallery(tmp_path / "gallery", 12)[0].parent
    db = str(tmp_path / "db.duckdb")
    assert cascade_cli.main(["index", "--images", str(folder), "--levels", TINY, "--db", db, "--json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out) == {"images": 12, "embedded": 12, "reused": 0, "skipped": 0}
    found = run_script("search", "a red circle", "--images", str(folder), "--levels", TINY, "--ks", "3",
                       "--db", db, "--json", "--quiet")  # fmt: skip
    assert found.returncode == 0, found.stderr
    (level,) = json.loads(found.stdout)["levels"]
    assert (level["candidates"], level["misses"], len(level["results"])) == (12, 0, 3)  # level 1 reused the index
    assert cascade_cli.main(["log", "--db", db, "--json"]) == 0
    assert [q["query"] for q in json.loads(capsys.readouterr().out)["queries"]] == ["a red circle"]
