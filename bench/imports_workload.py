"""The benchmark's workload, written by the bench itself: an index in clip-retrieval's layout and a query log.

Random unit rows, generated block by block (never a float32 copy of the whole matrix), in shards as
clip-retrieval writes them, with webdataset keys for paths; a log of Zipf-ish repeats over distinct queries.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

_GEN_ROWS = 1 << 16  # rows generated at a time: no float32 copy of the whole matrix ever exists
_ADJECTIVES = ("red", "small", "old", "striped", "wooden", "happy", "dark", "tiny", "bright", "broken")
_THINGS = ("dog", "bicycle", "house", "beach", "car", "cat", "mountain", "cup", "tree", "boat", "bridge", "chair")


def random_rows(rng: np.random.Generator, m: int, dim: int) -> np.ndarray:
    """``(m, dim)`` float32 unit rows in random directions."""
    block = rng.standard_normal((m, dim), dtype=np.float32)
    return block / np.linalg.norm(block, axis=1, keepdims=True)


def write_index(root: Path, n_rows: int, dim: int, shards: int, seed: int = 0, rows=random_rows) -> None:
    """clip-retrieval's layout under ``root``: float16 unit rows, ``image_path`` webdataset keys.

    Shard numbers are zero-padded to the width of the shard count, as clip-retrieval writes them.
    ``rows``: ``(rng, m, dim) -> (m, dim)`` float32 unit rows, called block by block (default: random directions).
    """
    rng = np.random.default_rng(seed)
    per_shard, width = -(-n_rows // shards), len(str(shards - 1))
    for folder in ("img_emb", "metadata"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for number, first in enumerate(range(0, n_rows, per_shard)):
        count = min(per_shard, n_rows - first)
        matrix = np.lib.format.open_memmap(
            root / "img_emb" / f"img_emb_{number:0{width}d}.npy", mode="w+", dtype=np.float16, shape=(count, dim)
        )
        for start in range(0, count, _GEN_ROWS):
            block = rows(rng, min(_GEN_ROWS, count - start), dim)
            matrix[start : start + len(block)] = block
        matrix.flush()
        del matrix
        keys = pa.array([f"{first + row:09d}" for row in range(count)])  # a webdataset's keys: ids, not files
        pq.write_table(pa.table({"image_path": keys}), root / "metadata" / f"metadata_{number:0{width}d}.parquet")


def write_log(path: Path, lines: int, distinct: int, seed: int = 1) -> None:
    """A plain-text log: every one of ``distinct`` queries once, the other lines drawn Zipf-like (p ~ 1/rank^1.1)."""
    rng = np.random.default_rng(seed)
    texts = [f"a {_ADJECTIVES[i % 10]} {_THINGS[(i // 10) % 12]} in photo {i}" for i in range(distinct)]
    weights = 1.0 / np.arange(1, distinct + 1) ** 1.1
    drawn = rng.choice(distinct, size=lines - distinct, p=weights / weights.sum())
    order = rng.permutation(np.concatenate([np.arange(distinct), drawn]))
    path.write_text("".join(texts[i] + "\n" for i in order))


def read_through(root: Path) -> None:
    """Every file of the index read once, so every run starts from the same page cache (nothing is dropped)."""
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with open(path, "rb") as handle:
                while handle.read(1 << 24):
                    pass


# ---------------------------------------------------------------- the workers, one process each
