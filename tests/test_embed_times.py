"""A stage's trace says where its embedding time went (decode, preprocess, forward); the Space's warm-up runs
before Search turns on, so it never competes with a first visitor's search.

Times are never compared with a target: each step of a fake encoder sleeps a known time, so the step's
measured time is at least that (a lower bound the clock guarantees), and the steps of one batch run in
turn, so together they fit within the stage's latency.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from analysis import front_door
from analysis.switch import NotReady
from cascade.corpus import Corpus
from cascade.search import CascadeSearcher
from tests.fakes import FakeBiEncoder, make_gallery

PREPROCESS_S, FORWARD_S = 0.002, 0.05  # per image; per forward pass


class Slow(FakeBiEncoder):
    """A fake whose preprocessing sleeps per image and whose forward pass sleeps per batch."""

    def preprocess(self, image):
        time.sleep(PREPROCESS_S)
        return super().preprocess(image)

    def encode_pixels(self, pixels):
        time.sleep(FORWARD_S)
        return super().encode_pixels(pixels)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Corpus:
    return Corpus.from_folder(make_gallery(tmp_path_factory.mktemp("gallery"), 20)[0].parent)


def test_a_stage_splits_its_embedding_time_by_step_and_the_steps_fit_in_its_latency(corpus):
    levels = [FakeBiEncoder("small", seed=1, image_macs=10), Slow("large", seed=3, image_macs=1000)]
    searcher = CascadeSearcher(levels, corpus, batch_size=32)  # the 8 misses in one batch: steps run in turn
    first, large = searcher.search("a red circle", (8, 3)).levels
    assert (first.decode_ms, first.preprocess_ms, first.forward_ms) == (0.0, 0.0, 0.0)  # level 1 embeds nothing
    assert large.misses == 8
    assert large.decode_ms > 0.0
    assert large.preprocess_ms >= 8 * PREPROCESS_S * 1000
    assert large.forward_ms >= FORWARD_S * 1000
    assert large.decode_ms + large.preprocess_ms + large.forward_ms <= large.latency_ms

    again = searcher.search("a red circle", (8, 3)).levels[1]  # every image cached: nothing embedded, nothing timed
    assert again.misses == 0 and (again.decode_ms, again.preprocess_ms, again.forward_ms) == (0.0, 0.0, 0.0)


def test_several_batches_count_every_forward_pass(corpus):
    levels = [FakeBiEncoder("small", seed=1, image_macs=10), Slow("large", seed=3, image_macs=1000)]
    large = CascadeSearcher(levels, corpus, batch_size=3).search("two blue squares", (8, 3)).levels[1]
    assert large.misses == 8
    assert large.forward_ms >= 3 * FORWARD_S * 1000  # batches of 3, 3, 2
    assert large.preprocess_ms >= 8 * PREPROCESS_S * 1000


def test_the_warm_up_runs_before_search_turns_on(engine):
    seen: list[tuple[bool, front_door.Phase, bool]] = []

    def warm_up() -> None:
        try:
            engine.cascades  # noqa: B018  (a visitor's search goes through the gate)
            gate_closed = False
        except NotReady:
            gate_closed = True
        built = engine.open_default() is not None  # the warm-up's own steps pass the gate
        seen.append((gate_closed, preparation.report().phase, built))

    preparation = front_door.Preparation(engine, "test", ready=lambda name, progress: None, then=warm_up)
    preparation.start()
    preparation.join(60)
    assert seen == [(True, front_door.Phase.PREPARING, True)]
    assert preparation.report().phase is front_door.Phase.READY
    result = engine.search(engine.default_choice(), "a red circle").result  # the gate is open
    assert len(result.levels[-1].ids) == engine.preset.ks[-1]


def test_a_failing_warm_up_still_turns_search_on(engine):
    def warm_up() -> None:
        raise RuntimeError("the warm-up broke")

    preparation = front_door.Preparation(engine, "test", ready=lambda name, progress: None, then=warm_up)
    thread_errors: list[BaseException] = []
    previous = threading.excepthook
    threading.excepthook = lambda args: thread_errors.append(args.exc_value)
    try:
        preparation.start()
        preparation.join(60)
    finally:
        threading.excepthook = previous
    assert [str(e) for e in thread_errors] == ["the warm-up broke"]
    assert preparation.report().phase is front_door.Phase.READY
    assert np.isfinite(engine.search(engine.default_choice(), "a red circle").result.latency_ms)
