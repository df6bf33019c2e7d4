"""The three index layouts ``analysis.embedding_sources`` reads, written small into a test's folder.

Each writer returns what it wrote, in the order a reader must give it back, so a test compares by value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cascade.corpus import Corpus

DIM = 32


@dataclass(frozen=True)
class Written:
    """What a writer wrote, in reading order: ``(n, d)`` embeddings, their paths, captions and text embeddings."""

    embeddings: np.ndarray
    paths: list[str]
    captions: list[str] | None = None
    text_embeddings: np.ndarray | None = None


def unit_rows(n_rows: int, dim: int = DIM, dtype: type = np.float16, seed: int = 0) -> np.ndarray:
    """``(n_rows, dim)`` random L2-normalised rows in ``dtype``."""
    rows = np.random.default_rng(seed).standard_normal((n_rows, dim)).astype(np.float32)
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(dtype)


def write_clip_retrieval(
    root: Path,
    numbers: Sequence[str] = ("0", "1", "2"),
    rows: int = 50,
    dtype: type = np.float16,
    captions: bool = True,
    text: bool = True,
    keys: bool = False,
) -> Written:
    """clip-retrieval's output folder: ``img_emb/img_emb_N.npy``, ``metadata/metadata_N.parquet`` (and
    ``text_emb/text_emb_N.npy``), one shard per entry of ``numbers`` as written in file names (``"0007"``).

    ``keys``: ``image_path`` holds webdataset keys (``000000123``) instead of file paths.
    """
    in_order = sorted(numbers, key=int)
    matrices, paths, all_captions, texts = [], [], [], []
    for i, number in enumerate(in_order):
        matrix = unit_rows(rows, dtype=dtype, seed=i)
        shard_paths = [f"{i * rows + r:09d}" if keys else f"/photos/{number}/image_{r}.jpg" for r in range(rows)]
        shard_captions = [f"caption {i} {r}" for r in range(rows)]
        (root / "img_emb").mkdir(parents=True, exist_ok=True)
        np.save(root / "img_emb" / f"img_emb_{number}.npy", matrix)
        columns = {"image_path": shard_paths} | ({"caption": shard_captions} if captions else {})
        (root / "metadata").mkdir(exist_ok=True)
        pq.write_table(pa.table(columns), root / "metadata" / f"metadata_{number}.parquet")
        if text:
            (root / "text_emb").mkdir(exist_ok=True)
            texts.append(unit_rows(rows, dtype=dtype, seed=100 + i))
            np.save(root / "text_emb" / f"text_emb_{number}.npy", texts[-1])
        matrices.append(matrix)
        paths += shard_paths
        all_captions += shard_captions
    return Written(
        np.concatenate(matrices), paths, all_captions if captions else None, np.concatenate(texts) if text else None
    )


def write_parquet(
    target: Path, files: int = 3, rows: int = 50, value_type: str = "float32", fixed: bool = False
) -> Written:
    """``files`` Parquet files (``part-0.parquet``...) with ``id``, ``embedding`` (a list of floats) and ``caption``;
    one file named ``target`` when ``files`` is 1 and ``target`` ends in ``.parquet``.

    ``value_type``: the list's Arrow value type (``float16``, ``float32``, ``float64``); ``fixed``: a fixed-size list.
    """
    single = files == 1 and target.suffix == ".parquet"
    if not single:
        target.mkdir(parents=True, exist_ok=True)
    matrices, ids, captions = [], [], []
    for i in range(files):
        matrix = unit_rows(rows, dtype=pa.type_for_alias(value_type).to_pandas_dtype(), seed=i)
        values = pa.array(matrix.ravel())
        if fixed:
            embedding = pa.FixedSizeListArray.from_arrays(values, DIM)
        else:
            embedding = pa.ListArray.from_arrays(pa.array(np.arange(0, matrix.size + 1, DIM, dtype=np.int32)), values)
        file_ids = [f"asset-{i}-{r}" for r in range(rows)]
        file_captions = [f"caption {i} {r}" for r in range(rows)]
        table = pa.table({"id": file_ids, "embedding": embedding, "caption": file_captions})
        pq.write_table(table, target if single else target / f"part-{i}.parquet")
        matrices.append(matrix)
        ids += file_ids
        captions += file_captions
    return Written(np.concatenate(matrices), ids, captions)


def write_npy(folder: Path, rows: int = 150, dtype: type = np.float32) -> tuple[Path, Path, Written]:
    """A ``.npy`` matrix and its paths file; returns both paths and what they hold."""
    folder.mkdir(parents=True, exist_ok=True)
    matrix = unit_rows(rows, dtype=dtype)
    paths = [f"photos/été/{r}.jpg" for r in range(rows)]  # non-ASCII: the paths file is UTF-8
    np.save(folder / "emb.npy", matrix)
    (folder / "paths.txt").write_text("".join(f"{p}\n" for p in paths), encoding="utf-8")
    return folder / "emb.npy", folder / "paths.txt", Written(matrix, paths)


def truncate(path: Path, n_bytes: int = 100) -> None:
    """Cut the last ``n_bytes`` off a file, as an interrupted copy leaves it."""
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size - n_bytes)


N_IMAGES = 12
PREFIX = "/data/photos/"  # where the index's author kept the images; here they are under the gallery folder
FLOAT16_ROUNDING = 5e-4  # a unit row of 32 float16 values scores within this of its float32 self


@dataclass(frozen=True)
class Gallery:
    """Images on disk and what the tiny model makes of them: ``(n, d)`` float32 unit rows in corpus order."""

    folder: Path
    corpus: Corpus
    embeddings: np.ndarray
    encoder_id: str


def embedded_gallery(folder: Path, encoder_name: str, n_images: int = N_IMAGES) -> Gallery:
    """A generated gallery in ``folder`` and its images embedded by ``encoder_name`` (the index to import)."""
    from cascade.encoders import create_encoder
    from tests.fakes import make_gallery

    folder = make_gallery(folder, n_images)[0].parent
    corpus = Corpus.from_folder(folder)
    encoder = create_encoder(encoder_name)
    return Gallery(folder, corpus, encoder.encode_pixels(corpus.preprocessed(encoder, corpus.ids)), encoder.id)
