"""Weights-aware encoder ids: a hub snapshot's revision, a folder's digest; replaced weights miss the cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cascade.cache import MemoryCache
from cascade.corpus import Corpus
from cascade.encoders import blip, create_encoder, hub
from cascade.search import CascadeSearcher
from tests.blip_tiny import save_tiny_checkpoint
from tests.fakes import make_gallery

REPO = "Salesforce/blip-itm-base-coco"
COMMITS = ("a" * 8 + "0123456789abcdef" * 2, "b" * 8 + "fedcba9876543210" * 2)  # 40 hex digits each


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face cache of this test's own, offline."""
    from huggingface_hub import constants

    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    blip.load_checkpoint.cache_clear()
    create_encoder.cache_clear()
    yield cache
    blip.load_checkpoint.cache_clear()
    create_encoder.cache_clear()


def put_snapshot(cache: Path, repo: str, commit: str, files: Path) -> Path:
    """Lay ``files`` out as huggingface_hub caches a snapshot (refs/main -> snapshots/<commit>)."""
    root = cache / f"models--{repo.replace('/', '--')}"
    shutil.copytree(files, root / "snapshots" / commit)
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / "main").write_text(commit)
    return root / "snapshots" / commit


def test_revision_of_reads_the_snapshot_commit(tmp_path):
    snapshot = tmp_path / "models--org--name" / "snapshots" / COMMITS[0]
    assert hub.revision_of(snapshot / "sub" / "model.safetensors") == COMMITS[0][:12]
    assert hub.revision_of(snapshot) == COMMITS[0][:12]
    assert hub.revision_of(tmp_path / "my-checkpoint" / "model.safetensors") is None


def test_hub_ids_carry_the_snapshot_revision(hub_cache, tmp_path):
    put_snapshot(hub_cache, REPO, COMMITS[0], save_tiny_checkpoint(tmp_path / "v1"))
    first = create_encoder("blip:base")
    assert first.id == f"blip:{REPO}#rev-{COMMITS[0][:12]}" and first.name == "BLIP-base"
    assert create_encoder("blip:base+itm").id == f"blip:{REPO}+itm#rev-{COMMITS[0][:12]}"

    # The hub's main moves to a new commit: a new id, so features cached for the old one stop matching.
    put_snapshot(hub_cache, REPO, COMMITS[1], save_tiny_checkpoint(tmp_path / "v2", seed=1))
    blip.load_checkpoint.cache_clear()
    create_encoder.cache_clear()
    assert create_encoder("blip:base").id == f"blip:{REPO}#rev-{COMMITS[1][:12]}"


def test_replaced_weights_miss_the_cache(hub_cache, tmp_path):
    folder = save_tiny_checkpoint(tmp_path / "blip")
    corpus = Corpus.from_folder(make_gallery(tmp_path / "gallery", 6)[0].parent)
    cache = MemoryCache()
    old = create_encoder(f"blip:{folder}")
    assert CascadeSearcher([old], corpus, cache=cache).build().image_macs == 6 * old.image_macs
    assert CascadeSearcher([old], corpus, cache=cache).build().image_macs == 0  # same weights: all hits

    # Other weights under the same folder name and file names: a new id, every image encoded again.
    shutil.copy(save_tiny_checkpoint(tmp_path / "other", seed=7) / "model.safetensors", folder / "model.safetensors")
    blip.load_checkpoint.cache_clear()
    create_encoder.cache_clear()
    new = create_encoder(f"blip:{folder}")
    assert new.id != old.id and new.id.startswith(f"blip:{folder.resolve()}#file-")
    assert cache.count(new.id) == 0
    assert CascadeSearcher([new], corpus, cache=cache).build().image_macs == 6 * new.image_macs
    assert cache.count(old.id) == cache.count(new.id) == 6  # old rows stay, unmatched


def test_openclip_tags_carry_the_snapshot_revision(hub_cache, tmp_path):
    from cascade.encoders import open_clip as backend

    library = backend._open_clip()
    arch, tag = "ViT-B-16", "laion2b_s34b_b88k"
    repo_id = library.get_pretrained_cfg(arch, tag)["hf_hub"].rstrip("/")
    files = tmp_path / "files"
    files.mkdir()
    (files / "open_clip_model.safetensors").write_bytes(b"not read here")
    put_snapshot(hub_cache, repo_id, COMMITS[1], files)
    found_repo, filenames = backend._require_pretrained(library, arch, tag)  # cached: no network needed
    assert found_repo == repo_id
    assert backend._tag_revision(library, arch, tag, found_repo, filenames) == f"rev-{COMMITS[1][:12]}"
