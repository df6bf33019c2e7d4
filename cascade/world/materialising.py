"""Writing a held-out gallery to disk once: PNGs and a Karpathy-style JSON, built beside the target and renamed."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from cascade.paths import cache_dir
from cascade.world.datasets import GALLERY_SIZES, TEST_GALLERY_SEED, WORLD_VERSION, GalleryItem, gallery


def materialise(split: str = "test", root: Path | None = None) -> tuple[Path, Path]:
    """Write a held-out gallery (PNGs + Karpathy-style JSON) once; later calls return at once.

    Args:
        split: ``"test"`` (TEST_GALLERY_IMAGES, for recall) or ``"lifetime"``
            (LIFETIME_GALLERY_IMAGES, for lifetime replays; about 2.5 min and 460 MB
            the first time). Both hold test-split scenes only, captioned as the test
            split in the JSON. The training stream is generated on the fly.
        root: parent folder; default ``cache_dir() / "shapes-world"``.

    Returns:
        ``(json_path, image_root)``; an image's file is ``image_root / filepath / filename``.
    """
    if split not in GALLERY_SIZES:
        raise ValueError(
            f"galleries are {' and '.join(GALLERY_SIZES)} (training data is generated on the fly), got {split!r}"
        )
    root = Path(root) if root is not None else cache_dir() / "shapes-world"
    return _materialise_gallery(root / f"{split}-v{WORLD_VERSION}", GALLERY_SIZES[split], TEST_GALLERY_SEED)


def materialise_small(root: Path, n_images: int = 50, seed: int = 0) -> tuple[Path, Path]:
    """Like ``materialise`` but a small gallery of ``n_images`` (for tests and demos) under ``root``."""
    return _materialise_gallery(Path(root) / f"small-v{WORLD_VERSION}-n{n_images}-s{seed}", n_images, seed)


def _materialise_gallery(folder: Path, n_images: int, seed: int) -> tuple[Path, Path]:
    marker = {"world_version": WORLD_VERSION, "n_images": n_images, "seed": seed}
    json_path = folder / "captions.json"
    if _is_complete(folder, marker):
        return json_path, folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename: a killed run leaves a temp folder, never a half world.
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        _write_gallery(staging, gallery(n_images, seed))
        (staging / "COMPLETE.json").write_text(json.dumps(marker))
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
        try:
            os.replace(staging, folder)
        except OSError:
            if not _is_complete(folder, marker):  # lost a race to another writer: theirs is as good
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return json_path, folder


def _is_complete(folder: Path, marker: dict) -> bool:
    try:
        return json.loads((folder / "COMPLETE.json").read_text()) == marker
    except (OSError, ValueError):
        return False


def _write_gallery(folder: Path, items: Sequence[GalleryItem]) -> None:
    (folder / "images").mkdir(parents=True)
    records, sentence_id = [], 0
    for item in tqdm(items, desc="writing the gallery", unit="image", disable=None):
        filename = f"{item.index:06d}.png"
        Image.fromarray(item.image()).save(folder / "images" / filename, compress_level=1)
        sentences = []
        for text in item.captions:
            sentences.append({"raw": text, "tokens": text.split(), "imgid": item.index, "sentid": sentence_id})
            sentence_id += 1
        records.append(
            {
                "filename": filename,
                "filepath": "images",
                "split": "test",
                "imgid": item.index,
                "sentids": [s["sentid"] for s in sentences],
                "sentences": sentences,
            }
        )
    (folder / "captions.json").write_text(json.dumps({"dataset": "shapes-world", "images": records}))
