"""The command line's progress: one line per step into a file or a pipe, no bar for a step with nothing to do."""

from __future__ import annotations

import io
import json

from analysis.progress import Bars, Step, Unit
from cascade_cli import main
from tests.fakes import make_gallery

SMALL = "openclip:tiny-vit-s@random"


class _File(io.StringIO):
    """A stream that is not a terminal (``2>log``)."""

    def isatty(self) -> bool:
        return False


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _drive(stream: io.StringIO, steps: int = 500) -> None:
    with Bars(stream=stream) as bars:
        for done in range(steps + 1):
            bars(Step("embedding", Unit.IMAGES), done, steps)
        for done in range(11):
            bars(Step("queries", Unit.QUERIES), done, 10)


def test_into_a_file_each_step_is_one_line():
    log = _File()
    _drive(log)
    text = log.getvalue()
    lines = text.splitlines()
    assert len(lines) == 2 and "\r" not in text, text
    assert lines[0].startswith("embedding: 500/500 images in ") and lines[0].endswith(" s")
    assert lines[1].startswith("queries: 10/10 queries in ")


def test_on_a_terminal_the_bar_redraws_in_place():
    terminal = _Terminal()
    _drive(terminal, steps=50)
    assert terminal.getvalue().count("\r") > 4  # frames, redrawn (the old behaviour, kept for people)


def test_a_step_with_nothing_to_do_draws_no_bar():
    log = _File()
    with Bars(stream=log) as bars:
        bars(Step("loading the encoders"), 0, 0)  # no count: nothing to draw
        bars(Step("embedding"), 5000, 5000)  # every image cached: the first report is the last
    assert log.getvalue() == ""


def test_a_repeated_search_reports_no_embedding_bar(tmp_path, capfd):
    """End to end: the second search of a folder finds every image cached, and its stderr has no embedding bar."""
    gallery = make_gallery(tmp_path / "gallery", 12)[0].parent
    argv = ["search", "a red circle", "--images", str(gallery), "--levels", SMALL, "--ks", "5", "--json"]
    db = str(tmp_path / "db.duckdb")
    assert main([*argv, "--db", db]) == 0
    first = capfd.readouterr()
    assert "embedding" in first.err and json.loads(first.out)["levels"][0]["k"] == 5
    assert main([*argv, "--db", db]) == 0
    assert "embedding" not in capfd.readouterr().err
