"""The Cost tab's replay, run live: the queries in a worker thread, the page redrawn every second as they run."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import gradio as gr

from analysis.engine import Choice, Engine
from analysis.progress import Step, Unit
from analysis.query_logs import QueryLog
from analysis.replay import ReplayResult
from cascade_ui.common import describe, progress_fn
from cascade_ui.formatting import replay_done

REPLAY_REFRESH_S = 1.0
# A replay whose page stopped listening (Stop pressed, tab closed) for this long stops itself: Gradio
# cancels the event, but a sync generator's ``finally`` runs only when it is garbage collected.
REPLAY_ABANDONED_S = 5.0
QUERIES = Step("queries", Unit.QUERIES)


@dataclass(frozen=True)
class Replay:
    """One replay a session asked for: a synthetic workload (``zipf``/``uniform``, ``n`` queries, ``seed``),
    or the queries of an uploaded ``log`` (``kind`` then names it: ``file:NAME``)."""

    choice: Choice
    kind: str
    n: int
    seed: int = 0
    log: QueryLog | None = None

    @property
    def where(self) -> str:
        return self.kind if self.log is not None else f"{self.kind}, seed {self.seed}"


@dataclass
class ReplayWatch:
    """What the replay's worker thread tells the generator that redraws the page, and when the page last asked.

    Plain attribute reads and writes: one writer per field, and a stale read only delays a redraw by a poll.
    """

    total: int
    step: Step = QUERIES
    done: int = 0
    polled: float = field(default_factory=time.monotonic)
    result: ReplayResult | None = None
    error: BaseException | None = None


def replay_updates(
    engine: Engine, replay: Replay, progress: gr.Progress, redraw: Callable[[str], dict]
) -> Iterator[dict]:
    """Run ``replay`` in a worker thread; yield ``redraw(status line)`` every second, then with the measured alpha.

    The worker, not this generator, runs the queries: a generator only runs between
    yields, and the page should redraw while the replay is busy. The generator's polls
    are the worker's heartbeat: once they stop (Stop pressed, page closed), it stops.
    """
    stop, watch = threading.Event(), ReplayWatch(total=replay.n)
    worker = threading.Thread(target=_work, args=(engine, replay, watch, stop), name="replay", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(REPLAY_REFRESH_S)
            watch.polled = time.monotonic()
            progress_fn(progress)(watch.step, watch.done, watch.total)
            yield redraw(f"Replaying: {watch.done:,} of {replay.n:,} queries ({replay.where})…")
        verdict = replay_verdict(engine, replay.choice, watch)
        if replay.log is not None and replay.log.skipped_empty and watch.error is None:
            verdict += f" {replay.log.skipped_empty:,} empty line(s) of the log skipped."
        yield redraw(verdict)
    finally:
        stop.set()


def _work(engine: Engine, replay: Replay, watch: ReplayWatch, stop: threading.Event) -> None:
    """The worker: the replay, its progress into ``watch``; it stops once the page stopped polling."""

    def on_query(done, result, cumulative):
        watch.step, watch.done, watch.total = QUERIES, done, replay.n
        if time.monotonic() - watch.polled > REPLAY_ABANDONED_S:
            stop.set()

    def on_progress(step: Step, done: int, total: int) -> None:
        watch.step, watch.done, watch.total = step, done, total

    extra = {} if replay.log is None else {"queries": replay.log.queries}  # a synthetic workload: the call as before
    try:
        args = (replay.choice, replay.kind, replay.n, replay.seed, on_query, stop, on_progress)
        watch.result = engine.replay(*args, **extra)
    except Exception as err:  # noqa: BLE001  (reported by the generator)
        watch.error = err


def replay_verdict(engine: Engine, current: Choice, watch: ReplayWatch) -> str:
    """The status line once the worker ended: its error as one line (and a toast), or the measured alpha."""
    if watch.error is not None:
        message = describe(watch.error)
        gr.Warning(message)
        return f"**Replay:** {message}"
    n_images = len(engine.corpus(current.gallery))  # cached by the replay
    return replay_done(watch.result, engine.measured_alpha(current), current.ks[0], n_images)
