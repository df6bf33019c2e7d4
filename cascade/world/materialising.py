"""Writing a held-out gallery to disk once: PNGs, a Karpathy-style JSON and a pixel array, built beside the target.

The PNGs are what users see and read; the pixel array (``cascade.pixel_array``,
beside the PNGs) holds the same pixels, memory-mapped, so a build or a cache
miss does not pay a PNG decode. Galleries written before the array existed get
one on their next use, decoded from their own PNGs.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from cascade.corpus import content_id, load_image
from cascade.paths import cache_dir
from cascade.pixel_array import PixelArrayWriter, open_pixel_array, pixel_array_path
from cascade.world.datasets import GALLERY_SIZES, TEST_GALLERY_SEED, WORLD_VERSION, GalleryItem, gallery


def materialise(split: str = "test", root: Path | None = None) -> tuple[Path, Path]:
    """Write a held-out gallery (PNGs + Karpathy-style JSON) once; later calls return at once.

    Args:
        split: ``"test"`` (TEST_GALLERY_IMAGES, for recall) or ``"lifetime"``
            (LIFETIME_GALLERY_IMAGES, for lifetime replays; about 2.5 min and 1.7 GB
            the first time: 460 MB of PNGs, 1.2 GB of pixel array). Both hold test-split
            scenes only, captioned as the test split in the JSON. The training stream is generated on the fly.
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
        _ensure_pixel_array(folder, n_images)
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


def _ensure_pixel_array(folder: Path, n_images: int) -> None:
    """Give a complete gallery a verified pixel array, decoding its PNGs if it has none (or a broken one)."""
    images = folder / "images"
    array = open_pixel_array(pixel_array_path(images))
    if array is not None and len(array.ids) == n_images:
        return
    records = json.loads((folder / "captions.json").read_text())["images"]
    paths = [folder / record["filepath"] / record["filename"] for record in records]
    with PixelArrayWriter(pixel_array_path(images)) as writer:
        for path in tqdm(paths, desc="adding the gallery's pixel array", unit="image", disable=None):
            # decoded as the corpus decodes, so a row equals what the PNG would have served
            writer.add(content_id(path), np.asarray(load_image(path)))


def _write_gallery(folder: Path, items: Sequence[GalleryItem]) -> None:
    (folder / "images").mkdir(parents=True)
    with PixelArrayWriter(pixel_array_path(folder / "images")) as pixels:
        records = _write_images(folder, items, pixels)
    (folder / "captions.json").write_text(json.dumps({"dataset": "shapes-world", "images": records}))


def _write_images(folder: Path, items: Sequence[GalleryItem], pixels: PixelArrayWriter) -> list[dict]:
    """Each item's PNG, its row of the pixel array, and its record of the captions JSON."""
    records, sentence_id = [], 0
    for item in tqdm(items, desc="writing the gallery", unit="image", disable=None):
        filename = f"{item.index:06d}.png"
        image = item.image()
        Image.fromarray(image).save(folder / "images" / filename, compress_level=1)
        pixels.add(content_id(folder / "images" / filename), image)  # PNG is lossless: the row is its pixels
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
    return records
