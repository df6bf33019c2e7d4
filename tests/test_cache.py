"""The in-memory feature cache: the FeatureCache contract the searcher relies on."""

from __future__ import annotations

import numpy as np

from cascade.cache import MemoryCache
from tests.fakes import run_in_threads


def test_get_returns_only_what_was_put_for_that_encoder():
    cache = MemoryCache()
    cache.put("enc:a", {"img1": np.array([1.0, 2.0]), "img2": np.array([3.0, 4.0])})
    cache.put("enc:b", {"img1": np.array([9.0, 9.0])})
    found = cache.get("enc:a", ["img2", "img3", "img1"])
    assert sorted(found) == ["img1", "img2"]  # img3 is simply absent
    assert found["img1"].tolist() == [1.0, 2.0] and found["img2"].tolist() == [3.0, 4.0]
    assert cache.get("enc:b", ["img1"])["img1"].tolist() == [9.0, 9.0]  # keys are (encoder, image)
    assert cache.get("enc:c", ["img1"]) == {}
    assert (cache.count("enc:a"), cache.count("enc:b"), cache.count("enc:c")) == (2, 1, 0)


def test_an_id_already_present_keeps_its_first_value_and_rows_are_float32():
    cache = MemoryCache()
    cache.put("enc", {"img": np.array([1, 2], dtype=np.int64)})
    cache.put("enc", {"img": np.array([5.0, 6.0])})
    row = cache.get("enc", ["img"])["img"]
    assert row.dtype == np.float32 and row.tolist() == [1.0, 2.0]
    assert cache.count("enc") == 1


def test_concurrent_puts_of_the_same_ids_store_each_once():
    cache = MemoryCache()

    def put(index: int) -> None:
        cache.put("enc", {f"img{i}": np.full(4, float(index)) for i in range(100)})

    assert run_in_threads(put, 8) == []
    assert cache.count("enc") == 100
    values = {float(row[0]) for row in cache.get("enc", [f"img{i}" for i in range(100)]).values()}
    assert values <= set(map(float, range(8)))  # one writer's row per id, never a mix
    assert all(len(set(row.tolist())) == 1 for row in cache.get("enc", [f"img{i}" for i in range(100)]).values())
