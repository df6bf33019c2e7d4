"""Level-1 embeddings imported from an existing CLIP index, kept as a memory-mapped matrix beside the database.

Millions of rows do not belong in DuckDB rows (a BLOB a row, read back row by row): an import is one
matrix file, mapped, and a Parquet file of its rows' ids. On disk, beside ``DB``::

    DB.imported/<safe encoder id>/CURRENT                  the version served (its folder's name), one line
    DB.imported/<safe encoder id>/<version>/embeddings.npy (n, d) L2-normalised; float16 if the source is, else float32
    DB.imported/<safe encoder id>/<version>/rows.parquet   id, path, [caption], missing: row for row
    DB.imported/<safe encoder id>/<version>/manifest.json  encoder id and name, source, images root, layout, dtype, ...
    DB.imported/<safe encoder id>/.tmp-<version>/          an import being written, or killed: the next one removes it

An import is atomic: its version is written under a temporary name, synced, renamed into place, and
then ``CURRENT`` is replaced (a temporary file and ``os.replace``). Killed at any point, the previous
``CURRENT`` and its version stay whole. Only one import runs per database: the writer holds the store.

An image's id is its content digest (``cascade.corpus.identify``, as a folder scan computes it) when its
file is reachable; the file is remembered in the store as a scan remembers it, so a later scan of the
folder neither re-hashes it nor embeds it. A row whose file is not reachable keeps ``path:`` + its stored
path (a digest is hex, never holds a colon): it is counted ``missing``.

``ImportedEmbeddings`` is what ``Store.get`` consults for the ids its features table lacks.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from analysis.embedding_sources import EmbeddingSource, Shard, detect
from analysis.index_check import CheckReport, check, normalised_blocks
from analysis.progress import Progress, Step, Unit, counter
from cascade.corpus import FileIdCache, identify
from cascade.encoders import create_encoder
from cascade.encoders.base import BiEncoder, ImageTower
from cascade.errors import ConfigError, CorpusError

PATH_ID_PREFIX = "path:"  # the id of a row whose file is not reachable: a content digest never holds a colon
CURRENT = "CURRENT"
TEMPORARY = ".tmp-"
CHECKING = Step("checking the index", Unit.IMAGES)
IMPORTING = Step("importing", Unit.IMAGES)

_after_block = None  # tests: called with the rows written so far after each block (the kill -9 test)


def imported_folder(db_path: str | Path) -> Path:
    """Where imports of the database at ``db_path`` live: ``DB.imported/`` beside it."""
    db = Path(db_path).expanduser()
    return db.with_name(db.name + ".imported")


def encoder_folder(root: Path, encoder_id: str) -> Path:
    """The folder of one encoder's imports: its id made safe for a file name, and a digest so two never meet."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in encoder_id)[:80]
    return root / f"{safe}-{hashlib.blake2b(encoder_id.encode(), digest_size=4).hexdigest()}"


def architecture(name: str) -> str:
    """The model a name is of, without its weights: ``openclip:ViT-B-32@laion2b_s34b_b79k`` -> ``openclip:ViT-B-32``."""
    return name.split("#", 1)[0].split("@", 1)[0]


@dataclass(frozen=True)
class ImportRequest:
    """What to import, as the user named it.

    Attributes:
        src: the index (see ``analysis.embedding_sources.detect``).
        encoder: the name of the model that made its rows (``openclip:ViT-B-32@laion2b_s34b_b79k``).
        images: the folder the stored paths are found under (None: each path as written).
        strip_prefix: removed from the start of a stored path before it is looked for under ``images``.
        id_column, embedding_column, caption_column: a Parquet index's columns; paths: a ``.npy`` index's paths file.
    """

    src: str
    encoder: str
    images: str | None = None
    strip_prefix: str = ""
    id_column: str | None = None
    embedding_column: str | None = None
    caption_column: str | None = None
    paths: str | None = None

    def locate(self, stored: str) -> Path:
        """Where the file of a stored path would be."""
        if self.images is None:
            return Path(stored)
        if self.strip_prefix and stored.startswith(self.strip_prefix):
            stored = stored[len(self.strip_prefix) :]
        return Path(self.images).expanduser() / stored.lstrip("/")


@dataclass(frozen=True)
class Prepared:
    """An index read through once and found fit to be level 1 of ``encoder_id``; nothing written yet."""

    request: ImportRequest
    encoder_id: str
    source: EmbeddingSource
    report: CheckReport


def prepare(
    request: ImportRequest, create: Callable[[str], ImageTower] = create_encoder, progress: Progress | None = None
) -> Prepared:
    """Detect the index, create its encoder and check every row against it; writes nothing.

    Raises:
        CascadeError: one line: an unknown encoder, a layout not understood, or the first fault of the index
            (another dimension, a NaN, inf or zero row, a path twice, files that disagree, a truncated file).
    """
    if request.strip_prefix and request.images is None:
        raise ConfigError("--strip-prefix needs --images ROOT (the folder the stripped paths start from)")
    if request.images is not None and not Path(request.images).expanduser().is_dir():
        raise CorpusError(f"image folder not found: {request.images}")
    source = detect(request.src, request.id_column, request.embedding_column, request.paths, request.caption_column)
    if progress is not None:
        progress(Step("loading the encoder"), 0, 0)
    encoder = create(request.encoder)
    if not isinstance(encoder, BiEncoder):
        raise ConfigError(f"{request.encoder} is not a bi-encoder: level 1 needs image embeddings")
    if progress is not None:
        progress(CHECKING, 0, source.n_rows)  # the bar shows from the start: a large index's first shard takes a while
    report = check(source, encoder.dim, counter(progress, CHECKING))
    if not report.rows:
        raise CorpusError(f"the index at {request.src} holds no embeddings")
    return Prepared(request, encoder.id, source, report)


@dataclass(frozen=True)
class ImportResult:
    """What an import wrote.

    Attributes:
        images: rows of the index; imported: distinct image ids now served (two rows of one picture are one);
        normalised: rows whose norm was off 1 and were renormalised; missing: rows without a reachable file
            (kept under ``path:`` ids); earlier: the encoder id of the latest earlier import of the same
            architecture when it was another (new weights: its rows are not served to this id).
    """

    images: int
    imported: int
    normalised: int
    missing: int
    dim: int
    dtype: str
    encoder: str
    version: Path
    earlier: str | None = None


def write(
    prepared: Prepared, root: Path, known: FileIdCache | None = None, progress: Progress | None = None
) -> ImportResult:
    """Write ``prepared`` as the current import of its encoder under ``root`` (``DB.imported``), atomically.

    Args:
        known: the store: reachable files' ids are looked up and remembered there, as a folder scan does.
    """
    folder = encoder_folder(root, prepared.encoder_id)
    earlier = latest_import(root, architecture(prepared.request.encoder))
    folder.mkdir(parents=True, exist_ok=True)
    _remove(folder, lambda path: path.name.startswith(TEMPORARY))  # killed imports
    version = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    temporary = folder / f"{TEMPORARY}{version}"
    temporary.mkdir()
    imported, missing = _write_version(prepared, temporary, known, progress)
    report = prepared.report
    manifest = {
        "encoder": prepared.encoder_id,
        "name": prepared.request.encoder,
        "architecture": architecture(prepared.request.encoder),
        "source": str(Path(prepared.request.src).expanduser().resolve()),
        "images": str(Path(prepared.request.images).expanduser().resolve()) if prepared.request.images else None,
        "strip_prefix": prepared.request.strip_prefix,
        "captions": prepared.source.has_captions,
        "layout": str(prepared.source.layout),
        "dtype": str(_stored_dtype(prepared)),
        "n": report.rows,
        "dim": report.dim,
        "imported": imported,
        "normalised": report.to_normalise,
        "missing": missing,
        "created": datetime.now(UTC).isoformat(),
    }
    _write_synced(temporary / "manifest.json", json.dumps(manifest, indent=1).encode())
    _publish(temporary, folder / version)
    _remove(folder, lambda path: path.name != version)  # superseded versions
    previous = earlier.get("encoder") if earlier else None
    return ImportResult(
        images=report.rows,
        imported=imported,
        normalised=report.to_normalise,
        missing=missing,
        dim=report.dim,
        dtype=manifest["dtype"],
        encoder=prepared.encoder_id,
        version=folder / version,
        earlier=previous if previous != prepared.encoder_id else None,
    )


def _stored_dtype(prepared: Prepared) -> np.dtype:
    return np.dtype(np.float16 if prepared.source.dtype == np.float16 else np.float32)


def _write_version(prepared: Prepared, folder: Path, known: FileIdCache | None, progress: Progress | None) -> tuple:
    """Fill ``folder`` block by block: the mapped matrix and the rows' Parquet. Returns (distinct ids, missing)."""
    n_rows, dim = prepared.report.rows, prepared.report.dim
    matrix = np.lib.format.open_memmap(
        folder / "embeddings.npy", mode="w+", dtype=_stored_dtype(prepared), shape=(n_rows, dim)
    )
    captions = prepared.source.has_captions
    schema = pa.schema(
        [("id", pa.string()), ("path", pa.string())]
        + ([("caption", pa.string())] if captions else [])
        + [("missing", pa.bool_())]
    )
    done = missing = 0
    ids: set[str] = set()
    if progress is not None:
        progress(IMPORTING, 0, n_rows)
    with pq.ParquetWriter(folder / "rows.parquet", schema) as rows:
        for block in normalised_blocks(prepared.source, _stored_dtype(prepared)):
            block_ids, absent = _row_ids(block, prepared.request, known)
            matrix[done : done + len(block)] = block.embeddings
            columns = {"id": block_ids, "path": block.paths} | ({"caption": block.captions} if captions else {})
            rows.write_table(pa.table(columns | {"missing": absent}, schema=schema))
            done, missing = done + len(block), missing + int(np.count_nonzero(absent))
            ids.update(block_ids)
            if progress is not None:
                progress(IMPORTING, done, n_rows)
            if _after_block is not None:
                _after_block(done)
    if done != n_rows:  # the index changed between the check and the import
        raise CorpusError(f"the index had {n_rows} rows when checked and {done} when imported; import it again")
    matrix.flush()
    del matrix
    for name in ("embeddings.npy", "rows.parquet"):
        _fsync(folder / name)
    return len(ids), missing


def _row_ids(block: Shard, request: ImportRequest, known: FileIdCache | None) -> tuple[list[str], np.ndarray]:
    """Each row's id: its file's content digest where the file is reachable, else ``path:`` + the stored path."""
    files = [request.locate(stored) for stored in block.paths]
    reachable = [row for row, path in enumerate(files) if path.is_file()]
    digests = dict(zip(reachable, identify([files[row] for row in reachable], known=known)))
    ids = [digests.get(row) or PATH_ID_PREFIX + stored for row, stored in enumerate(block.paths)]
    absent = np.array([digests.get(row) is None for row in range(len(block))], dtype=bool)
    return ids, absent


def _publish(temporary: Path, version: Path) -> None:
    """Rename the synced version into place, then point ``CURRENT`` at it; each step survives a crash whole."""
    _fsync(temporary)
    os.rename(temporary, version)
    _fsync(version.parent)
    pointer = version.parent / f"{TEMPORARY}{CURRENT}"
    _write_synced(pointer, f"{version.name}\n".encode())
    os.replace(pointer, version.parent / CURRENT)
    _fsync(version.parent)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _remove(folder: Path, doomed: Callable[[Path], bool]) -> None:
    """Remove the version folders (and temporary files) of ``folder`` that ``doomed`` names; never ``CURRENT``."""
    for path in folder.iterdir():
        if path.name == CURRENT or not doomed(path):
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _current(folder: Path) -> str | None:
    try:
        return (folder / CURRENT).read_text().strip() or None
    except FileNotFoundError:
        return None


def current_versions(root: Path) -> list[tuple[Path, dict]]:
    """Each encoder's current import under ``root`` (``DB.imported``): its version folder and its manifest."""
    found = []
    for folder in sorted(root.iterdir()) if root.is_dir() else ():
        version = _current(folder) if folder.is_dir() else None
        if version is None:
            continue
        try:
            found.append((folder / version, json.loads((folder / version / "manifest.json").read_text())))
        except (OSError, ValueError):
            continue
    return found


def latest_import(root: Path, arch: str) -> dict | None:
    """The manifest of the most recent current import of architecture ``arch`` under ``root``, if any."""
    manifests = [manifest for _, manifest in current_versions(root) if manifest.get("architecture") == arch]
    return max(manifests, key=lambda m: m.get("created", ""), default=None)


class _Version:
    """One published import: its matrix, mapped, and an id -> row index built on first use."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.matrix = np.load(folder / "embeddings.npy", mmap_mode="r")
        self._index: tuple[pd.Index, np.ndarray] | None = None
        self._lock = threading.Lock()

    def index(self) -> tuple[pd.Index, np.ndarray]:
        """(distinct ids, the row of each): a picture in two rows is served from its first."""
        with self._lock:
            if self._index is None:
                ids = pd.Index(pq.read_table(self.folder / "rows.parquet", columns=["id"]).column("id").to_pylist())
                first = ~ids.duplicated()
                self._index = ids[first], np.flatnonzero(first)
            return self._index

    def rows(self, image_ids: Sequence[str]) -> dict[str, np.ndarray]:
        ids, rows_of = self.index()
        positions = ids.get_indexer(list(image_ids))
        wanted = np.flatnonzero(positions >= 0)
        if not wanted.size:
            return {}
        rows = rows_of[positions[wanted]]
        order = np.argsort(rows)  # read the mapped file front to back
        block = np.asarray(self.matrix[rows[order]], dtype=np.float32)
        return {image_ids[wanted[o]]: block[j] for j, o in enumerate(order)}


class ImportedEmbeddings:
    """The imports under ``root`` (``DB.imported``), read as a feature cache: ``get`` only.

    Each call reads the encoder's ``CURRENT`` (one small file), so an import made since is served at once;
    a version is mapped and indexed once. Thread-safe.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._versions: dict[str, _Version] = {}
        self._lock = threading.Lock()

    def get(self, encoder_id: str, image_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Imported ``(d,)`` float32 rows of ``image_ids`` for ``encoder_id``; absent ids are left out."""
        if not image_ids:
            return {}
        folder = encoder_folder(self.root, encoder_id)
        name = _current(folder)
        if name is None:
            return {}
        with self._lock:
            version = self._versions.get(encoder_id)
            if version is None or version.folder.name != name:
                version = self._versions[encoder_id] = _Version(folder / name)
        return version.rows(image_ids)
