"""Progress bars for the command lines: tqdm on stderr, so ``--json`` on stdout stays clean."""

from __future__ import annotations

import sys
from collections.abc import Callable

from tqdm import tqdm


def bar(what: str, total: int | None = None, quiet: bool = False, unit: str | None = None) -> tqdm:
    """A bar for ``what``, counting ``unit`` (default: ``q`` for ``"queries"``, else ``img``); hidden when ``quiet``."""
    unit = unit or ("q" if what == "queries" else "img")
    return tqdm(total=total, desc=what, unit=unit, disable=quiet, file=sys.stderr, leave=False)


def callback(progress_bar: tqdm) -> Callable[[int, int], None]:
    """A ``progress(done, total)`` callback, as the searcher, the evaluator and the replay take, that moves the bar."""

    def update(done: int, total: int) -> None:
        progress_bar.total = total
        progress_bar.update(done - progress_bar.n)  # redraws at most every tqdm mininterval

    return update
