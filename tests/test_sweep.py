"""The k_1 sweep: each row is the evaluation of that k_1 run on its own; the marked k_1 follows the rule."""

from __future__ import annotations

import pytest

from analysis.evaluate import EvalResult, evaluate
from analysis.sweep import smallest_within, sweep_k1
from cascade.corpus import Corpus
from cascade.errors import ConfigError
from cascade.search import CascadeSearcher
from tests.fakes import make_karpathy, small_and_large


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Corpus:
    json_path, root = make_karpathy(tmp_path_factory.mktemp("sweep"), n_images=40, captions_per_image=1)
    return Corpus.from_karpathy(json_path, root)


def test_sweep_rows_equal_separate_evaluations(corpus):
    small, large = small_and_large()
    swept = sweep_k1(small, large, corpus, [20, 10, 40])
    assert [row.ks for row in swept.rows] == [(10, 10), (20, 10), (40, 10)]
    for row in swept.rows:
        alone = evaluate(CascadeSearcher(small_and_large(), corpus), row.ks)
        assert row == alone
    assert swept.reference == evaluate(CascadeSearcher([small_and_large()[1]], corpus), (10,))
    # k_1 = N hands level 2 everything: the cascade is the last level alone, in recall and in images embedded above 1.
    full = swept.rows[-1]
    assert (full.r1, full.r5, full.r10, full.alpha) == (swept.reference.r1, swept.reference.r5,
                                                        swept.reference.r10, 1.0)  # fmt: skip
    assert swept.smallest_k1 == smallest_within(swept.rows, swept.reference)
    frame = swept.frame()
    assert frame["series"].tolist() == ["cascade"] * 3 + ["last level alone"]


def _row(k1: int, r1: float, r5: float, r10: float) -> EvalResult:
    return EvalResult(("a", "b"), (k1, 10), r1, r5, r10, 0, 0.0, 100, 100)


def test_the_smallest_k1_within_one_point_of_every_recall():
    reference = _row(0, 50.0, 70.0, 80.0)
    rows = [_row(10, 49.5, 60.0, 80.0), _row(20, 49.0, 69.0, 79.5), _row(50, 50.0, 70.0, 80.0)]
    assert smallest_within(rows, reference) == 20  # k_1 = 10 is 10 points short at R@5
    assert smallest_within(rows[:1], reference) is None


def test_bad_sweeps(corpus):
    small, large = small_and_large()
    with pytest.raises(ConfigError, match="between k_last"):
        sweep_k1(small, large, corpus, [5])
    with pytest.raises(ConfigError, match="at least one"):
        sweep_k1(small, large, corpus, [])


def test_the_cli_sweep_prints_rows_and_the_marked_k1(monkeypatch, capsys):
    import json

    from analysis import presets
    from cascade import world
    from cascade.encoders import create_encoder
    from cascade_cli import main

    monkeypatch.setitem(world.GALLERY_SIZES, "test", 60)
    assert main(["compare", "--sweep-k1", "10,30", "--limit", "20", "--json", "--quiet"]) == 0
    payload = json.loads(capsys.readouterr().out)
    preset = presets.get("shapes")
    small, large = (create_encoder(name) for name in (preset.levels[0], preset.levels[-1]))
    expected = sweep_k1(small, large, presets.gallery("shapes"), [10, 30], 10, limit=20)
    assert [row["ks"] for row in payload["rows"]] == [[10, 10], [30, 10]]
    assert [row["r10"] for row in payload["rows"]] == [round(r.r10, 4) for r in expected.rows]
    assert [row["image_macs"] for row in payload["rows"]] == [r.image_macs for r in expected.rows]
    assert payload["smallest_k1_within_1_point"] == expected.smallest_k1
