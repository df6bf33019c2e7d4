"""The commands behind the README's shapes tables, on tiny galleries: ``cascade compare`` and ``cascade replay``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from analysis import evaluate, presets, replay
from cascade import world
from cascade.encoders import create_encoder
from cascade_cli import main

TEST_IMAGES, LIFETIME_IMAGES = 150, 300
REPLAY_KEYS = {"workload", "queries", "alpha", "cascade_image_macs", "baseline_image_macs", "reduction"}


@pytest.fixture
def tiny_world(monkeypatch):
    """The shapes galleries shrunk (same generator, same seed: the test gallery still opens the lifetime one)."""
    monkeypatch.setitem(world.GALLERY_SIZES, "test", TEST_IMAGES)
    monkeypatch.setitem(world.GALLERY_SIZES, "lifetime", LIFETIME_IMAGES)


def _base(name: str) -> str:
    return name.split("@")[0]


def _level_one_top(encoder_name: str, corpus, texts: list[str], k: int) -> np.ndarray:
    """Each text's top-k gallery positions under one encoder, computed by hand (no searcher): ``(len(texts), k)``."""
    encoder = create_encoder(encoder_name)
    images = encoder.encode_images([corpus.load(image_id) for image_id in corpus.ids])
    scores = encoder.encode_texts(texts) @ images.T
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def test_compare_prints_one_row_per_comparison_of_the_preset(tiny_world, capsys):
    assert main(["compare", "--preset", "shapes", "--json", "--quiet", "--limit", "40"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    comparisons = presets.get("shapes").comparisons
    assert [(tuple(map(_base, row["levels"])), tuple(row["ks"])) for row in rows] == list(comparisons)
    for row in rows:
        assert set(row) == set(evaluate.JSON_KEYS)
        assert row["r1"] == round(row["r1"], 4)  # no float noise in the documented output

    corpus = presets.gallery("shapes")
    texts, positives = evaluate.caption_queries(corpus)
    texts, positives = texts[:40], positives[:40]
    top = _level_one_top("shapes:small", corpus, texts, 15)
    small_alone = rows[0]  # R@k of the small encoder alone, by hand: is the caption's own image in the top k?
    for k in (1, 5, 10):
        hits = sum(int(positive in ranked[:k]) for positive, ranked in zip(positives, top))
        assert small_alone[f"r{k}"] == round(100 * hits / 40, 4)
    small, large = create_encoder("shapes:small"), create_encoder("shapes:large")
    assert small_alone["image_macs"] == TEST_IMAGES * small.image_macs and small_alone["alpha"] == 0
    handed = len(set(top.ravel().tolist()))  # [small, large] at k_1 = 15: level 2 embeds each image handed to it
    cascade = rows[3]
    assert cascade["alpha"] == round(handed / TEST_IMAGES, 4)
    assert cascade["image_macs"] == TEST_IMAGES * small.image_macs + handed * large.image_macs


def test_replay_defaults_to_the_lifetime_gallery_and_prints_the_documented_row(tiny_world, capsys):
    assert main(["replay", "--preset", "shapes", "--workload", "zipf", "--queries", "40", "--json", "--quiet"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert REPLAY_KEYS <= set(row)
    preset = presets.get("shapes")
    assert (row["gallery"], row["images"], row["queries"], row["ks"]) == ("lifetime", LIFETIME_IMAGES, 40,
                                                                         list(preset.ks))  # fmt: skip
    corpus = presets.gallery("shapes", "lifetime")
    queries = replay.workload(corpus, "zipf", 40, seed=0)  # the command's own workload: the input, not the result
    handed = len(set(_level_one_top(preset.levels[0], corpus, queries, preset.ks[0]).ravel().tolist()))
    small, large = (create_encoder(name) for name in preset.levels)
    assert row["distinct_queries"] == len(set(queries))
    assert row["alpha"] == pytest.approx(handed / LIFETIME_IMAGES, abs=1e-4)
    assert row["baseline_image_macs"] == LIFETIME_IMAGES * large.image_macs
    assert row["cascade_image_macs"] == LIFETIME_IMAGES * small.image_macs + handed * large.image_macs
    assert row["reduction"] == pytest.approx(row["baseline_image_macs"] / row["cascade_image_macs"], abs=1e-3)


def test_replay_on_the_test_gallery(tiny_world, capsys):
    assert main(["replay", "--gallery", "test", "--workload", "uniform", "--queries", "30", "--json", "--quiet"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert (row["workload"], row["gallery"], row["images"], row["queries"]) == ("uniform", "test", TEST_IMAGES, 30)


def test_replay_refuses_a_bad_query_count_with_one_line(tiny_world, capsys):
    assert main(["replay", "--queries", "0", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "at least 1" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["compare", "replay"])
@pytest.mark.parametrize(
    ("failure", "code", "says"),
    [
        (OSError(28, "No space left on device"), 1, "error: unexpected OSError: [Errno 28] No space left on device"),
        (KeyboardInterrupt(), 130, "interrupted"),
    ],
)
def test_a_failure_while_materialising_is_one_line_and_an_exit_code(monkeypatch, capsys, command, failure, code, says):
    def fail(*args, **kwargs):
        raise failure

    monkeypatch.setattr(presets, "gallery", fail)
    assert main([command, "--quiet"]) == code
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.splitlines()[0].startswith(says)
    assert len(captured.err.strip().splitlines()) == 1
