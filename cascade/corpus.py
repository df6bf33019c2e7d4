"""The image collection: stable content-hash ids, file paths, lazy decoding.

Ids are a hash of the file's bytes, not its position or path, so a moved or
renamed folder keeps every cached embedding. Files Pillow cannot read are
skipped and counted, never fatal.

A folder may hold a pixel array beside its images (``cascade.pixel_array``;
the built-in world writes one): an image whose id has a row there is served
from memory, not decoded, and encoders that take pixel arrays get a whole
batch in one slice. The row is the file's decoded pixels, so nothing changes
but the speed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
from PIL import Image, ImageOps

from cascade.errors import CorpusError
from cascade.paths import file_digest
from cascade.pixel_array import PixelArray, open_pixel_array, pixel_array_path

if TYPE_CHECKING:
    import torch

    from cascade.encoders.base import ImageTower

ProgressFn = Callable[[int, int], None]  # (done, total)


def content_id(path: Path) -> str:
    """A file's stable image id: the first 20 hex digits of its BLAKE2b digest."""
    return file_digest(path, hex_digits=20)


FileKey = tuple[str, int, int]  # (absolute path, size in bytes, mtime in ns)


class FileIdCache(Protocol):
    """Remembers image ids of files by (path, size, mtime), like rclip: an unchanged file is not re-hashed."""

    def lookup(self, keys: Sequence[FileKey]) -> dict[FileKey, str]: ...

    def remember(self, ids: dict[FileKey, str]) -> None: ...


def _stat_key(path: Path) -> FileKey:
    stat = path.stat()
    return (str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def load_image(path: Path) -> Image.Image:
    """Decode an image as RGB, EXIF orientation applied (a phone photo stands upright)."""
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image)
        return image.convert("RGB")


def _is_readable_image(path: Path) -> bool:
    try:
        with Image.open(path) as image:
            image.verify()
        return True
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return False


def identify(
    paths: Sequence[Path], progress: ProgressFn | None = None, known: FileIdCache | None = None
) -> list[str | None]:
    """Each file's image id (``content_id``), or None for a file that is not a readable image.

    The one place a file becomes an id: a folder scan and an imported index agree on every id.

    Args:
        known: ids by (path, size, mtime): a file seen before and unchanged is neither re-read nor
            re-checked; the ids computed here are remembered in it.
    """
    stats = [_stat_key(path) for path in paths]
    remembered = known.lookup(stats) if known is not None else {}
    found: list[str | None] = []
    fresh: dict[FileKey, str] = {}
    for done, (path, key) in enumerate(zip(paths, stats), start=1):
        image_id = remembered.get(key)
        if image_id is None and _is_readable_image(path):
            image_id = fresh[key] = content_id(path)
        found.append(image_id)
        if progress is not None:
            progress(done, len(paths))
    if known is not None and fresh:
        known.remember(fresh)
    return found


@runtime_checkable
class TakesPixelArrays(Protocol):
    """An encoder that preprocesses a batch of decoded pixels at once (faster than image by image).

    ``preprocess_pixels(pixels)`` must equal stacking ``preprocess`` of each row as a PIL image, bit for bit.
    """

    def preprocess_pixels(self, pixels: np.ndarray) -> torch.Tensor:
        """``(n, height, width, 3)`` uint8 -> ``(n, 3, image_size, image_size)`` float."""
        ...


@dataclass
class Corpus:
    """An ordered image collection.

    Attributes:
        ids: image ids in corpus order (content hashes, or any unique strings).
        paths: image id -> file path (absent for virtual corpora, e.g. benchmarks).
        skipped: files that were not readable images.
        captions: image id -> reference captions, when the corpus came from a dataset.
        pixel_rows: image id -> (pixel array, row) for images whose decoded pixels are in an array.
    """

    ids: list[str]
    paths: dict[str, Path] = field(default_factory=dict)
    skipped: list[Path] = field(default_factory=list)
    captions: dict[str, list[str]] = field(default_factory=dict)
    pixel_rows: dict[str, tuple[PixelArray, int]] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(set(self.ids)) != len(self.ids):
            raise CorpusError("image ids must be unique")
        self._position = {image_id: i for i, image_id in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    @functools.cached_property
    def fingerprint(self) -> str:
        """16 hex digits identifying the set of images (order-free): logs of different galleries never mix."""
        digest = hashlib.blake2b(digest_size=8)
        for image_id in sorted(self.ids):
            digest.update(image_id.encode())
            digest.update(b"\n")
        return digest.hexdigest()

    def position(self, image_id: str) -> int:
        return self._position[image_id]

    def load(self, image_id: str) -> Image.Image:
        """One image (RGB, EXIF-oriented): from its pixel array if it has a row, else decoded from its file."""
        found = self.pixel_rows.get(image_id)
        if found is not None:
            array, row = found
            return Image.fromarray(np.asarray(array.pixels[row]))
        return load_image(self.paths[image_id])

    def pixels(self, image_ids: Sequence[str]) -> np.ndarray | None:
        """``(n, height, width, 3)`` uint8 of ``image_ids`` from one pixel array, or None if any has no row there."""
        found = [self.pixel_rows.get(image_id) for image_id in image_ids]
        if not found or any(f is None for f in found) or len({id(f[0]) for f in found}) != 1:
            return None
        array = found[0][0]
        return array.pixels[[row for _, row in found]]  # one gather: a copy, safe to hand to torch

    def preprocessed(self, encoder: ImageTower, image_ids: Sequence[str]) -> torch.Tensor:
        """The batch ``encoder.encode_pixels`` takes for ``image_ids``: ``(n, 3, S, S)``.

        Straight from a pixel array when every image has a row in one and the encoder takes
        pixel arrays; otherwise image by image through ``load`` and ``encoder.preprocess``.
        """
        return self.preprocess(encoder, self.decoded(encoder, image_ids))

    def decoded(self, encoder: ImageTower, image_ids: Sequence[str]) -> np.ndarray | list[Image.Image]:
        """``preprocessed``'s first step: ``(n, height, width, 3)`` uint8 gathered from one pixel array when every
        image has a row there and ``encoder`` takes pixel arrays, else the images decoded (``load``)."""
        pixels = self.pixels(image_ids) if isinstance(encoder, TakesPixelArrays) else None
        return pixels if pixels is not None else [self.load(image_id) for image_id in image_ids]

    @staticmethod
    def preprocess(encoder: ImageTower, decoded: np.ndarray | list[Image.Image]) -> torch.Tensor:
        """``preprocessed``'s second step: what ``decoded`` returned, as the encoder's ``(n, 3, S, S)`` batch."""
        import torch

        if isinstance(decoded, np.ndarray):
            return encoder.preprocess_pixels(decoded)
        return torch.stack([encoder.preprocess(image) for image in decoded])

    @classmethod
    def from_paths(
        cls, paths: Iterable[Path], progress: ProgressFn | None = None, known: FileIdCache | None = None
    ) -> Corpus:
        """Hash and check ``paths``; unreadable files land in ``skipped``; duplicates keep their first path.

        Args:
            known: optional cache of ids by (path, size, mtime): a file seen before and unchanged is
                neither re-read nor re-checked (a folder of photos is hashed once, not at every start).
        """
        paths = list(paths)
        ids: list[str] = []
        by_id: dict[str, Path] = {}
        skipped: list[Path] = []
        for path, image_id in zip(paths, identify(paths, progress, known)):
            if image_id is None:
                skipped.append(path)
            elif image_id not in by_id:
                by_id[image_id] = path
                ids.append(image_id)
        return cls(ids=ids, paths=by_id, skipped=skipped, pixel_rows=_pixel_rows(by_id))

    @classmethod
    def from_folder(
        cls, root: str | os.PathLike, progress: ProgressFn | None = None, known: FileIdCache | None = None
    ) -> Corpus:
        """Every readable image below ``root``, recursively, in sorted path order.

        Raises:
            CorpusError: the folder does not exist or holds no readable image.
        """
        root = Path(root).expanduser()
        if not root.is_dir():
            raise CorpusError(f"image folder not found: {root}")
        files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
        corpus = cls.from_paths(files, progress=progress, known=known)
        if not corpus.ids:
            raise CorpusError(f"no readable images in {root} ({len(corpus.skipped)} other file(s))")
        return corpus

    @classmethod
    def from_karpathy(cls, json_path: str | os.PathLike, image_root: str | os.PathLike, split: str = "test") -> Corpus:
        """The images of one split of a Karpathy-format dataset, with their captions.

        Format: ``{"images": [{"filename", "filepath"?, "split", "sentences": [{"raw"}]}]}``;
        an image is at ``image_root / filepath / filename``.
        """
        json_path, image_root = Path(json_path), Path(image_root)
        if not json_path.is_file():
            raise CorpusError(f"dataset file not found: {json_path}")
        try:
            entries = json.loads(json_path.read_text())["images"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise CorpusError(f"{json_path} is not a Karpathy-split JSON ({err})") from err
        selected = [e for e in entries if e.get("split") == split]
        if not selected:
            splits = sorted({str(e.get("split")) for e in entries})
            raise CorpusError(f"split {split!r} has no images in {json_path} (splits: {', '.join(splits)})")
        paths = [image_root / e.get("filepath", "") / e["filename"] for e in selected]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise CorpusError(f"{len(missing)} image(s) of the dataset are missing, e.g. {missing[0]}")
        corpus = cls.from_paths(paths)
        id_of_path = {path: image_id for image_id, path in corpus.paths.items()}
        captions: dict[str, list[str]] = {}
        for entry, path in zip(selected, paths):
            image_id = id_of_path.get(path)  # None: unreadable, or a duplicate of an earlier file
            if image_id is not None:
                captions.setdefault(image_id, []).extend(s["raw"] for s in entry.get("sentences", []))
        corpus.captions = captions
        return corpus


def _pixel_rows(paths: dict[str, Path]) -> dict[str, tuple[PixelArray, int]]:
    """The images of ``paths`` (id -> file) that have a row in a verified pixel array in their folder."""
    arrays = {folder: open_pixel_array(pixel_array_path(folder)) for folder in {path.parent for path in paths.values()}}
    found: dict[str, tuple[PixelArray, int]] = {}
    for image_id, path in paths.items():
        array = arrays[path.parent]
        row = array.rows.get(image_id) if array is not None else None
        if row is not None:
            found[image_id] = (array, row)
    return found


def virtual_corpus(n_images: int, prefix: str = "img") -> Corpus:
    """A corpus of ``n_images`` ids with no files (benchmarks, cost studies)."""
    return Corpus(ids=[f"{prefix}{i:07d}" for i in range(n_images)])
