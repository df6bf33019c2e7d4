"""Reading an existing CLIP index: three layouts read back by value, and every bad input refused in one line."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis import embedding_sources
from analysis.embedding_sources import Layout, detect
from analysis.index_check import check, normalised_blocks
from cascade.errors import ConfigError, CorpusError
from tests.index_layouts import DIM, Written, truncate, write_clip_retrieval, write_npy, write_parquet


def read_back(source) -> Written:
    """Every shard of ``source`` concatenated: what a reader gave back, to compare with what was written."""
    shards = list(source.shards())
    captions = [c for s in shards for c in s.captions] if source.has_captions else None
    text = np.concatenate([s.text_embeddings for s in shards]) if shards[0].text_embeddings is not None else None
    return Written(np.concatenate([s.embeddings for s in shards]), [p for s in shards for p in s.paths], captions, text)


def refused(error: type[Exception], match: str, read) -> str:
    """The one-line message ``read()`` raises, checked to name ``match``."""
    with pytest.raises(error, match=match) as caught:
        read()
    assert "\n" not in str(caught.value)
    return str(caught.value)


def checked(src, dim: int = DIM, **options):
    return check(detect(src, **options), dim)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_clip_retrieval_reads_back_rows_paths_captions_and_text(tmp_path, dtype):
    written = write_clip_retrieval(tmp_path, numbers=("0000", "0001", "0002"), dtype=dtype)
    source = detect(tmp_path)
    assert (source.layout, source.dim, source.dtype, source.n_rows, source.has_captions) == (
        Layout.CLIP_RETRIEVAL,
        DIM,
        np.dtype(dtype),
        150,
        True,
    )
    got = read_back(source)
    assert got.embeddings.dtype == dtype
    np.testing.assert_array_equal(got.embeddings, written.embeddings)
    np.testing.assert_array_equal(got.text_embeddings, written.text_embeddings)
    assert (got.paths, got.captions) == (written.paths, written.captions)
    assert all(isinstance(s.embeddings, np.memmap) for s in source.shards())  # mapped, not loaded


def test_clip_retrieval_orders_shards_by_their_number_whatever_the_padding(tmp_path):
    written = write_clip_retrieval(tmp_path, numbers=("10", "2", "0001"))  # name order: 0001, 10, 2
    source = detect(tmp_path)
    assert [s.name for s in source.shards()] == [
        "img_emb/img_emb_0001.npy",
        "img_emb/img_emb_2.npy",
        "img_emb/img_emb_10.npy",
    ]
    got = read_back(source)
    np.testing.assert_array_equal(got.embeddings, written.embeddings)
    assert got.paths == written.paths


def test_webdataset_keys_are_ids_and_captions_and_text_are_optional(tmp_path):
    written = write_clip_retrieval(tmp_path, captions=False, text=False, keys=True)
    source = detect(tmp_path)
    got = read_back(source)
    assert not source.has_captions and got.captions is None and got.text_embeddings is None
    assert got.paths[:2] == ["000000000", "000000001"] == written.paths[:2]
    assert check(source, DIM).rows == 150


@pytest.mark.parametrize(
    ("value_type", "fixed", "served"),
    [("float32", False, np.float32), ("float16", True, np.float16), ("float64", False, np.float32)],
)
def test_parquet_folder_reads_back_in_name_order(tmp_path, value_type, fixed, served):
    written = write_parquet(tmp_path / "export", value_type=value_type, fixed=fixed)
    source = detect(tmp_path / "export", id_column="id", embedding_column="embedding", caption_column="caption")
    assert (source.layout, source.dim, source.dtype, source.n_rows) == (Layout.PARQUET, DIM, np.dtype(served), 150)
    got = read_back(source)
    np.testing.assert_array_equal(got.embeddings, written.embeddings.astype(served))
    assert (got.paths, got.captions) == (written.paths, written.captions)


def test_one_parquet_file_in_batches(tmp_path, monkeypatch):
    monkeypatch.setattr(embedding_sources, "SHARD_ROWS", 16)
    written = write_parquet(tmp_path / "table.parquet", files=1)
    source = detect(tmp_path / "table.parquet", id_column="id", embedding_column="embedding")
    assert [(s.name, s.start) for s in source.shards()] == [("table.parquet", r) for r in (0, 16, 32, 48)]
    got = read_back(source)
    np.testing.assert_array_equal(got.embeddings, written.embeddings)
    assert got.paths == written.paths and got.captions is None


def test_npy_with_paths_file_in_shards(tmp_path, monkeypatch):
    monkeypatch.setattr(embedding_sources, "SHARD_ROWS", 64)
    matrix, paths, written = write_npy(tmp_path)
    source = detect(matrix, paths=paths)
    assert [len(s) for s in source.shards()] == [64, 64, 22]
    got = read_back(source)
    np.testing.assert_array_equal(got.embeddings, written.embeddings)
    assert got.paths == written.paths
    assert check(source, DIM).shards == 3


def test_check_reports_rows_and_progress(tmp_path):
    write_clip_retrieval(tmp_path)
    seen = []
    report = check(detect(tmp_path), DIM, progress=lambda done, total: seen.append((done, total)))
    assert (report.rows, report.dim, report.dtype, report.to_normalise, report.shards) == (
        150,
        DIM,
        np.dtype(np.float16),
        0,  # float16 rounding of unit rows is within the tolerance
        3,
    )
    assert seen == [(50, 150), (100, 150), (150, 150)]


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_off_norms_are_counted_and_normalised(tmp_path, dtype):
    matrix, paths, written = write_npy(tmp_path, dtype=dtype)
    scaled = written.embeddings.astype(np.float32)
    scaled[[3, 40, 99]] *= 1.5  # off by more than the tolerance
    scaled[[5, 6]] *= 1.005  # within it
    np.save(matrix, scaled.astype(dtype))
    assert check(detect(matrix, paths=paths), DIM).to_normalise == 3
    for asked in (np.float16, np.float32):
        blocks = list(normalised_blocks(detect(matrix, paths=paths), dtype=asked, block_rows=40))
        assert [len(b) for b in blocks] == [40, 40, 40, 30] and {b.embeddings.dtype for b in blocks} == {
            np.dtype(asked)
        }
        unit = np.concatenate([b.embeddings for b in blocks]).astype(np.float32)
        norms = np.linalg.norm(unit, axis=1)
        np.testing.assert_allclose(norms, 1, atol=2e-3 if asked is np.float16 else 1e-5)
        np.testing.assert_allclose(unit[3], written.embeddings[3].astype(np.float32), atol=2e-3)
        assert [p for b in blocks for p in b.paths] == written.paths


def test_normalised_blocks_keep_the_source_dtype_and_refuse_others(tmp_path):
    write_clip_retrieval(tmp_path, dtype=np.float32)
    assert {b.embeddings.dtype for b in normalised_blocks(detect(tmp_path))} == {np.dtype(np.float32)}
    refused(ConfigError, "float16 or float32", lambda: next(normalised_blocks(detect(tmp_path), dtype=np.int8)))


def test_wrong_dimension(tmp_path):
    write_clip_retrieval(tmp_path)
    refused(CorpusError, "32 dimensions, the encoder's 512", lambda: checked(tmp_path, dim=512))
    np.save(tmp_path / "img_emb" / "img_emb_1.npy", np.ones((50, DIM - 1), np.float16))
    refused(CorpusError, "img_emb/img_emb_1.npy has 31 dimensions, the encoder's 32", lambda: checked(tmp_path))


@pytest.mark.parametrize(("value", "what"), [(np.nan, "not finite"), (np.inf, "not finite"), (0.0, "all zeros")])
def test_nan_inf_and_zero_rows(tmp_path, value, what):
    write_clip_retrieval(tmp_path)
    shard = tmp_path / "img_emb" / "img_emb_1.npy"
    matrix = np.load(shard)
    matrix[[7, 30]] = value
    np.save(shard, matrix)
    message = refused(CorpusError, what, lambda: checked(tmp_path))
    assert "img_emb/img_emb_1.npy: 2 row(s)" in message and "first at row 7" in message
    refused(CorpusError, what, lambda: list(normalised_blocks(detect(tmp_path))))


def test_duplicate_paths_across_shards(tmp_path):
    written = write_clip_retrieval(tmp_path)
    table = pq.read_table(tmp_path / "metadata" / "metadata_2.parquet")
    paths = table.column("image_path").to_pylist()
    paths[3] = written.paths[4]
    table = table.set_column(0, "image_path", pa.array(paths))
    pq.write_table(table, tmp_path / "metadata" / "metadata_2.parquet")
    message = refused(CorpusError, "appears twice", lambda: checked(tmp_path))
    assert written.paths[4] in message and "img_emb_0.npy row 4" in message and "img_emb_2.npy row 3" in message


def test_metadata_with_another_row_count(tmp_path):
    write_clip_retrieval(tmp_path)
    metadata = tmp_path / "metadata" / "metadata_1.parquet"
    pq.write_table(pq.read_table(metadata).slice(0, 49), metadata)
    refused(CorpusError, "img_emb_1.npy has 50 rows but metadata/metadata_1.parquet has 49", lambda: checked(tmp_path))


def test_text_embeddings_with_another_row_count(tmp_path):
    write_clip_retrieval(tmp_path)
    np.save(tmp_path / "text_emb" / "text_emb_2.npy", np.ones((48, DIM), np.float16))
    refused(CorpusError, "has 50 rows but text_emb/text_emb_2.npy has 48", lambda: checked(tmp_path))


def test_missing_metadata_and_missing_embeddings(tmp_path):
    write_clip_retrieval(tmp_path)
    (tmp_path / "metadata" / "metadata_1.parquet").unlink()
    refused(CorpusError, "img_emb/img_emb_1.npy has no matching metadata/metadata_1.parquet", lambda: detect(tmp_path))
    (tmp_path / "img_emb" / "img_emb_1.npy").unlink()
    (tmp_path / "text_emb" / "text_emb_1.npy").unlink()
    pq.write_table(pa.table({"image_path": ["x"]}), tmp_path / "metadata" / "metadata_5.parquet")
    refused(CorpusError, "metadata/metadata_5.parquet has no matching img_emb/img_emb_5.npy", lambda: detect(tmp_path))


def test_one_shard_number_written_twice(tmp_path):
    write_clip_retrieval(tmp_path, numbers=("1", "01"))
    refused(CorpusError, "are both shard 1", lambda: detect(tmp_path))


def test_truncated_npy(tmp_path):
    write_clip_retrieval(tmp_path / "clip")
    truncate(tmp_path / "clip" / "img_emb" / "img_emb_2.npy")
    refused(
        CorpusError,
        "img_emb/img_emb_2.npy is not a readable .npy matrix, truncated",
        lambda: checked(tmp_path / "clip"),
    )
    matrix, paths, _ = write_npy(tmp_path / "npy")
    truncate(matrix)
    refused(CorpusError, "emb.npy is not a readable .npy matrix, truncated", lambda: checked(matrix, paths=paths))


def test_paths_file_with_another_line_count_or_not_utf8(tmp_path):
    matrix, paths, written = write_npy(tmp_path)
    paths.write_text("\n".join(written.paths[:-2]) + "\n", encoding="utf-8")
    refused(CorpusError, "paths.txt has 148 lines, emb.npy 150 rows", lambda: checked(matrix, paths=paths))
    paths.write_text("\n".join(written.paths + ["extra.jpg"]) + "\n", encoding="utf-8")
    refused(CorpusError, "paths.txt has 151 lines", lambda: checked(matrix, paths=paths))
    paths.write_bytes("\n".join(written.paths).encode("latin-1"))
    refused(CorpusError, "paths.txt is not UTF-8", lambda: checked(matrix, paths=paths))


def test_parquet_without_the_named_columns(tmp_path):
    write_parquet(tmp_path / "export")
    message = refused(CorpusError, "has no column 'uuid'", lambda: detect(tmp_path / "export", "uuid", "embedding"))
    assert "part-0.parquet" in message and "columns: id, embedding, caption" in message
    refused(CorpusError, "no column 'vec'", lambda: detect(tmp_path / "export", "id", "vec"))
    refused(
        CorpusError, "holds string; expected a list of floats", lambda: detect(tmp_path / "export", "id", "caption")
    )


def test_parquet_rows_of_another_length_or_without_embedding(tmp_path):
    table = tmp_path / "t.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "embedding": [[0.5] * DIM, [0.5] * (DIM - 1)]}), table)

    def read():
        return checked(table, id_column="id", embedding_column="embedding")

    refused(CorpusError, "t.parquet row 1 has 31 dimensions, the index 32", read)
    pq.write_table(pa.table({"id": ["a", "c"], "embedding": [[0.5] * DIM, None]}), table)
    refused(CorpusError, "t.parquet row 1 has no 'embedding'", read)
    pq.write_table(pa.table({"id": ["a", None], "embedding": [[0.5] * DIM] * 2}), table)
    refused(CorpusError, "t.parquet row 1 has no 'id'", read)


@pytest.mark.parametrize("what", ["empty folder", "text file", "parquet without columns", "npy without paths"])
def test_unknown_layout_or_missing_arguments(tmp_path, what):
    if what == "empty folder":
        refused(ConfigError, "not an embedding index: expected a clip-retrieval folder", lambda: detect(tmp_path))
    elif what == "text file":
        (tmp_path / "index.txt").write_text("x")
        refused(ConfigError, "not an embedding index", lambda: detect(tmp_path / "index.txt"))
    elif what == "parquet without columns":
        write_parquet(tmp_path / "export")
        refused(ConfigError, "name its id column and its embedding column", lambda: detect(tmp_path / "export"))
    else:
        matrix, _, _ = write_npy(tmp_path)
        refused(ConfigError, "give its paths file", lambda: detect(matrix))
    refused(CorpusError, "embedding index not found", lambda: detect(tmp_path / "nowhere"))
