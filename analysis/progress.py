"""Progress, typed: what a long step is, what it counts, and how the command line draws it.

The engine reports ``progress(step, done, total)``: ``step`` is a ``Step`` (what is being
done and the ``Unit`` it counts), ``total`` 0 for a step without a count (loading a model).
The page draws it on a Gradio bar (``cascade_ui.common``); the command line on tqdm bars on
stderr (``Bars``), so ``--json`` on stdout stays clean.
"""

from __future__ import annotations

import sys
import time
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
    MODELS = "models"


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


_TQDM_UNITS = {Unit.IMAGES: "img", Unit.QUERIES: "q", Unit.SHARDS: "shard", Unit.FILES: "file", Unit.MODELS: "model"}


def bar(step: Step, total: int | None = None, quiet: bool = False, stream: TextIO | None = None) -> tqdm | LogLine:
    """A progress bar for ``step`` on ``stream`` (stderr); hidden when ``quiet``.

    On a terminal, a tqdm bar redrawn in place. Into a file or a pipe (``2>log``) carriage-return
    frames would pile up (hundreds of KB a run), so the step writes one line when it ends instead.
    """
    stream = stream or sys.stderr
    if not stream.isatty():
        return LogLine(step, total, stream, quiet)
    return tqdm(total=total, desc=step.what, unit=_TQDM_UNITS[step.unit], disable=quiet, file=stream, leave=False)


class LogLine:
    """A step's progress as one line written when it ends (``embedding: 5,000/5,000 images in 12.3 s``)."""

    def __init__(self, step: Step, total: int | None, stream: TextIO, quiet: bool = False) -> None:
        self.step, self.total, self.stream, self.quiet = step, total, stream, quiet
        self.n = 0
        self._started = time.perf_counter()
        self._closed = False

    def update(self, n: int = 1) -> None:
        self.n += n

    def close(self) -> None:
        if self._closed or self.quiet:
            return
        self._closed = True
        of = f"/{self.total:,}" if self.total else ""
        seconds = time.perf_counter() - self._started
        self.stream.write(f"{self.step.what}: {self.n:,}{of} {self.step.unit} in {seconds:.1f} s\n")
        self.stream.flush()

    def __enter__(self) -> LogLine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def callback(progress_bar: tqdm | LogLine) -> Counter:
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
        self._bars: dict[Step, tqdm | LogLine] = {}

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
