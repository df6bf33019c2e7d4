"""Progress, typed: what a long step is, what it counts, and how the command line draws it.

The engine reports ``progress(step, done, total)``: ``step`` is a ``Step`` (what is being
done and the ``Unit`` it counts), ``total`` 0 for a step without a count (loading a model).
The page draws it on a Gradio bar (``cascade_ui.common``); the command line on tqdm bars on
stderr (``Bars``), so ``--json`` on stdout stays clean.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TextIO

from tqdm import tqdm


class Unit(StrEnum):
    """What a step counts (the plural a person reads beside the count)."""

    IMAGES = "images"
    QUERIES = "queries"
    SHARDS = "shards"
    FILES = "files"


@dataclass(frozen=True)
class Step:
    """One long step: ``what`` is done ("embedding", "queries of configuration 1/2"), counting ``unit``."""

    what: str
    unit: Unit = Unit.IMAGES

    def __str__(self) -> str:
        return self.what


Progress = Callable[[Step, int, int], None]
"""``(step, done, total)``; ``total`` 0: the step has no count yet (loading a gallery or a model)."""

Counter = Callable[[int, int], None]
"""``(done, total)``: what the searcher, the evaluator and the replay call."""


def counter(progress: Progress | None, step: Step) -> Counter | None:
    """``progress`` bound to one step, as the searcher's and the evaluator's ``(done, total)`` callback."""
    if progress is None:
        return None
    return lambda done, total: progress(step, done, total)


_TQDM_UNITS = {Unit.IMAGES: "img", Unit.QUERIES: "q", Unit.SHARDS: "shard", Unit.FILES: "file"}


def bar(step: Step, total: int | None = None, quiet: bool = False, stream: TextIO | None = None) -> tqdm:
    """A tqdm bar for ``step`` on ``stream`` (stderr); hidden when ``quiet``.

    On a terminal it redraws in place. Into a file or a pipe (``2>log``) carriage-return frames
    would pile up (hundreds of KB a run), so it writes one line when the step ends instead.
    """
    stream = stream or sys.stderr
    terminal = stream.isatty()
    return tqdm(
        total=total,
        desc=step.what,
        unit=_TQDM_UNITS[step.unit],
        disable=quiet,
        file=stream,
        leave=not terminal,  # the closing frame stays in a log: one line per step
        mininterval=0.1 if terminal else float("inf"),  # no intermediate frames into a file
        delay=0.0,
    )


def callback(progress_bar: tqdm) -> Counter:
    """A ``(done, total)`` callback that moves ``progress_bar``."""

    def update(done: int, total: int) -> None:
        progress_bar.total = total
        progress_bar.update(done - progress_bar.n)  # redraws at most every tqdm mininterval

    return update


class Bars:
    """The command line's ``Progress``: one tqdm bar per step, opened when the step first reports a count.

    A step that reports nothing to do (``done == total``, say a gallery every image of which is cached)
    draws no bar: an empty ``embedding: 0/5000`` says nothing.
    """

    def __init__(self, quiet: bool = False, stream: TextIO | None = None) -> None:
        self.quiet = quiet
        self.stream = stream
        self._bars: dict[Step, tqdm] = {}

    def __call__(self, step: Step, done: int, total: int) -> None:
        if total <= 0:
            return
        current = self._bars.get(step)
        if current is None:
            if done >= total:
                return
            current = self._bars[step] = bar(step, total, self.quiet, self.stream)
        callback(current)(done, total)
        if done >= total:
            self._bars.pop(step).close()

    def close(self) -> None:
        for open_bar in self._bars.values():
            open_bar.close()
        self._bars.clear()

    def __enter__(self) -> Bars:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
