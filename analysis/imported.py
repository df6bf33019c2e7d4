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

``analysis.imported_rows.ImportedEmbeddings`` serves them: what ``Store.get`` consults for the ids its features table
lacks.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from analysis.embedding_sources import EmbeddingSource, detect
from analysis.index_check import CheckReport, check, stored_blocks
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

    def locate(self, stored: str) -> str:
        """Where the file of a stored path would be."""
        if self.images is None:
            return stored
        if self.strip_prefix and stored.startswith(self.strip_prefix):
            stored = stored[len(self.strip_prefix) :]
        return os.path.join(os.path.expanduser(self.images), stored.lstrip("/"))


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
    """Fill ``folder`` block by block: the matrix (written, not mapped: its pages are not this process's memory)
    and the rows' Parquet. Returns (distinct ids, missing)."""
    n_rows, dim, dtype = prepared.report.rows, prepared.report.dim, _stored_dtype(prepared)
    captions = prepared.source.has_captions
    schema = pa.schema(
        [("id", pa.string()), ("path", pa.string())]
        + ([("caption", pa.string())] if captions else [])
        + [("missing", pa.bool_())]
    )
    done = missing = 0
    files, remembered = _Files(prepared.request), _Deferred(known)
    if progress is not None:
        progress(IMPORTING, 0, n_rows)
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (n_rows, dim)}
    with open(folder / "embeddings.npy", "wb") as matrix, pq.ParquetWriter(folder / "rows.parquet", schema) as rows:
        np.lib.format.write_array_header_1_0(matrix, header)
        for block in stored_blocks(prepared.source, prepared.report, dtype):
            block_ids, absent = files.ids(block.paths, remembered)
            matrix.write(np.ascontiguousarray(block.embeddings).data)
            columns = {"id": block_ids, "path": block.paths} | ({"caption": block.captions} if captions else {})
            rows.write_table(pa.table(columns | {"missing": absent}, schema=schema))
            done, missing = done + len(block), missing + int(np.count_nonzero(absent))
            if progress is not None:
                progress(IMPORTING, done, n_rows)
            if _after_block is not None:
                _after_block(done)
        os.fsync(matrix.fileno())
    _fsync(folder / "rows.parquet")
    remembered.flush()
    distinct = pc.count_distinct(pq.read_table(folder / "rows.parquet", columns=["id"]).column("id")).as_py()
    return distinct, missing


class _Files:
    """Which stored paths have a file, and their ids: each folder is listed once (a stat per row costs seconds at a
    million rows), and only the files found are opened (``identify``, as a folder scan)."""

    def __init__(self, request: ImportRequest) -> None:
        self.request = request
        self._listed: dict[str, frozenset[str]] = {}

    def exists(self, path: str) -> bool:
        folder, name = os.path.split(path)
        names = self._listed.get(folder)
        if names is None:
            try:
                with os.scandir(folder or os.curdir) as entries:
                    names = frozenset(entry.name for entry in entries if entry.is_file())
            except OSError:  # no such folder, or not one: nothing under it is reachable
                names = frozenset()
            self._listed[folder] = names
        return name in names

    def ids(self, stored: Sequence[str], known: FileIdCache | None) -> tuple[list[str], np.ndarray]:
        """Each row's id: its file's content digest where the file is reachable, else ``path:`` + the stored path."""
        files = [self.request.locate(path) for path in stored]
        reachable = [row for row, path in enumerate(files) if self.exists(path)]
        digests = dict(zip(reachable, identify([Path(files[row]) for row in reachable], known=known)))
        ids = [digests.get(row) or PATH_ID_PREFIX + path for row, path in enumerate(stored)]
        return ids, np.array([digests.get(row) is None for row in range(len(stored))], dtype=bool)


class _Deferred:
    """The store's file-id cache, its new entries held back until the import has written everything: a fault
    found while writing leaves the database as it was."""

    def __init__(self, known: FileIdCache | None) -> None:
        self.known, self.fresh = known, {}

    def lookup(self, keys: Sequence) -> dict:
        return self.known.lookup(keys) if self.known is not None else {}

    def remember(self, ids: dict) -> None:
        self.fresh.update(ids)

    def flush(self) -> None:
        if self.known is not None and self.fresh:
            self.known.remember(self.fresh)


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


def current_name(folder: Path) -> str | None:
    try:
        return (folder / CURRENT).read_text().strip() or None
    except FileNotFoundError:
        return None


def current_versions(root: Path) -> list[tuple[Path, dict]]:
    """Each encoder's current import under ``root`` (``DB.imported``): its version folder and its manifest."""
    found = []
    for folder in sorted(root.iterdir()) if root.is_dir() else ():
        version = current_name(folder) if folder.is_dir() else None
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
