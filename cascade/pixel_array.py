"""A folder's images as one memory-mapped uint8 array file, beside the image files (no decoding to read them).

Why: a 64 px PNG takes longer to decode than the shapes world's small encoder
takes to embed it, so a build over files runs at the decoder's pace. The
array holds the decoded pixels of every image of a folder, keyed by the
image's content id (``cascade.corpus.content_id`` of its file), so a row is
only ever served for the exact file bytes it was decoded from.

File layout (``PIXEL_ARRAY_NAME`` in the images' folder; hidden, so a folder
scan never mistakes it for an image)::

    [0, 64)                 prefix: MAGIC, then little-endian uint64 header offset and header length
    [4096, header offset)   the rows, C order: (n, height, width, 3) uint8
    [header offset, end)    JSON header: row shape, ids in row order, crc32 of the rows

The header is written last and the file is renamed into place only when
complete, so a killed writer leaves a temp file, never a half array under the
real name. A truncated or corrupted file fails ``open_pixel_array``'s checks
(sizes, header, crc32 of every byte of the rows) and is not used.
"""

from __future__ import annotations

import functools
import json
import os
import struct
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np

PIXEL_ARRAY_NAME = ".pixels.u8"
MAGIC = b"CSPIXv1\n"
_PREFIX = struct.Struct("<8sQQ")  # magic, header offset, header length
_DATA_OFFSET = 4096  # rows start page-aligned
_CRC_CHUNK_BYTES = 1 << 24
_STALE_TEMP_S = 3600.0  # a temp file this old belongs to a killed writer (the largest gallery writes in minutes)


@dataclass(frozen=True, eq=False)
class PixelArray:
    """An opened, verified pixel array.

    Attributes:
        path: the file.
        ids: content ids in row order.
        pixels: ``(n, height, width, 3)`` uint8, memory-mapped read-only.
    """

    path: Path
    ids: tuple[str, ...]
    pixels: np.ndarray

    @functools.cached_property
    def rows(self) -> dict[str, int]:
        """Content id -> row (the first, should a folder hold two identical files)."""
        rows: dict[str, int] = {}
        for row, image_id in enumerate(self.ids):
            rows.setdefault(image_id, row)
        return rows


def pixel_array_path(folder: Path) -> Path:
    """Where the pixel array of the images in ``folder`` lives."""
    return Path(folder) / PIXEL_ARRAY_NAME


def open_pixel_array(path: Path) -> PixelArray | None:
    """The verified array at ``path``; None if it is missing, truncated, corrupt or of another format.

    Verification reads every row once per process and file version (cached by
    path, size, mtime and inode), so a corrupt array is never served.
    """
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return _open_verified(str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)


@functools.lru_cache(maxsize=8)
def _open_verified(path: str, size: int, mtime_ns: int, inode: int) -> PixelArray | None:
    del mtime_ns, inode  # part of the cache key only: a rewritten file is verified again
    try:
        with open(path, "rb") as handle:
            magic, header_offset, header_length = _PREFIX.unpack(handle.read(_PREFIX.size))
            if magic != MAGIC or header_offset < _DATA_OFFSET or header_offset + header_length != size:
                return None
            handle.seek(header_offset)
            header = json.loads(handle.read(header_length))
        shape = tuple(int(n) for n in header["row_shape"])
        ids = tuple(str(i) for i in header["ids"])
        if len(shape) != 3 or shape[2] != 3 or header_offset - _DATA_OFFSET != len(ids) * int(np.prod(shape)):
            return None
        if not ids:
            return None
        pixels = np.memmap(path, dtype=np.uint8, mode="r", offset=_DATA_OFFSET, shape=(len(ids), *shape))
        if _crc32(pixels) != int(header["crc32"]):
            return None
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return None
    return PixelArray(Path(path), ids, pixels)


def _crc32(pixels: np.ndarray) -> int:
    flat = pixels.reshape(-1)
    crc = 0
    for start in range(0, len(flat), _CRC_CHUNK_BYTES):
        crc = zlib.crc32(flat[start : start + _CRC_CHUNK_BYTES], crc)
    return crc


class PixelArrayWriter:
    """Streams rows into a temp file beside ``path``; on a clean exit the complete file is renamed to ``path``.

    Usage: ``with PixelArrayWriter(path) as writer: writer.add(image_id, pixels)``.
    An exception inside the block deletes the temp file and leaves ``path`` as it was.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._ids: list[str] = []
        self._shape: tuple[int, ...] | None = None
        self._crc = 0

    def __enter__(self) -> PixelArrayWriter:
        _remove_stale_temps(self.path)
        descriptor, temp = tempfile.mkstemp(prefix=f"{self.path.name}.tmp-", dir=self.path.parent)
        self._temp = Path(temp)
        self._handle = os.fdopen(descriptor, "wb")
        self._handle.seek(_DATA_OFFSET)
        return self

    def add(self, image_id: str, pixels: np.ndarray) -> None:
        """Append one image: ``(height, width, 3)`` uint8, the same shape for every row."""
        pixels = np.ascontiguousarray(pixels)
        if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
            raise ValueError(f"a row is (height, width, 3) uint8, got {pixels.shape} {pixels.dtype}")
        if self._shape is None:
            self._shape = pixels.shape
        elif pixels.shape != self._shape:
            raise ValueError(f"rows must share one shape: {self._shape}, then {pixels.shape} for {image_id}")
        self._handle.write(pixels.data)
        self._crc = zlib.crc32(pixels.data, self._crc)
        self._ids.append(image_id)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        try:
            if kind is None:
                self._finish()
        finally:
            self._handle.close()
            if kind is not None or self._temp.exists():
                self._temp.unlink(missing_ok=True)

    def _finish(self) -> None:
        if not self._ids:
            raise ValueError("a pixel array needs at least one image")
        header = json.dumps({"row_shape": list(self._shape), "ids": self._ids, "crc32": self._crc}).encode()
        header_offset = self._handle.tell()
        self._handle.write(header)
        self._handle.seek(0)
        self._handle.write(_PREFIX.pack(MAGIC, header_offset, len(header)))
        self._handle.close()
        # No fsync: a file torn by a power cut fails the crc32 check and is rebuilt.
        os.replace(self._temp, self.path)


def _remove_stale_temps(path: Path) -> None:
    cutoff = time.time() - _STALE_TEMP_S
    for temp in path.parent.glob(f"{path.name}.tmp-*"):
        try:
            if temp.stat().st_mtime < cutoff:
                temp.unlink()
        except OSError:  # another process removed it first
            pass
