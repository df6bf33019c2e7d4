"""Reading an existing CLIP index as level 1, without re-embedding: three layouts, shard by shard.

- clip-retrieval's output folder (the layout of LAION-scale indexes): ``img_emb/img_emb_N.npy`` (one row per
  image), ``metadata/metadata_N.parquet`` (the same rows: ``image_path``, optionally ``caption``) and optionally
  ``text_emb/text_emb_N.npy``. clip-retrieval pads N to the width of its partition count
  (``str(n).zfill(int(log10(count)) + 1)`` in its ``OutputSink``), so shards are ordered by the integer, never by
  name. An ``image_path`` read from a webdataset is its key (``000000123``): an id, not a file.
- Parquet (a file, or a folder of ``*.parquet`` read in name order) with an id column and an embedding column
  (a list of floats): a pgvector or Immich table export.
- A ``.npy`` matrix with a paths file, one UTF-8 path per line, row for row.

Matrices are memory-mapped and Parquet is decoded a batch at a time: an index larger than memory streams through.
``detect`` pairs files and reads headers only.

Checking every row and normalising it: ``analysis.index_check``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from itertools import islice
from pathlib import Path
from typing import ClassVar, NamedTuple, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cascade.errors import ConfigError, CorpusError

SHARD_ROWS = 1 << 16  # rows per shard of a Parquet file or a lone .npy, and per block checked or normalised
NORM_TOLERANCE = 1e-2  # |norm - 1| beyond this is renormalised; float16 rounding of a unit row stays far inside
_FLOATS = (np.dtype(np.float16), np.dtype(np.float32))
_ARROW_FLOATS = {pa.float16(): np.dtype(np.float16), pa.float32(): np.dtype(np.float32), pa.float64(): _FLOATS[1]}


class Layout(StrEnum):
    CLIP_RETRIEVAL = "clip-retrieval"
    PARQUET = "parquet"
    NPY = "npy"


@dataclass(frozen=True)
class Shard:
    """Consecutive rows of one file, in the index's order.

    Attributes:
        name: the file they come from, relative to the index (for messages): ``img_emb/img_emb_03.npy``.
        start: the row of that file the shard begins at.
        paths: ``(n,)`` image paths or ids, as stored.
        embeddings: ``(n, d)`` float16 or float32 as stored (not normalised), memory-mapped where the file allows.
        captions: ``(n,)`` captions, when the index has them.
        text_embeddings: ``(n, d_text)`` clip-retrieval's caption embeddings, when it wrote them.
    """

    name: str
    start: int
    paths: list[str]
    embeddings: np.ndarray
    captions: list[str] | None = None
    text_embeddings: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def blocks(self, rows: int = SHARD_ROWS) -> Iterator[Shard]:
        """The shard in pieces of at most ``rows`` rows (views, no copies)."""
        for begin in range(0, len(self), rows):
            cut = slice(begin, begin + rows)
            captions, text = (None if a is None else a[cut] for a in (self.captions, self.text_embeddings))
            yield Shard(self.name, self.start + begin, self.paths[cut], self.embeddings[cut], captions, text)


class EmbeddingSource(Protocol):
    """An index read as level 1: ``n_rows`` embeddings of ``dim`` values, served as ``dtype``."""

    layout: ClassVar[Layout]
    dim: int
    dtype: np.dtype
    n_rows: int
    has_captions: bool

    def shards(self) -> Iterator[Shard]:
        """Every row once, in order; raises CorpusError (one line) on a file that cannot be read as described."""
        ...


def _name(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else path.name


def _open_npy(path: Path, name: str) -> np.ndarray:
    """``(n, d)`` float16 or float32, memory-mapped; a truncated or foreign file raises one line, not a traceback."""
    try:
        matrix = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, EOFError, OSError) as err:  # a truncated file: "mmap length is greater than file size"
        raise CorpusError(f"{name} is not a readable .npy matrix, truncated or damaged ({err})") from None
    if not isinstance(matrix, np.ndarray) or matrix.ndim != 2:
        raise CorpusError(f"{name} is not a matrix (one row per image): shape {getattr(matrix, 'shape', '?')}")
    if matrix.dtype not in _FLOATS:
        raise CorpusError(f"{name} holds {matrix.dtype}; expected float16 or float32 (convert it with numpy)")
    return matrix


def _open_parquet(path: Path, name: str, columns: list[str]) -> pq.ParquetFile:
    """A Parquet file that has ``columns``; else one line naming the missing column and those present."""
    try:
        file = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as err:
        raise CorpusError(f"{name} is not a readable Parquet file ({err})") from None
    present = file.schema_arrow.names
    for column in columns:
        if column not in present:
            raise CorpusError(f"{name} has no column {column!r} (columns: {', '.join(present)})")
    return file


def _captions(column: pa.Array | pa.ChunkedArray) -> list[str]:
    return [caption or "" for caption in column.cast(pa.string()).to_pylist()]


def _present(values: list[str], name: str, start: int, what: str) -> list[str]:
    """``values`` (ids or paths), refused with one line naming the first empty one."""
    for row, value in enumerate(values):
        if not value:
            raise CorpusError(f"{name} row {start + row} has no {what}")
    return values


class _ClipFiles(NamedTuple):
    embeddings: Path
    metadata: Path
    text_embeddings: Path | None


@dataclass(frozen=True)
class ClipRetrievalSource:
    """clip-retrieval's output folder; ``files`` in shard-number order."""

    layout: ClassVar[Layout] = Layout.CLIP_RETRIEVAL
    root: Path
    files: tuple[_ClipFiles, ...]
    dim: int
    dtype: np.dtype
    n_rows: int
    has_captions: bool

    def shards(self) -> Iterator[Shard]:
        for files in self.files:
            name = _name(files.embeddings, self.root)
            embeddings = _open_npy(files.embeddings, name)
            meta_name = _name(files.metadata, self.root)
            columns = ["image_path", "caption"] if self.has_captions else ["image_path"]
            table = _open_parquet(files.metadata, meta_name, columns).read(columns=columns)
            if table.num_rows != len(embeddings):
                raise CorpusError(f"{name} has {len(embeddings)} rows but {meta_name} has {table.num_rows}")
            text = None
            if files.text_embeddings is not None:
                text_name = _name(files.text_embeddings, self.root)
                text = _open_npy(files.text_embeddings, text_name)
                if len(text) != len(embeddings):
                    raise CorpusError(f"{name} has {len(embeddings)} rows but {text_name} has {len(text)}")
            paths = _present(table.column("image_path").cast(pa.string()).to_pylist(), meta_name, 0, "image_path")
            captions = _captions(table.column("caption")) if self.has_captions else None
            yield Shard(name, 0, paths, embeddings, captions, text)


def _numbered(folder: Path, prefix: str, suffix: str) -> dict[int, Path]:
    """``prefix_N.suffix`` files of ``folder`` by N, whatever their zero padding; one N written twice is an error."""
    pattern = re.compile(rf"{prefix}_(\d+){re.escape(suffix)}")
    found: dict[int, Path] = {}
    for path in sorted(folder.iterdir()) if folder.is_dir() else ():
        match = pattern.fullmatch(path.name)
        if match is None:
            continue
        number = int(match.group(1))
        if number in found:
            raise CorpusError(f"{found[number].name} and {path.name} are both shard {number} in {folder}")
        found[number] = path
    return found


def _clip_retrieval(root: Path) -> ClipRetrievalSource:
    images = _numbered(root / "img_emb", "img_emb", ".npy")
    if not images:
        raise CorpusError(f"no img_emb_N.npy files in {root / 'img_emb'}")
    metadata = _numbered(root / "metadata", "metadata", ".parquet")
    texts = _numbered(root / "text_emb", "text_emb", ".npy")
    pairs = [(images, metadata, "metadata/metadata_{}.parquet"), (metadata, images, "img_emb/img_emb_{}.npy")]
    if texts:
        pairs += [(images, texts, "text_emb/text_emb_{}.npy"), (texts, images, "img_emb/img_emb_{}.npy")]
    for ours, theirs, expected in pairs:
        unpaired = sorted(set(ours) - set(theirs))
        if unpaired:
            raise CorpusError(f"{_name(ours[unpaired[0]], root)} has no matching {expected.format(unpaired[0])}")
    numbers = sorted(images)
    matrices = [_open_npy(images[n], _name(images[n], root)) for n in numbers]  # headers; check compares dims
    dim, dtype = matrices[0].shape[1], np.result_type(*(m.dtype for m in matrices))
    first_meta = metadata[numbers[0]]
    has_captions = "caption" in _open_parquet(first_meta, _name(first_meta, root), ["image_path"]).schema_arrow.names
    files = tuple(_ClipFiles(images[n], metadata[n], texts.get(n)) for n in numbers)
    n_rows = sum(len(m) for m in matrices)
    return ClipRetrievalSource(root, files, dim, dtype, n_rows, has_captions)


@dataclass(frozen=True)
class ParquetSource:
    """Parquet files (name order) with an id column and an embedding column; float64 is served as float32."""

    layout: ClassVar[Layout] = Layout.PARQUET
    root: Path
    files: tuple[Path, ...]
    id_column: str
    embedding_column: str
    caption_column: str | None
    dim: int
    dtype: np.dtype
    n_rows: int

    @property
    def has_captions(self) -> bool:
        return self.caption_column is not None

    def _columns(self) -> list[str]:
        return [self.id_column, self.embedding_column] + ([self.caption_column] if self.caption_column else [])

    def shards(self) -> Iterator[Shard]:
        for path in self.files:
            name, start = _name(path, self.root), 0
            for batch in _open_parquet(path, name, self._columns()).iter_batches(SHARD_ROWS, columns=self._columns()):
                embeddings = self._matrix(batch.column(self.embedding_column), name, start)
                ids = batch.column(self.id_column).cast(pa.string()).to_pylist()  # a bigint id is an id too
                paths = _present(ids, name, start, repr(self.id_column))
                captions = _captions(batch.column(self.caption_column)) if self.caption_column else None
                yield Shard(name, start, paths, embeddings, captions)
                start += batch.num_rows

    def _matrix(self, column: pa.Array, name: str, start: int) -> np.ndarray:
        """``(n, dim)`` from a list column; a row without an embedding or with another length raises."""
        if column.null_count:
            row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
            raise CorpusError(f"{name} row {start + row} has no {self.embedding_column!r}")
        lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
        wrong = np.flatnonzero(lengths != self.dim)
        if wrong.size:
            row = int(wrong[0])
            raise CorpusError(f"{name} row {start + row} has {lengths[row]} dimensions, the index {self.dim}")
        values = column.flatten().to_numpy(zero_copy_only=False)  # a null value reads as NaN: check finds it
        return values.astype(self.dtype, copy=False).reshape(len(column), self.dim)


def _parquet(src: Path, id_column: str, embedding_column: str, caption_column: str | None) -> ParquetSource:
    root = src if src.is_dir() else src.parent
    files = tuple(sorted(src.glob("*.parquet"))) if src.is_dir() else (src,)
    columns = [id_column, embedding_column] + ([caption_column] if caption_column else [])
    opened = {path: _open_parquet(path, _name(path, root), columns) for path in files}
    kinds = {_name(path, root): file.schema_arrow.field(embedding_column).type for path, file in opened.items()}
    for name, kind in kinds.items():
        if not isinstance(kind, pa.ListType | pa.LargeListType | pa.FixedSizeListType) or (
            kind.value_type not in _ARROW_FLOATS
        ):
            raise CorpusError(f"{name}: column {embedding_column!r} holds {kind}; expected a list of floats")
    kind = kinds[_name(files[0], root)]
    n_rows = sum(file.metadata.num_rows for file in opened.values())
    dim = kind.list_size if pa.types.is_fixed_size_list(kind) else _first_length(opened.values(), embedding_column)
    dtype = np.result_type(*(_ARROW_FLOATS[k.value_type] for k in kinds.values()))
    return ParquetSource(root, files, id_column, embedding_column, caption_column, dim, dtype, n_rows)


def _first_length(files: Iterable[pq.ParquetFile], column: str) -> int:
    """The length of the first embedding: a plain list column does not carry its dimension in the schema."""
    for file in files:
        for batch in file.iter_batches(batch_size=1, columns=[column]):
            if batch.num_rows and batch.column(column)[0].is_valid:
                return len(batch.column(column)[0])
    raise CorpusError(f"column {column!r} holds no embedding")


@dataclass(frozen=True)
class NpySource:
    """One ``.npy`` matrix and its paths file (one UTF-8 path per line, row for row)."""

    layout: ClassVar[Layout] = Layout.NPY
    matrix: Path
    paths_file: Path
    dim: int
    dtype: np.dtype
    n_rows: int
    has_captions: ClassVar[bool] = False

    def shards(self) -> Iterator[Shard]:
        name, paths_name = self.matrix.name, self.paths_file.name
        matrix = _open_npy(self.matrix, name)
        try:
            with open(self.paths_file, encoding="utf-8") as lines:
                for start in range(0, len(matrix), SHARD_ROWS):
                    rows = matrix[start : start + SHARD_ROWS]
                    paths = [line.rstrip("\n") for line in islice(lines, len(rows))]
                    if len(paths) < len(rows):
                        raise CorpusError(f"{paths_name} has {start + len(paths)} lines, {name} {len(matrix)} rows")
                    yield Shard(name, start, _present(paths, paths_name, start, "path"), rows)
                extra = sum(1 for line in lines if line.strip())
        except UnicodeDecodeError as err:
            raise CorpusError(f"{paths_name} is not UTF-8 text ({err.reason} at byte {err.start})") from None
        if extra:
            raise CorpusError(f"{paths_name} has {len(matrix) + extra} lines, {name} {len(matrix)} rows")


def detect(
    src: str | Path,
    id_column: str | None = None,
    embedding_column: str | None = None,
    paths: str | Path | None = None,
    caption_column: str | None = None,
) -> EmbeddingSource:
    """The index at ``src``, its layout told by its shape; files are paired and their headers read, no rows.

    Args:
        src: a clip-retrieval output folder (it has ``img_emb/``), a Parquet file or folder, or a ``.npy`` matrix.
        id_column, embedding_column: the Parquet columns holding each row's id (or path) and its embedding.
        paths: the ``.npy`` matrix's paths file.
        caption_column: an optional Parquet column of captions.

    Raises:
        ConfigError: ``src`` is none of the layouts, or a layout's arguments are missing.
        CorpusError: the files of the layout are unpaired, unreadable or disagree (one line naming the file).
    """
    src = Path(src).expanduser()
    if not src.exists():
        raise CorpusError(f"embedding index not found: {src}")
    if (src / "img_emb").is_dir():
        return _clip_retrieval(src)
    if src.suffix == ".parquet" or (src.is_dir() and any(src.glob("*.parquet"))):
        if not id_column or not embedding_column:
            raise ConfigError(f"{src} is Parquet: name its id column and its embedding column")
        return _parquet(src, id_column, embedding_column, caption_column)
    if src.suffix == ".npy" and src.is_file():
        if paths is None:
            raise ConfigError(f"{src} is a .npy matrix: give its paths file (one path per row)")
        if not Path(paths).expanduser().is_file():
            raise CorpusError(f"paths file not found: {paths}")
        matrix = _open_npy(src, src.name)
        return NpySource(src, Path(paths).expanduser(), matrix.shape[1], matrix.dtype, len(matrix))
    raise ConfigError(
        f"{src} is not an embedding index: expected a clip-retrieval folder (img_emb/, metadata/), "
        "a Parquet file or folder with id and embedding columns, or a .npy matrix with a paths file"
    )
