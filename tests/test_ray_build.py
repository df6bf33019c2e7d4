"""The level-1 build on Ray Data (a local Ray on 2 cores): the local build's embeddings, resumable, bad input."""

from __future__ import annotations

import functools
import os
import sys

import numpy as np
import pytest
import torch

from cascade.cache import MemoryCache
from cascade.corpus import Corpus
from cascade.index import EngineMissing
from cascade.ray_build import EmbedBatch, RayUnavailable, ray_embed
from cascade.search import CascadeSearcher
from tests.fakes import FakeBiEncoder, make_gallery

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow

make_small = functools.partial(FakeBiEncoder, "small", seed=1, image_macs=10)


@pytest.fixture(scope="module")
def local_ray():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from cascade.ray_build import _start_ray

    started, _ = _start_ray(None, workers=2)  # one local instance for the module: Ray takes seconds to start
    yield started
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Corpus:
    return Corpus.from_folder(make_gallery(tmp_path_factory.mktemp("ray") / "gallery", 40, seed=3)[0].parent)


def local_build(corpus: Corpus) -> np.ndarray:
    searcher = CascadeSearcher([make_small()], corpus, cache=MemoryCache(), batch_size=8)
    searcher.build()
    return searcher._matrix


def test_a_ray_address_that_does_not_answer_is_one_line(corpus, tmp_path):
    # Whether or not this process already runs a Ray (the group's others share one): the address is checked.
    with pytest.raises(RayUnavailable, match="no Ray cluster answers at 127.0.0.1:9"):
        list(ray_embed(make_small, corpus, corpus.ids, tmp_path / "s", address="127.0.0.1:9"))


def test_an_address_that_does_not_answer_is_refused_beside_a_running_ray(local_ray, corpus, tmp_path):
    assert ray.is_initialized()  # the module's local Ray: the address must not be traded for it
    with pytest.raises(RayUnavailable, match="no Ray cluster answers at 127.0.0.1:9"):
        list(ray_embed(make_small, corpus, corpus.ids, tmp_path / "s", address="127.0.0.1:9"))


def test_ray_not_installed_is_one_line(corpus, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what ``import ray`` meets without the package
    with pytest.raises(EngineMissing, match=r"Ray is not installed: pip install \"ray\[data\]==2.60.0\""):
        list(ray_embed(make_small, corpus, corpus.ids, tmp_path / "s"))


def test_an_actor_embeds_the_files_it_is_handed_as_the_local_build_does(corpus):
    threads = torch.get_num_threads()  # the actor takes one thread: its process holds one core
    try:
        embed = EmbedBatch(make_small, batch_size=3)  # 7 images: batches of 3, 3 and 1
        ids = corpus.ids[5:12]
        out = embed({"image_id": np.array(ids), "path": np.array([str(corpus.paths[i]) for i in ids])})
    finally:
        torch.set_num_threads(threads)
    assert out["image_id"].tolist() == list(ids) and out["embedding"].dtype == np.float32
    np.testing.assert_array_equal(out["embedding"], local_build(corpus)[5:12])


def test_ray_build_with_two_workers_gives_the_local_build(local_ray, corpus, tmp_path):
    shards = list(ray_embed(make_small, corpus, corpus.ids, tmp_path / "shards", workers=2, rows_per_shard=8))
    got = {image_id: row for shard in shards for image_id, row in shard.features().items()}
    assert sorted(got) == sorted(corpus.ids) and not any(shard.resumed for shard in shards)
    np.testing.assert_array_equal(np.stack([got[i] for i in corpus.ids]), local_build(corpus))
    assert len(list((tmp_path / "shards").glob("shard-*.parquet"))) == 5  # 40 images, 8 a shard


def test_an_interrupted_ray_build_resumes_from_its_shards(local_ray, corpus, tmp_path):
    shard_dir = tmp_path / "shards"
    run = ray_embed(make_small, corpus, corpus.ids, shard_dir, workers=2, rows_per_shard=8)
    first = next(run)
    run.close()  # the build stops after one shard (as if killed)
    (shard_dir / "shard-0000000000000000.parquet").write_bytes(b"PAR1 cut short by a kill")
    resumed = list(ray_embed(make_small, corpus, corpus.ids, shard_dir, workers=2, rows_per_shard=8))
    from_disk = [shard for shard in resumed if shard.resumed]
    assert [shard.ids for shard in from_disk] == [first.ids]  # the kept shard, read back; the broken one redone
    assert not (shard_dir / "shard-0000000000000000.parquet").exists()
    fresh = [image_id for shard in resumed if not shard.resumed for image_id in shard.ids]
    assert sorted(fresh) == sorted(set(corpus.ids) - set(first.ids))
    got = {image_id: row for shard in resumed for image_id, row in shard.features().items()}
    np.testing.assert_array_equal(np.stack([got[i] for i in corpus.ids]), local_build(corpus))
