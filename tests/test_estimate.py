"""``cascade replay --estimate``: a log's alpha on an existing index, checked against level-1 searches made by hand."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from analysis import embedding_sources, estimate, index_check, query_logs
from analysis.embedding_sources import detect
from analysis.query_logs import read_query_log, stream_query_log
from cascade.encoders import count_image_macs, create_encoder
from cascade_cli import main
from tests.index_layouts import write_clip_retrieval, write_npy

ENC, MEDIUM, LARGE = (f"openclip:tiny-vit-{size}@random" for size in "sml")
PX = 32  # the tiny architectures' resolution
ROWS = 40  # per shard; three shards
N = 3 * ROWS
LOG = ["a red circle", "a blue square", "a red circle", "", "two green stars", "a red circle", "a yellow moon"]
DISTINCT = ["a red circle", "a blue square", "two green stars", "a yellow moon"]


@pytest.fixture
def index(tmp_path):
    """A clip-retrieval folder of N random unit rows of ENC's dimension (float32: no ties from rounding)."""
    write_clip_retrieval(tmp_path / "index", rows=ROWS, dtype=np.float32)
    return tmp_path / "index"


@pytest.fixture
def log(tmp_path):
    path = tmp_path / "log.txt"
    path.write_text("\n".join(LOG) + "\n", encoding="utf-8")
    return path


def by_hand(index, queries: list[str], k: int) -> set[int]:
    """The union of each query's level-1 top k, each query searched alone: float64, stable order, no streaming."""
    matrix = np.concatenate([shard.embeddings for shard in detect(index).shards()]).astype(np.float64)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    scores = create_encoder(ENC).encode_texts(queries).astype(np.float64) @ matrix.T
    ranked = np.sort(scores, axis=1)[:, ::-1]
    assert np.all(ranked[:, k - 1] - ranked[:, k] > 1e-5), "a tie at the k-th score: the data must avoid it"
    return {int(row) for top in np.argsort(-scores, axis=1, kind="stable")[:, :k] for row in top}


def cli(*args: str) -> int:
    return main(["replay", "--estimate", "--quiet", *args])


def test_alpha_is_the_union_of_separate_level_one_searches(index, log, capsys):
    assert (
        cli(
            "--embeddings",
            str(index),
            "--levels",
            f"{ENC},{MEDIUM}",
            "--ks",
            "10",
            "--queries-file",
            str(log),
            "--json",
        )
        == 0
    )
    row = json.loads(capsys.readouterr().out)
    union = by_hand(index, DISTINCT, 10)
    assert 10 < len(union) < N  # the queries' neighbourhoods overlap in part: a union, neither a sum nor all
    assert (row["handed"], row["alpha"], row["images"]) == (len(union), len(union) / N, N)
    assert (row["levels"][1:], row["ks"]) == ([MEDIUM], [10])
    assert row["text_encoding_s"] > 0 and row["level1_s"] > 0


def test_totals_honour_counts_and_count_each_text_once(index, tmp_path, capsys):
    path = tmp_path / "log.csv"
    rows = [("a red circle", 3), ("a blue square", 1), (" ", 4), ("a red circle", 2), ("never asked", 0), ("moon", 1)]
    pd.DataFrame(rows, columns=["Query", "count"]).to_csv(path, index=False)
    assert cli("--embeddings", str(index), "--levels", ENC, "--ks", "5", "--queries-file", str(path), "--json") == 0
    row = json.loads(capsys.readouterr().out)
    assert (row["queries"], row["distinct_queries"]) == (3 + 1 + 2 + 1, 3)  # the blank row and count 0 drop out
    assert row["handed"] == len(by_hand(index, ["a red circle", "a blue square", "moon"], 5))


def test_lifetime_macs_are_the_build_plus_the_union_at_level_two(index, log):
    c1, c2, c3 = (count_image_macs(name, "full", PX) for name in (ENC, MEDIUM, LARGE))
    union = len(by_hand(index, DISTINCT, 10))
    two = estimate.estimate_log(index, [ENC, MEDIUM], [10], log)
    assert two.lifetime_from_scratch.macs == N * c1 + union * c2
    assert (two.lifetime_level1_paid.macs, two.build.macs) == (union * c2, N * c1)
    assert (two.first_query.macs, two.top_alone.macs) == (10 * c2, N * c2)
    assert not two.upper_bound and two.reduction(False) == pytest.approx(N * c2 / (N * c1 + union * c2))
    three = estimate.estimate_log(index, [ENC, MEDIUM, LARGE], [10, 3], log, hardware_name="T4")
    deeper = min(union, len(DISTINCT) * 3)  # level 3: at most what level 2 had, at most distinct x k_2
    assert [level.images for level in three.level_images] == [N, union, deeper]
    assert three.lifetime_from_scratch.macs == N * c1 + union * c2 + deeper * c3 and three.upper_bound
    assert three.top_alone.macs == N * c3 and three.first_query.macs == 10 * c2 + 3 * c3
    profile = estimate.hardware_named("NVIDIA T4")
    assert three.lifetime_level1_paid.seconds == pytest.approx(three.lifetime_level1_paid.macs / profile.macs_per_s)
    assert three.as_json()["upper_bound"] and "T4" in three.hardware


def test_the_index_streams_in_blocks_smaller_than_n(index, log, tmp_path, monkeypatch):
    blocks = []
    normalised = index_check.normalised_blocks

    def recorded(source, dtype=None, block_rows=embedding_sources.SHARD_ROWS):
        for block in normalised(source, dtype, block_rows):
            blocks.append(len(block))
            yield block

    monkeypatch.setattr(index_check, "normalised_blocks", recorded)
    encoder, source = create_encoder(ENC), detect(index)
    whole = tmp_path / "whole"  # the same N rows as one .npy matrix: one block
    whole.mkdir()
    np.save(whole / "all.npy", np.concatenate([shard.embeddings for shard in source.shards()]))
    (whole / "paths.txt").write_text("".join(f"{row}\n" for row in range(N)), encoding="utf-8")
    queries, profile = [(q, 1) for q in LOG], estimate.hardware_named()
    one = estimate.estimate(
        detect(whole / "all.npy", paths=whole / "paths.txt"), encoder, [MEDIUM], [10], queries, profile
    )
    assert blocks == [N]
    blocks.clear()
    small = estimate.estimate(source, encoder, [MEDIUM], [10], queries, profile, batch=3, block_rows=7)
    assert max(blocks) == 7 and sum(blocks) == 2 * N  # two batches of queries, each streaming the index
    assert small.handed == one.handed == len(by_hand(index, DISTINCT, 10))


def test_a_log_over_the_upload_limits_streams(tmp_path, monkeypatch):
    monkeypatch.setattr(query_logs, "MAX_FILE_BYTES", 10)
    monkeypatch.setattr(query_logs, "MAX_QUERIES", 2)
    text, table = tmp_path / "big.txt", tmp_path / "big.parquet"
    text.write_text("one\ntwo\n\none\nthree\n", encoding="utf-8")
    pd.DataFrame({"query": ["one", "two", "one"], "count": [2, 0, 1]}).to_parquet(table)
    assert list(stream_query_log(text)) == [("one", 1), ("two", 1), ("one", 1), ("three", 1)]
    assert list(stream_query_log(table)) == [("one", 2), ("one", 1)]
    with pytest.raises(query_logs.QueryLogError, match="the limit is"):
        read_query_log(text)
    monkeypatch.setattr(query_logs, "STREAM_ROWS", 2)  # a CSV read two rows at a time
    csv = tmp_path / "big.csv"
    csv.write_text("query,count\none,1\ntwo,2\nthree,3\nfour,4\nfive,x\n", encoding="utf-8")
    with pytest.raises(
        query_logs.QueryLogError, match="^the query log big.csv has a count that is not a whole number in row 6$"
    ):
        list(stream_query_log(csv))
    csv.write_text("query,count\none,1\ntwo,2\nthree,3\nfour,4\nfive,5\n", encoding="utf-8")
    assert list(stream_query_log(csv)) == list(zip(["one", "two", "three", "four", "five"], range(1, 6)))


OPTIONS = {"--embeddings": "INDEX", "--levels": ENC, "--ks": "5", "--queries-file": "LOG"}
BAD = [  # what differs from OPTIONS, the log's name and bytes, what the one line says
    ("no --embeddings", {"--embeddings": None}, "q.txt", b"a\n", "--embeddings"),
    ("no --queries-file", {"--queries-file": None}, "q.txt", b"a\n", "--queries-file"),
    ("no --levels", {"--levels": None}, "q.txt", b"a\n", "--levels"),
    ("ks grow", {"--levels": f"{ENC},{MEDIUM}", "--ks": "5,9"}, "q.txt", b"a\n", "must not grow"),
    ("not an index", {"--embeddings": "TMP"}, "q.txt", b"a\n", "not an embedding index"),
    ("blank log", {}, "q.txt", b"\n  \n", "q.txt holds no queries"),
    ("counts of 0", {}, "q.csv", b"query,count\na,0\n", "q.csv holds no queries"),
    ("no query column", {}, "q.csv", b"text\na\n", "no 'query' column"),
    ("binary log", {}, "q.txt", b"a\x00b\n", "binary"),
    ("damaged Parquet", {}, "q.parquet", b"PAR1 and nothing after", "q.parquet is not a readable Parquet file"),
    ("not UTF-8", {}, "q.txt", "caf\xe9\n".encode("latin-1"), "not UTF-8"),
]


def one_line_exit_1(argv: list[str], capsys, says: str) -> None:
    assert cli(*argv) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("error: ") and says in captured.err
    assert len(captured.err.strip().splitlines()) == 1


@pytest.mark.parametrize(("what", "changed", "name", "data", "says"), BAD, ids=[row[0] for row in BAD])
def test_bad_inputs_are_one_line_and_exit_1(index, tmp_path, capsys, what, changed, name, data, says):
    (tmp_path / name).write_bytes(data)
    where = {"INDEX": str(index), "LOG": str(tmp_path / name), "TMP": str(tmp_path)}
    options = {key: value for key, value in (OPTIONS | changed).items() if value is not None}
    one_line_exit_1([part for key, value in options.items() for part in (key, where.get(value, value))], capsys, says)


def test_an_index_of_another_dimension_is_one_line(tmp_path, log, capsys):
    matrix, paths, _ = write_npy(tmp_path / "npy")
    np.save(matrix, np.ascontiguousarray(np.load(matrix)[:, :16]))  # ENC embeds in 32
    argv = [
        "--embeddings",
        str(matrix),
        "--paths",
        str(paths),
        "--levels",
        ENC,
        "--ks",
        "5",
        "--queries-file",
        str(log),
    ]
    one_line_exit_1(argv, capsys, "16 dimensions")


@pytest.mark.parametrize("args", [["--ks", "ten"], ["--hardware", "abacus"], ["--levels", ","]])
def test_a_wrong_command_line_exits_2(index, log, capsys, args):
    base = ["--embeddings", str(index), "--queries-file", str(log), "--levels", ENC, "--ks", "5"]
    assert cli(*base, *args) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_text_output_is_a_short_summary(index, log, capsys):
    assert (
        cli(
            "--embeddings",
            str(index),
            "--levels",
            f"{ENC},{MEDIUM},{LARGE}",
            "--ks",
            "10,3",
            "--queries-file",
            str(log),
        )
        == 0
    )
    text = capsys.readouterr().out
    assert text.startswith("alpha ") and "upper bound" in text and "level 1 already paid" in text
    assert len(text.splitlines()) <= 10
