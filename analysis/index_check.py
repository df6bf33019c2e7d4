"""An existing index checked before it is imported: every row read once, one line for the first fault.

``check`` verifies an index read by ``analysis.embedding_sources`` can be level 1 for an encoder (its
dimension, finite non-zero rows, no path twice, files that agree on their rows) and notes which rows are not
unit vectors; ``stored_blocks`` gives the rows as the import stores them, only those rows renormalised (a
well-formed index is copied as it is: converting a million float16 rows to float32 and back costs seconds
and changes nothing); ``normalised_blocks`` gives every row normalised in float32 (the estimate ranks them).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from analysis.embedding_sources import _FLOATS, NORM_TOLERANCE, SHARD_ROWS, EmbeddingSource, Shard
from analysis.progress import Counter
from cascade.errors import ConfigError, CorpusError

# |norm - 1| below which a row stored in this dtype is left as it is: renormalising it and rounding it back
# to the dtype would not bring it closer to 1 (float16 keeps 11 significant bits).
ROUNDING = {np.dtype(np.float16): 2e-3, np.dtype(np.float32): 1e-5}


@dataclass(frozen=True)
class CheckReport:
    """What ``check`` read: ``rows`` embeddings of ``dim`` values in ``shards`` shards, served as ``dtype``;
    ``to_normalise`` of them have a norm off 1 by more than ``NORM_TOLERANCE`` (the import renormalises them,
    and says how many); ``off_unit``: ``(rows,)`` True where a row's norm is off 1 by more than the rounding of
    ``dtype`` (those ``stored_blocks`` renormalises: a superset of the ``to_normalise`` rows)."""

    rows: int
    dim: int
    dtype: np.dtype
    to_normalise: int
    shards: int
    off_unit: np.ndarray = field(default_factory=lambda: np.zeros(0, bool), repr=False)


def _norms(shard: Shard) -> np.ndarray:
    """``(n,)`` float32 row norms, block by block (a float32 copy of a whole shard could be gigabytes)."""
    blocks = [np.linalg.norm(np.asarray(b.embeddings, dtype=np.float32), axis=1) for b in shard.blocks()]
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)


def _refuse_faulty(shard: Shard, norms: np.ndarray) -> None:
    """One line naming how many rows of ``shard`` are not finite, or all zeros, and the first of them."""
    for bad, what in ((~np.isfinite(norms), "not finite (NaN or inf)"), (norms == 0, "all zeros")):
        rows = np.flatnonzero(bad)
        if rows.size:
            first = shard.start + int(rows[0])
            raise CorpusError(f"{shard.name}: {rows.size} row(s) {what}, the first at row {first}")


def check(source: EmbeddingSource, dim: int, progress: Counter | None = None) -> CheckReport:
    """Read every row once and verify the index can be level 1 for an encoder of ``dim`` dimensions.

    Raises:
        CorpusError: one line naming the shard and row of the first failure: another dimension, a row that is
            NaN, inf or zero, a path seen twice, files that disagree on their rows, an unreadable file.
    """
    if source.dim != dim:
        raise CorpusError(f"the index's embeddings have {source.dim} dimensions, the encoder's {dim}")
    done = to_normalise = n_shards = 0
    hashes: list[np.ndarray] = []
    off_unit: list[np.ndarray] = []
    rounding = ROUNDING.get(np.dtype(source.dtype), ROUNDING[np.dtype(np.float32)])
    for shard in source.shards():
        if shard.embeddings.shape[1] != dim:
            raise CorpusError(f"{shard.name} has {shard.embeddings.shape[1]} dimensions, the encoder's {dim}")
        norms = _norms(shard)
        _refuse_faulty(shard, norms)
        off = np.abs(norms - 1)
        to_normalise += int(np.count_nonzero(off > NORM_TOLERANCE))
        off_unit.append(off > rounding)
        # Python's str hash: 8 bytes a row instead of a set of strings; a repeated hash is confirmed below.
        hashes.append(np.fromiter(map(hash, shard.paths), dtype=np.int64, count=len(shard)))
        done, n_shards = done + len(shard), n_shards + 1
        if progress is not None:
            progress(done, source.n_rows)
    if hashes:
        _refuse_duplicates(source, np.concatenate(hashes))
    mask = np.concatenate(off_unit) if off_unit else np.zeros(0, bool)
    return CheckReport(done, dim, source.dtype, to_normalise, n_shards, off_unit=mask)


def _refuse_duplicates(source: EmbeddingSource, hashes: np.ndarray) -> None:
    """Raise on the first path seen twice; only paths whose hash repeats are compared, in a second pass."""
    ordered = np.sort(hashes)
    repeated = set(ordered[1:][ordered[1:] == ordered[:-1]].tolist())
    if not repeated:
        return
    seen: dict[str, tuple[str, int]] = {}
    for shard in source.shards():
        for row, path in enumerate(shard.paths):
            if hash(path) not in repeated:
                continue
            if path in seen:
                first, first_row = seen[path]
                again = shard.start + row
                raise CorpusError(f"{path!r} appears twice: {first} row {first_row} and {shard.name} row {again}")
            seen[path] = (shard.name, shard.start + row)


def normalised_blocks(
    source: EmbeddingSource, dtype: npt.DTypeLike = None, block_rows: int = SHARD_ROWS
) -> Iterator[Shard]:
    """The index in blocks of at most ``block_rows`` rows whose ``embeddings`` are L2-normalised ``(n, d)``.

    ``dtype``: float16 or float32 (None: the source's). Run ``check`` first; a NaN, inf or zero row raises here too.
    """
    dtype = source.dtype if dtype is None else np.dtype(dtype)
    if dtype not in _FLOATS:
        raise ConfigError(f"normalised blocks are float16 or float32, got {dtype}")
    for shard in source.shards():
        for block in shard.blocks(block_rows):
            norms = _norms(block)
            _refuse_faulty(block, norms)
            unit = np.asarray(block.embeddings, dtype=np.float32) / norms[:, None]
            yield replace(block, embeddings=unit.astype(dtype, copy=False))


def stored_blocks(source: EmbeddingSource, report: CheckReport, dtype: npt.DTypeLike) -> Iterator[Shard]:
    """The index in blocks as the import stores them: ``dtype`` (float16 or float32), each row a unit vector to
    that dtype's rounding. Only the rows ``report.off_unit`` marks are renormalised; the others are copied.

    Raises:
        CorpusError: the index no longer has the rows ``check`` read (it changed in between).
    """
    dtype = np.dtype(dtype)
    if dtype not in _FLOATS:
        raise ConfigError(f"stored blocks are float16 or float32, got {dtype}")
    done = 0
    for shard in source.shards():
        for block in shard.blocks():
            off = report.off_unit[done : done + len(block)]
            if len(off) != len(block):
                raise CorpusError(f"{shard.name} has more rows than when it was checked; import it again")
            stored = np.asarray(block.embeddings, dtype=dtype)
            if off.any():
                stored = np.array(block.embeddings, dtype=dtype)  # a copy: the source's own rows stay as they are
                rows = np.asarray(block.embeddings[off], dtype=np.float32)
                norms = np.linalg.norm(rows, axis=1, keepdims=True)
                if not (np.isfinite(norms).all() and norms.all()):
                    raise CorpusError(f"{shard.name} changed since it was checked; import it again")
                stored[off] = (rows / norms).astype(dtype)
            done += len(block)
            yield replace(block, embeddings=stored)
    if done != report.rows:
        raise CorpusError(f"the index had {report.rows} rows when checked and {done} when imported; import it again")
