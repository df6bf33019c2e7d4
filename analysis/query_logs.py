"""Reading a real query log: the workload a replay sends through a cascade, in the order it happened.

Formats, chosen by the file's ending:

- plain text (``.txt``, ``.log``, anything else): one query per line; a repeated line is a repeated query.
- CSV (``.csv``) or Parquet (``.parquet``, ``.pq``): a ``query`` column, optionally ``count`` (the query
  is repeated that many times in a row; 0 drops it) and ``timestamp`` (rows are replayed in its order,
  ties in file order).

The whole file is read and checked before anything runs, so a bad file never leaves a
partial replay in the log. Bad input raises ``QueryLogError`` with one line: an empty file,
binary or non-UTF-8 content, no ``query`` column, negative or non-whole counts, a file over
``MAX_FILE_BYTES``, more than ``MAX_QUERIES`` queries once counts are expanded. A query that is
empty after stripping is skipped and counted (``QueryLog.skipped_empty``).

Those limits belong to an upload the page replays. ``stream_query_log`` reads a log of any size in place, a line
or a batch of rows at a time, for an estimate that only counts queries (``analysis.estimate``).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from cascade.errors import ConfigError

MAX_FILE_BYTES = 20 * 1024 * 1024  # 20 MiB: about a million typical queries of text
MAX_QUERIES = 1_000_000  # after counts are expanded: a replay of more is hours of searching
TABLE_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


class QueryLogError(ConfigError):
    """The query log file cannot be replayed (one line says why)."""


@dataclass(frozen=True)
class QueryLog:
    """A query log as a replay reads it.

    Attributes:
        queries: every query in replay order, repeats included, stripped.
        skipped_empty: rows whose query was empty after stripping (left out of ``queries``).
        name: the file's name, for labels (``file:NAME``).
    """

    queries: tuple[str, ...]
    skipped_empty: int
    name: str

    @property
    def distinct(self) -> int:
        return len(set(self.queries))


def read_query_log(path: str | Path, name: str | None = None) -> QueryLog:
    """Read and check a query log file (see the module docstring for formats and limits).

    Args:
        name: the name to label it with (an upload's original name); default the file's name.
    """
    path = Path(path)
    name = name or path.name
    size = _size(path, name)
    if size > MAX_FILE_BYTES:
        raise QueryLogError(
            f"the query log {name} is {size / 2**20:.1f} MiB; the limit is {MAX_FILE_BYTES // 2**20} MiB"
        )
    if size == 0:
        raise QueryLogError(f"the query log {name} is empty")
    data = path.read_bytes()
    kind = TABLE_SUFFIXES.get(Path(name).suffix.lower(), "text")
    if kind == "parquet":
        frame = _parquet(data, name)
    else:
        text = _text(data, name)
        if not text.strip():
            raise QueryLogError(f"the query log {name} holds no queries (only blank lines)")
        if kind == "text":
            return _checked(list(text.splitlines()), name)
        frame = _csv(text, name)
    return _from_frame(frame, name)


def _text(data: bytes, name: str) -> str:
    if b"\x00" in data:
        raise QueryLogError(f"the query log {name} is binary, not text (it holds NUL bytes)")
    try:
        return data.decode("utf-8-sig")  # a BOM from a spreadsheet export is not part of the first query
    except UnicodeDecodeError as err:
        raise QueryLogError(f"the query log {name} is not UTF-8 text (byte {err.start} is invalid)") from None


def _csv(text: str, name: str) -> pd.DataFrame:
    try:
        return pd.read_csv(io.StringIO(text), dtype={"query": str}, keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as err:
        raise QueryLogError(f"the query log {name} is not a readable CSV: {str(err).splitlines()[0]}") from None


def _parquet(data: bytes, name: str) -> pd.DataFrame:
    if not data.startswith(b"PAR1"):
        raise QueryLogError(f"the query log {name} is not a Parquet file (no PAR1 header)")
    try:
        return pd.read_parquet(io.BytesIO(data))
    except Exception as err:  # noqa: BLE001  (pyarrow raises many kinds on a damaged file)
        raise QueryLogError(
            f"the query log {name} is not a readable Parquet file: {str(err).splitlines()[0]}"
        ) from None


def _from_frame(frame: pd.DataFrame, name: str) -> QueryLog:
    columns = {str(c).strip().lower(): c for c in frame.columns}
    if "query" not in columns:
        found = ", ".join(map(str, frame.columns)) or "none"
        raise QueryLogError(f"the query log {name} has no 'query' column (columns: {found})")
    frame = frame.rename(columns={original: key for key, original in columns.items()})
    if frame.empty:
        raise QueryLogError(f"the query log {name} has a 'query' column but no rows")
    if "timestamp" in frame:
        try:
            order = pd.to_datetime(frame["timestamp"], utc=True, format="mixed")
        except (ValueError, TypeError):
            raise QueryLogError(f"the query log {name} has timestamps that are not dates") from None
        if order.isna().any():
            raise QueryLogError(f"the query log {name} has a missing timestamp in row {int(order.isna().argmax()) + 2}")
        frame = frame.iloc[np.argsort(order.to_numpy(), kind="stable")]
    counts = _counts(frame, name)
    texts = ["" if pd.isna(q) else str(q) for q in frame["query"]]
    return _checked(texts, name, counts)


def _counts(frame: pd.DataFrame, name: str) -> list[int]:
    if "count" not in frame:
        return [1] * len(frame)
    counts = _whole_counts(frame["count"], name, first_row=2)
    total = sum(counts)
    if total > MAX_QUERIES:
        raise QueryLogError(f"the query log {name} expands to {total:,.0f} queries; the limit is {MAX_QUERIES:,}")
    return counts


def _whole_counts(column: pd.Series, name: str, first_row: int) -> list[int]:
    """``column`` as whole numbers >= 0; ``first_row``: the file's row number of its first value (for messages)."""
    counts = pd.to_numeric(column, errors="coerce")
    bad = counts.isna() | (counts != counts.round())
    if bad.any():
        row = int(bad.to_numpy().argmax()) + first_row
        raise QueryLogError(f"the query log {name} has a count that is not a whole number in row {row}")
    if (counts < 0).any():
        raise QueryLogError(f"the query log {name} has a negative count ({int(counts.min())})")
    return [int(c) for c in counts]


def _checked(texts: list[str], name: str, counts: list[int] | None = None) -> QueryLog:
    counts = counts or [1] * len(texts)
    queries: list[str] = []
    skipped = 0
    for text, count in zip(texts, counts):
        query = text.strip()
        if not query:
            skipped += 1
            continue
        if len(queries) + count > MAX_QUERIES:
            raise QueryLogError(f"the query log {name} holds more than {MAX_QUERIES:,} queries")
        queries.extend([query] * count)
    if not queries:
        raise QueryLogError(f"the query log {name} holds no queries ({skipped} empty row(s) skipped)")
    return QueryLog(tuple(queries), skipped, name)


# ---------------------------------------------------------------- a log of any size, streamed

STREAM_ROWS = 1 << 16  # rows of a CSV or Parquet log read at a time
_SNIFF_BYTES = 1 << 16  # the start of a CSV log searched for NUL bytes


def stream_query_log(path: str | Path, name: str | None = None) -> Iterator[tuple[str, int]]:
    """Every non-empty query of a log of any size with its count (> 0), a line or a batch of rows at a time.

    The formats and one-line errors of ``read_query_log`` without its limits (``MAX_FILE_BYTES`` and
    ``MAX_QUERIES`` bound an upload the page holds in memory, not a file read in place). Timestamps play no part:
    an estimate counts what was asked, not when. A repeated line is yielded again; the caller counts distinct.

    Raises:
        QueryLogError: as ``read_query_log``; a bad row, or a log without one query, raises when it is reached.
    """
    path = Path(path)
    name = name or path.name
    size = _size(path, name)
    if size == 0:
        raise QueryLogError(f"the query log {name} is empty")
    kind = TABLE_SUFFIXES.get(Path(name).suffix.lower(), "text")
    rows = {"text": _text_rows, "csv": _csv_rows, "parquet": _parquet_rows}[kind](path, name)
    found = skipped = 0
    for text, count in rows:
        query = text.strip()
        if not query:
            skipped += 1
        elif count:
            found += 1
            yield query, count
    if not found:
        raise QueryLogError(f"the query log {name} holds no queries ({skipped} empty row(s) skipped)")


def _text_rows(path: Path, name: str) -> Iterator[tuple[str, int]]:
    with open(path, "rb") as lines:
        offset = 0
        for raw in lines:
            if b"\x00" in raw:
                raise QueryLogError(f"the query log {name} is binary, not text (it holds NUL bytes)")
            try:
                text = raw.decode("utf-8-sig" if offset == 0 else "utf-8")
            except UnicodeDecodeError as err:
                raise QueryLogError(
                    f"the query log {name} is not UTF-8 text (byte {offset + err.start} is invalid)"
                ) from None
            offset += len(raw)
            yield from ((line, 1) for line in text.splitlines())


def _table_columns(names: list, name: str) -> dict[str, object]:
    """``query`` (and ``count``, when there) -> the column as the file spells it (any case, spaces around)."""
    columns = {str(c).strip().lower(): c for c in names}
    if "query" not in columns:
        raise QueryLogError(
            f"the query log {name} has no 'query' column (columns: {', '.join(map(str, names)) or 'none'})"
        )
    return {key: columns[key] for key in ("query", "count") if key in columns}


def _table_rows(frame: pd.DataFrame, columns: dict, name: str, first_row: int) -> Iterator[tuple[str, int]]:
    texts = ["" if pd.isna(q) else str(q) for q in frame[columns["query"]]]
    counts = _whole_counts(frame[columns["count"]], name, first_row) if "count" in columns else [1] * len(texts)
    return zip(texts, counts)


def _csv_rows(path: Path, name: str) -> Iterator[tuple[str, int]]:
    with open(path, "rb") as head:
        if b"\x00" in head.read(_SNIFF_BYTES):
            raise QueryLogError(f"the query log {name} is binary, not text (it holds NUL bytes)")
    first_row = 2  # the header is row 1
    try:
        with pd.read_csv(path, chunksize=STREAM_ROWS, dtype=str, keep_default_na=False, encoding="utf-8-sig") as chunks:
            for frame in chunks:
                yield from _table_rows(frame, _table_columns(list(frame.columns), name), name, first_row)
                first_row += len(frame)
    except QueryLogError:  # a row of ours, already one line
        raise
    except UnicodeDecodeError:
        raise QueryLogError(f"the query log {name} is not UTF-8 text") from None
    except (ValueError, pd.errors.ParserError) as err:
        raise QueryLogError(f"the query log {name} is not a readable CSV: {str(err).splitlines()[0]}") from None


def _parquet_rows(path: Path, name: str) -> Iterator[tuple[str, int]]:
    with open(path, "rb") as head:
        if head.read(4) != b"PAR1":
            raise QueryLogError(f"the query log {name} is not a Parquet file (no PAR1 header)")
    first_row = 1  # Parquet has no header row
    try:
        file = pq.ParquetFile(path)
        columns = _table_columns(file.schema_arrow.names, name)
        for batch in file.iter_batches(STREAM_ROWS, columns=list(columns.values())):
            frame = batch.to_pandas()
            yield from _table_rows(frame, columns, name, first_row)
            first_row += len(frame)
    except QueryLogError:  # a row of ours, already one line
        raise
    except Exception as err:  # noqa: BLE001  (pyarrow raises many kinds on a damaged file, also mid-way)
        raise QueryLogError(
            f"the query log {name} is not a readable Parquet file: {str(err).splitlines()[0]}"
        ) from None


def _size(path: Path, name: str) -> int:
    """The log file's size in bytes, or one line saying why it cannot be read."""
    try:
        return path.stat().st_size
    except OSError as err:
        raise QueryLogError(f"cannot read the query log {name}: {err.strerror or err}") from None
