"""The level-1 build on Ray Data (one local Ray on 2 cores): the local build's embeddings, resumable, bad input."""

from __future__ import annotations

import functools
import shutil
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from cascade.cache import MemoryCache
from cascade.corpus import Corpus
from cascade.index import EngineMissing
from cascade.ray_build import EmbedBatch, RayUnavailable, Shard, ray_embed
from cascade.search import CascadeSearcher
from tests.fakes import FakeBiEncoder, make_gallery
from tests.ray_fixtures import ray_group, start_local_ray

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.slow, ray_group]  # one worker, one Ray for these and the CLI's Ray test

make_small = functools.partial(FakeBiEncoder, "small", seed=1, image_macs=10)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Corpus:
    return Corpus.from_folder(make_gallery(tmp_path_factory.mktemp("ray") / "gallery", 40, seed=3)[0].parent)


@pytest.fixture(scope="module")
def local_rows(corpus) -> dict[str, np.ndarray]:
    """The local build (no Ray): image id -> its row, what every Ray build must give bit for bit."""
    searcher = CascadeSearcher([make_small()], corpus, cache=MemoryCache(), batch_size=8)
    searcher.build()
    return dict(zip(corpus.ids, searcher._matrix))


@pytest.fixture(scope="module")
def two_worker_build(tmp_path_factory, corpus) -> tuple[Path, list[Shard]]:
    """One fresh build of the 40 images on 2 actors, 8 a shard: (its shard folder, the shards it yielded)."""
    start_local_ray()
    shard_dir = tmp_path_factory.mktemp("ray-build") / "shards"
    return shard_dir, list(ray_embed(make_small, corpus, corpus.ids, shard_dir, workers=2, rows_per_shard=8))


def stacked(shards: list[Shard], ids: list[str]) -> np.ndarray:
    got = {image_id: row for shard in shards for image_id, row in shard.features().items()}
    return np.stack([got[image_id] for image_id in ids])


def test_a_ray_address_that_does_not_answer_is_one_line(corpus, tmp_path):
    # Whether or not this process already runs a Ray (the group's others share one): the address is checked.
    with pytest.raises(RayUnavailable, match="no Ray cluster answers at 127.0.0.1:9"):
        list(ray_embed(make_small, corpus, corpus.ids, tmp_path / "s", address="127.0.0.1:9"))


def test_an_address_that_does_not_answer_is_refused_beside_a_running_ray(local_ray, corpus, tmp_path):
    assert ray.is_initialized()  # the group's local Ray: the address must not be traded for it
    with pytest.raises(RayUnavailable, match="no Ray cluster answers at 127.0.0.1:9"):
        list(ray_embed(make_small, corpus, corpus.ids, tmp_path / "s", address="127.0.0.1:9"))


def test_ray_not_installed_is_one_line(corpus, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what ``import ray`` meets without the package
    with pytest.raises(EngineMissing, match=r"Ray is not installed: pip install \"ray\[data\]==2.60.0\""):
        list(ray_embed(make_small, corpus, corpus.ids, tmp_path / "s"))


def test_an_actor_embeds_the_files_it_is_handed_as_the_local_build_does(corpus, local_rows):
    threads = torch.get_num_threads()  # the actor takes one thread: its process holds one core
    try:
        embed = EmbedBatch(make_small, batch_size=3)  # 7 images: batches of 3, 3 and 1
        ids = corpus.ids[5:12]
        out = embed({"image_id": np.array(ids), "path": np.array([str(corpus.paths[i]) for i in ids])})
    finally:
        torch.set_num_threads(threads)
    assert out["image_id"].tolist() == list(ids) and out["embedding"].dtype == np.float32
    np.testing.assert_array_equal(out["embedding"], np.stack([local_rows[i] for i in ids]))


def test_ray_build_with_two_workers_gives_the_local_build(two_worker_build, corpus, local_rows):
    shard_dir, shards = two_worker_build
    assert sorted(i for shard in shards for i in shard.ids) == sorted(corpus.ids)  # each image once
    assert not any(shard.resumed for shard in shards)
    np.testing.assert_array_equal(stacked(shards, corpus.ids), np.stack([local_rows[i] for i in corpus.ids]))
    assert len(list(shard_dir.glob("shard-*.parquet"))) == 5  # 40 images, 8 a shard


def test_an_interrupted_ray_build_resumes_from_its_shards(local_ray, two_worker_build, corpus, local_rows, tmp_path):
    # What a killed build leaves: two shards written, one cut short (half its bytes), the last two never made.
    shard_dir = tmp_path / "shards"
    shutil.copytree(two_worker_build[0], shard_dir)
    files = sorted(shard_dir.glob("shard-*.parquet"))
    kept = {tuple(pq.read_table(path).column("image_id").to_pylist()) for path in files[:2]}
    files[2].write_bytes(files[2].read_bytes()[: files[2].stat().st_size // 2])
    for path in files[3:]:
        path.unlink()

    resumed = list(ray_embed(make_small, corpus, corpus.ids, shard_dir, workers=1, rows_per_shard=8))
    assert {shard.ids for shard in resumed if shard.resumed} == kept  # read back, not computed again
    fresh = [image_id for shard in resumed if not shard.resumed for image_id in shard.ids]
    assert sorted(fresh) == sorted(set(corpus.ids) - {i for ids in kept for i in ids})  # the cut one redone too
    np.testing.assert_array_equal(stacked(resumed, corpus.ids), np.stack([local_rows[i] for i in corpus.ids]))
    on_disk = [pq.read_table(path).column("image_id").to_pylist() for path in sorted(shard_dir.glob("shard-*.parquet"))]
    assert sorted(i for ids in on_disk for i in ids) == sorted(corpus.ids)  # no broken shard left, each image once
