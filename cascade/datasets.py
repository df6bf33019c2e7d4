"""Captioned benchmark galleries by name: ``flickr30k`` and ``coco``, read from the hub once.

Source: the CLIP_benchmark webdataset repositories (their ``build_wds_dataset`` reads
them so): ``test/nshards.txt`` holds the number of shards, ``test/0.tar`` ... hold the
samples; a sample is ``KEY.webp`` (or ``.jpg``/``.jpeg``/``.png``) beside ``KEY.txt``,
its reference captions one per line. The files come through huggingface_hub (its own
cache, so a shard is downloaded once); the tars are read with the standard library.

Materialised once under ``cache_dir()/datasets/NAME/``::

    images/KEY.EXT        the photos, each written to a temporary name and renamed
    shards/N.json         shard N is fully written (its samples' files, ids, captions)
    captions.json         the Karpathy-format JSON the evaluator reads (with each image's id)
    COMPLETE.json         everything above is in place: later starts read only this folder

A killed run leaves finished shards (kept) and at most one shard's renamed images
(rewritten next time); no image a marker names is ever half written. Ids are content
hashes computed while writing, stored in the JSON, so a later start re-hashes nothing.
"""

from __future__ import annotations

import errno
import io
import json
import os
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from cascade.corpus import Corpus, ProgressFn, content_id
from cascade.errors import CorpusError
from cascade.paths import cache_dir

IMAGE_EXTENSIONS = ("webp", "jpg", "jpeg", "png")  # the order CLIP_benchmark's loader tries them
FORMAT_VERSION = 1


@dataclass(frozen=True)
class HubDataset:
    """A captioned gallery on the hub, in CLIP_benchmark's webdataset layout.

    Attributes:
        repo_id: hub dataset repository.
        split: the folder of shards (``test``: the Karpathy test split).
        n_images, n_captions: the split's size, as documented (not enforced: a mirror may differ).
    """

    name: str
    repo_id: str
    split: str
    description: str
    n_images: int
    n_captions: int


DATASETS: dict[str, HubDataset] = {
    "flickr30k": HubDataset(
        "flickr30k", "clip-benchmark/wds_flickr30k", "test", "Flickr30k, Karpathy 1k test split", 1_000, 5_000
    ),
    "coco": HubDataset(
        "coco", "clip-benchmark/wds_mscoco_captions", "test", "MS-COCO captions, Karpathy 5k test split", 5_000, 25_000
    ),
}


def names() -> list[str]:
    return sorted(DATASETS)


def get(name: str) -> HubDataset:
    try:
        return DATASETS[name]
    except KeyError:
        raise CorpusError(f"unknown dataset {name!r}; datasets: {', '.join(names())}") from None


def folder(name: str) -> Path:
    """Where ``name`` is (or will be) materialised."""
    return cache_dir() / "datasets" / get(name).name


def corpus(name: str, progress: ProgressFn | None = None) -> Corpus:
    """The materialised gallery ``name`` with its captions (downloads and writes it the first time).

    Args:
        progress: ``(shards done, shards)`` while materialising.
    """
    json_path, root = materialise(name, progress)
    entries = json.loads(json_path.read_text())["images"]
    ids, paths, captions = [], {}, {}
    for entry in entries:
        image_id, path = entry["cascade_id"], root / entry["filepath"] / entry["filename"]
        if image_id not in paths:  # the same photo twice: one image, both captions
            ids.append(image_id)
            paths[image_id] = path
        captions.setdefault(image_id, []).extend(s["raw"] for s in entry["sentences"])
    missing = [p for p in paths.values() if not p.is_file()]
    if missing:
        raise CorpusError(
            f"{len(missing)} image(s) of {name} are gone, e.g. {missing[0]}; delete {root} to materialise it again"
        )
    return Corpus(ids=ids, paths=paths, captions=captions)


def materialise(name: str, progress: ProgressFn | None = None) -> tuple[Path, Path]:
    """Write ``name`` as images plus a Karpathy JSON once; later calls touch neither the hub nor the images.

    Returns:
        ``(json_path, image_root)``.

    Raises:
        CorpusError: unknown name, a corrupt shard, a sample without captions or image, a full disk.
        WeightsUnavailable: a file is neither cached nor downloadable (offline, no such repository).
    """
    dataset, root = get(name), folder(name)
    json_path = root / "captions.json"
    if _complete(root, dataset):
        return json_path, root
    from cascade.encoders import hub

    how = (
        f"run once where the hub is reachable, or copy a Hugging Face cache holding "
        f"datasets--{dataset.repo_id.replace('/', '--')} into $HF_HOME/hub"
    )
    nshards_file = hub.dataset_file(dataset.repo_id, f"{dataset.split}/nshards.txt", how)
    try:
        nshards = int(nshards_file.read_text().strip())
    except ValueError:
        raise CorpusError(f"{dataset.repo_id}: {dataset.split}/nshards.txt is not a number") from None
    try:
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "shards").mkdir(exist_ok=True)
        entries: list[dict] = []
        for shard in range(nshards):
            entries += _shard_entries(dataset, root, shard, how)
            if progress is not None:
                progress(shard + 1, nshards)
        _write_json(json_path, {"dataset": dataset.name, "images": entries})
        _write_json(root / "COMPLETE.json", _marker(dataset, nshards))
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise CorpusError(
                f"the disk filled while writing {name} into {root}; free some space and run "
                "again (finished shards are kept)"
            ) from None
        raise CorpusError(f"could not write {name} into {root}: {err}") from None
    return json_path, root


def _marker(dataset: HubDataset, nshards: int) -> dict:
    return {"format": FORMAT_VERSION, "repo_id": dataset.repo_id, "split": dataset.split, "nshards": nshards}


def _complete(root: Path, dataset: HubDataset) -> bool:
    try:
        marker = json.loads((root / "COMPLETE.json").read_text())
    except (OSError, ValueError):
        return False
    return marker == _marker(dataset, marker.get("nshards")) and (root / "captions.json").is_file()


def _shard_entries(dataset: HubDataset, root: Path, shard: int, how: str) -> list[dict]:
    """Shard ``shard``'s Karpathy entries: read from its marker, or written now from the tar."""
    marker = root / "shards" / f"{shard}.json"
    try:
        return json.loads(marker.read_text())["images"]
    except (OSError, ValueError, KeyError):
        pass
    from cascade.encoders import hub

    tar_path = hub.dataset_file(dataset.repo_id, f"{dataset.split}/{shard}.tar", how)
    entries = []
    try:
        _check_whole(tar_path)
        for key, files in _samples(tar_path):
            entries.append(_write_sample(dataset, root, f"{dataset.split}/{shard}.tar", key, files))
    except (tarfile.TarError, EOFError, zlib.error) as err:
        _forget(tar_path)
        raise CorpusError(
            f"{dataset.repo_id}: shard {dataset.split}/{shard}.tar is truncated or corrupt ({err}); "
            "it was dropped from the cache: run again to download it anew"
        ) from None
    _write_json(marker, {"images": entries})
    return entries


def _check_whole(tar_path: Path) -> None:
    """Raise ``tarfile.ReadError`` unless the archive ends in its end-of-archive marker.

    A download cut at a member boundary reads as a valid, shorter archive, whose last sample may
    lack its captions; without this check that would pass for a bad sample and never be fetched again.
    One pass over the headers only (tarfile seeks past the members' data).
    """
    with tarfile.open(tar_path, mode="r:*") as tar:
        for _ in tar:
            pass
        tar.fileobj.seek(tar.offset)
        if tar.fileobj.read(2 * tarfile.BLOCKSIZE) != bytes(2 * tarfile.BLOCKSIZE):
            raise tarfile.ReadError("it ends without the end-of-archive marker")


def _samples(tar_path: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """``(key, {extension: bytes})`` per sample in tar order; as in webdataset, the key is the name to its first dot."""
    current, files = None, {}
    with tarfile.open(tar_path, mode="r:*") as tar:
        for member in tar:
            if not member.isfile():
                continue
            directory, _, base = member.name.rpartition("/")
            stem, dot, extension = base.partition(".")
            if not dot:
                continue
            key = f"{directory}/{stem}" if directory else stem
            if key != current and current is not None:
                yield current, files
                files = {}
            current = key
            handle = tar.extractfile(member)
            files[extension.lower()] = handle.read() if handle is not None else b""
    if current is not None:
        yield current, files


def _write_sample(dataset: HubDataset, root: Path, shard: str, key: str, files: dict[str, bytes]) -> dict:
    extension = next((e for e in IMAGE_EXTENSIONS if e in files), None)
    if extension is None:
        raise CorpusError(f"{dataset.repo_id}: sample {key} of {shard} has no image ({', '.join(files)})")
    captions = [line.strip() for line in files.get("txt", b"").decode("utf-8", "replace").splitlines()]
    captions = [c for c in captions if c]
    if not captions:
        raise CorpusError(f"{dataset.repo_id}: sample {key} of {shard} has no captions")
    data = files[extension]
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise CorpusError(f"{dataset.repo_id}: the image of sample {key} in {shard} is not readable") from None
    filename = f"{key.replace('/', '_')}.{extension}"
    path = root / "images" / filename
    partial = path.with_name(f".{filename}.part")
    partial.write_bytes(data)
    os.replace(partial, path)
    return {
        "filename": filename,
        "filepath": "images",
        "split": "test",
        "cascade_id": content_id(path),
        "sentences": [{"raw": c} for c in captions],
    }


def _write_json(path: Path, payload: dict) -> None:
    partial = path.with_name(f".{path.name}.part")
    partial.write_text(json.dumps(payload))
    os.replace(partial, path)


def _forget(cached: Path) -> None:
    """Drop a corrupt file from the hub cache (the blob behind the snapshot's link), so the next run fetches it."""
    for path in (cached.resolve(), cached):
        try:
            path.unlink()
        except OSError:
            pass
