"""An existing index checked before it is imported: every row read once, one line for the first fault.

``check`` verifies an index read by ``analysis.embedding_sources`` can be level 1 for an encoder (its
dimension, finite non-zero rows, no path twice, files that agree on their rows); ``normalised_blocks``
gives its rows L2-normalised, block by block, for the import writer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from analysis.embedding_sources import _FLOATS, NORM_TOLERANCE, SHARD_ROWS, EmbeddingSource, Shard
from analysis.progress import Counter
from cascade.errors import ConfigError, CorpusError


@dataclass(frozen=True)
class CheckReport:
    """What ``check`` read: ``rows`` embeddings of ``dim`` values in ``shards`` shards, served as ``dtype``;
    ``to_normalise`` of them have a norm off 1 by more than ``NORM_TOLERANCE`` (the import renormalises them)."""

    rows: int
    dim: int
    dtype: np.dtype
    to_normalise: int
    shards: int


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
    for shard in source.shards():
        if shard.embeddings.shape[1] != dim:
            raise CorpusError(f"{shard.name} has {shard.embeddings.shape[1]} dimensions, the encoder's {dim}")
        norms = _norms(shard)
        _refuse_faulty(shard, norms)
        to_normalise += int(np.count_nonzero(np.abs(norms - 1) > NORM_TOLERANCE))
        # Python's str hash: 8 bytes a row instead of a set of strings; a repeated hash is confirmed below.
        hashes.append(np.fromiter(map(hash, shard.paths), dtype=np.int64, count=len(shard)))
        done, n_shards = done + len(shard), n_shards + 1
        if progress is not None:
            progress(done, source.n_rows)
    if hashes:
        _refuse_duplicates(source, np.concatenate(hashes))
    return CheckReport(rows=done, dim=dim, dtype=source.dtype, to_normalise=to_normalise, shards=n_shards)


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
