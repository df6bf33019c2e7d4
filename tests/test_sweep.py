"""The k_1 sweep: each row is the evaluation of that k_1 run on its own; the marked k_1 follows the rule."""

from __future__ import annotations

import pytest

from analysis.evaluate import EvalResult
from analysis.sweep import smallest_within, sweep_k1
from cascade.corpus import Corpus
from cascade.errors import ConfigError
from tests import brute_force
from tests.fakes import LARGE_MACS, SMALL_MACS, make_karpathy, small_and_large


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Corpus:
    json_path, root = make_karpathy(tmp_path_factory.mktemp("sweep"), n_images=40, captions_per_image=1)
    return Corpus.from_karpathy(json_path, root)


def _brute_force_rows(small, large, corpus: Corpus, k1s, limit: int | None = None) -> tuple[dict, tuple]:
    """k_1 -> (R@1, R@5, R@10, image MACs, alpha) of ``[small, large]``, and large alone's recalls, by numpy."""
    texts = [caption for image_id in corpus.ids for caption in corpus.captions[image_id]][:limit]
    positives = [i for i, image_id in enumerate(corpus.ids) for _ in corpus.captions[image_id]][:limit]
    rows = {}
    for k1 in k1s:
        kept = brute_force.cascade_kept([small, large], corpus, (k1, 10), texts)
        curve, alpha = brute_force.lifetime(kept, [small.image_macs, large.image_macs], len(corpus))
        rows[k1] = (*brute_force.recalls([levels[-1] for levels in kept], positives), curve[-1], alpha)
    alone = brute_force.cascade_kept([large], corpus, (10,), texts)
    return rows, brute_force.recalls([levels[0] for levels in alone], positives)


def _within_one_point(rows: dict, reference: tuple) -> int | None:
    """The rule, written out: the smallest k_1 none of whose R@1/5/10 falls more than 1 point under the reference."""
    good = [k1 for k1, row in rows.items() if all(row[i] >= reference[i] - 1.0 for i in range(3))]
    return min(good) if good else None


def test_sweep_rows_equal_brute_force(corpus):
    small, large = small_and_large()
    swept = sweep_k1(small, large, corpus, [20, 10, 40])
    assert [row.ks for row in swept.rows] == [(10, 10), (20, 10), (40, 10)]
    expected, reference = _brute_force_rows(*small_and_large(), corpus, [10, 20, 40])
    for row in swept.rows:
        r1, r5, r10, image_macs, alpha = expected[row.ks[0]]
        assert (row.recall[1], row.recall[5], row.recall[10]) == pytest.approx((r1, r5, r10))
        assert (row.image_macs, row.alpha) == (image_macs, alpha)
        assert (row.n_images, row.n_queries, row.levels) == (40, 40, ("fake:small", "fake:large"))
    ref = swept.reference
    assert (ref.recall[1], ref.recall[5], ref.recall[10]) == pytest.approx(reference)
    assert (ref.ks, ref.image_macs, ref.alpha) == ((10,), 40 * LARGE_MACS, 0.0)
    # k_1 = N hands level 2 everything: the cascade is the last level alone in recall; every image embedded above 1.
    assert expected[40][:3] == pytest.approx(reference) and expected[40][3:] == (40 * (SMALL_MACS + LARGE_MACS), 1.0)
    assert expected[10][:3] != pytest.approx(reference)  # else the sweep below would not tell k_1s apart
    assert swept.smallest_k1 == _within_one_point(expected, reference)
    frame = swept.frame()
    assert frame["series"].tolist() == ["cascade"] * 3 + ["last level alone"]
    # Two queries cannot hand level 2 the whole gallery: k_1 shows in the images embedded above level 1.
    few = sweep_k1(*small_and_large(), corpus, [10, 20], limit=2)
    expected_few, _ = _brute_force_rows(*small_and_large(), corpus, [10, 20], limit=2)
    assert [(row.image_macs, row.alpha) for row in few.rows] == [expected_few[k][3:] for k in (10, 20)]
    assert [row.alpha for row in few.rows] != [1.0, 1.0] and all(row.n_queries == 2 for row in few.rows)
    assert frame["r10"].tolist() == pytest.approx([expected[k][2] for k in (10, 20, 40)] + [reference[2]])


def _row(k1: int, r1: float, r5: float, r10: float) -> EvalResult:
    return EvalResult(("a", "b"), (k1, 10), {1: r1, 5: r5, 10: r10}, 0, 0.0, 100, 100)


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
    expected, reference = _brute_force_rows(small, large, presets.gallery("shapes"), [10, 30], limit=20)
    assert [row["ks"] for row in payload["rows"]] == [[10, 10], [30, 10]]
    assert [row["r10"] for row in payload["rows"]] == pytest.approx([expected[k][2] for k in (10, 30)], abs=1e-4)
    assert [row["r1"] for row in payload["rows"]] == pytest.approx([expected[k][0] for k in (10, 30)], abs=1e-4)
    assert [row["image_macs"] for row in payload["rows"]] == [expected[k][3] for k in (10, 30)]
    assert payload["smallest_k1_within_1_point"] == _within_one_point(expected, reference)
