"""Materialising a hub dataset when things go wrong: one line, nothing half-written served, the next run resumes.

Each test writes a small simulated hub (tests/hubsim.py) and materialises ``flickr30k`` from it in
this process, through huggingface_hub's own cache lookup (``HF_HUB_OFFLINE=1``, conftest).
"""

from __future__ import annotations

import errno
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from cascade import datasets
from cascade.errors import CorpusError
from tests import hubsim

REPO = "clip-benchmark/wds_flickr30k"
N_IMAGES, N_SHARDS = 8, 2  # 4 samples a shard


@pytest.fixture
def hub(tmp_path, monkeypatch) -> Path:
    """An empty hub cache that huggingface_hub reads (it read HF_HOME at import: point its constant here too)."""
    from huggingface_hub import constants

    cache = tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def put_dataset(hub: Path, shards: list[bytes]) -> None:
    hubsim.put_file(hub, "dataset", REPO, "test/nshards.txt", f"{len(shards)}\n".encode())
    for index, data in enumerate(shards):
        hubsim.put_file(hub, "dataset", REPO, f"test/{index}.tar", data)


def shard_of(samples: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, payload in samples.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def listed_images(root: Path) -> list[Path]:
    entries = json.loads((root / "captions.json").read_text())["images"]
    return [root / e["filepath"] / e["filename"] for e in entries]


def cut_at_last_member(shard: bytes) -> bytes:
    """A download that stopped exactly between two members: tarfile reads it as a whole, shorter archive."""
    with tarfile.open(fileobj=io.BytesIO(shard)) as tar:
        last = tar.getmembers()[-1]  # the last sample's captions: its image stays, its .txt is gone
    return shard[: last.offset]


@pytest.mark.parametrize("cut", ["in half", "between members"])
def test_a_truncated_shard_is_one_line_dropped_from_the_cache_and_the_next_run_resumes(hub, cut):
    good = hubsim.wds_shards(N_IMAGES, N_SHARDS, seed=3)
    broken = good[1][: len(good[1]) // 2] if cut == "in half" else cut_at_last_member(good[1])
    put_dataset(hub, [good[0], broken])  # shard 1 broken, as a download that stopped
    with pytest.raises(CorpusError, match=r"shard test/1.tar is truncated or corrupt .*run again to download it"):
        datasets.materialise("flickr30k")
    root = datasets.folder("flickr30k")
    assert not (root / "COMPLETE.json").exists()  # nothing half-done is ever taken for a dataset
    blobs = {p.name for p in (hub / "datasets--clip-benchmark--wds_flickr30k" / "blobs").iterdir()}
    assert len(blobs) == 2  # nshards.txt and shard 0: the broken blob is gone, so the next run downloads it anew
    shard0 = {p: p.stat().st_mtime_ns for p in (root / "images").iterdir()}
    assert len(shard0) == 4

    hubsim.put_file(hub, "dataset", REPO, "test/1.tar", good[1])  # the next download is whole
    json_path, _ = datasets.materialise("flickr30k")
    images = listed_images(root)
    assert len(images) == N_IMAGES and all(p.is_file() for p in images)
    assert all(p.stat().st_mtime_ns == mtime for p, mtime in shard0.items())  # shard 0 was not written again
    assert not [p for p in (root / "images").iterdir() if p.name.endswith(".part")]


def test_an_interrupted_run_serves_no_half_written_image_and_resumes(hub, monkeypatch):
    put_dataset(hub, hubsim.wds_shards(N_IMAGES, N_SHARDS, seed=4))
    real_replace, done = os.replace, []

    def interrupted(src, dst):  # Ctrl-C after the 6th image's bytes are written, before it is renamed into place
        if Path(dst).parent.name == "images":
            if len(done) == 5:
                raise KeyboardInterrupt
            done.append(dst)
        real_replace(src, dst)

    monkeypatch.setattr(datasets.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        datasets.materialise("flickr30k")
    monkeypatch.setattr(datasets.os, "replace", real_replace)
    root = datasets.folder("flickr30k")
    served = sorted(p.name for p in (root / "images").iterdir() if not p.name.startswith("."))
    assert len(served) == 5  # four of shard 0 plus one of shard 1 (a .part file is never an image of the gallery)
    datasets.materialise("flickr30k")
    assert sorted(p.name for p in listed_images(root)) == sorted(
        p.name for p in (root / "images").iterdir() if not p.name.startswith(".")
    )
    assert len(listed_images(root)) == N_IMAGES


@pytest.mark.parametrize(
    ("samples", "message"),
    [
        ({"s0.jpg": hubsim.photo(__import__("random").Random(0))[0]}, "sample s0 of test/0.tar has no captions"),
        ({"s0.txt": b"a caption"}, "sample s0 of test/0.tar has no image"),
        ({"s0.jpg": b"\xff\xd8 not really a jpeg", "s0.txt": b"a caption"}, "the image of sample s0 in test/0.tar"),
    ],
    ids=["no captions", "no image", "unreadable image"],
)
def test_a_bad_sample_is_one_line(hub, samples, message):
    put_dataset(hub, [shard_of(samples)])
    with pytest.raises(CorpusError, match=message):
        datasets.materialise("flickr30k")
    assert not (datasets.folder("flickr30k") / "COMPLETE.json").exists()


def test_a_full_disk_is_one_line_and_keeps_finished_shards(hub, monkeypatch):
    put_dataset(hub, hubsim.wds_shards(N_IMAGES, N_SHARDS, seed=5))
    real_write = Path.write_bytes

    def fill_up(self, data):
        if "s0000005" in self.name:  # the second sample of shard 1
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", fill_up)
    with pytest.raises(CorpusError, match=r"the disk filled while writing flickr30k .*\(finished shards are kept\)"):
        datasets.materialise("flickr30k")
    assert (datasets.folder("flickr30k") / "shards" / "0.json").is_file()


def test_an_unknown_dataset_lists_the_known_ones():
    with pytest.raises(CorpusError, match="coco, flickr30k"):
        datasets.materialise("imagenet")


def test_a_dataset_repo_that_is_not_there_names_it(hub):
    with pytest.raises(Exception, match="clip-benchmark/wds_flickr30k") as err:
        datasets.materialise("flickr30k")
    assert "\n" not in str(err.value)
