"""Your own query log: the formats, the bad inputs (library and CLI), and a replay whose alpha is known by hand."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from analysis import presets, query_logs
from analysis.query_logs import QueryLogError, read_query_log
from cascade import world
from cascade.encoders import create_encoder
from cascade_cli import main


def test_text_log_keeps_order_and_repeats_and_counts_empty_lines(tmp_path):
    path = tmp_path / "log.txt"
    path.write_text("a red circle\n  a blue square \n\n   \na red circle\n", encoding="utf-8")
    log = read_query_log(path)
    assert log.queries == ("a red circle", "a blue square", "a red circle")
    assert (log.skipped_empty, log.distinct, log.name) == (2, 2, "log.txt")


def test_csv_counts_expand_and_timestamps_order(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("query,count,timestamp\nlate,2,2024-01-03\nearly,1,2024-01-01\n ,5,2024-01-02\nnone,0,2024-01-02\n")
    log = read_query_log(path)
    assert log.queries == ("early", "late", "late") and log.skipped_empty == 1


def test_parquet_log(tmp_path):
    path = tmp_path / "log.parquet"
    pd.DataFrame({"Query": ["x", "y", "x"], "count": [1, 3, 1]}).to_parquet(path)
    assert read_query_log(path).queries == ("x", "y", "y", "y", "x")


BAD = [
    ("empty.txt", b"", "is empty"),
    ("blank.txt", b"\n  \n", "no queries"),
    ("binary.txt", b"abc\x00\x01\x02", "binary"),
    ("latin1.txt", "caf\xe9\n".encode("latin-1"), "not UTF-8"),
    ("cols.csv", b"text,count\nhello,1\n", "no 'query' column"),
    ("neg.csv", b"query,count\nhello,-3\n", "negative count"),
    ("frac.csv", b"query,count\nhello,1.5\n", "not a whole number"),
    ("fake.parquet", b"query\nhello\n", "not a Parquet file"),
    ("onlyempty.csv", b'query\n" "\n', "no queries"),
]


@pytest.mark.parametrize(("name", "data", "says"), BAD, ids=[row[0] for row in BAD])
def test_bad_logs_are_one_line(tmp_path, name, data, says):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(QueryLogError, match=says) as caught:
        read_query_log(path)
    assert "\n" not in str(caught.value)


def test_size_and_query_limits(tmp_path, monkeypatch):
    monkeypatch.setattr(query_logs, "MAX_FILE_BYTES", 10)
    path = tmp_path / "big.txt"
    path.write_text("x" * 11)
    with pytest.raises(QueryLogError, match="the limit is"):
        read_query_log(path)
    monkeypatch.setattr(query_logs, "MAX_FILE_BYTES", 1000)
    monkeypatch.setattr(query_logs, "MAX_QUERIES", 5)
    many = tmp_path / "many.csv"
    many.write_text("query,count\na,3\nb,3\n")
    with pytest.raises(QueryLogError, match="expands to 6 queries"):
        read_query_log(many)


@pytest.fixture
def tiny_world(monkeypatch):
    monkeypatch.setitem(world.GALLERY_SIZES, "test", 150)


@pytest.mark.parametrize(("name", "data", "says"), BAD[:6], ids=[row[0] for row in BAD[:6]])
def test_cli_refuses_bad_logs_with_one_line(tiny_world, tmp_path, capsys, name, data, says):
    path = tmp_path / name
    path.write_bytes(data)
    assert main(["replay", "--gallery", "test", "--queries-file", str(path), "--quiet"]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and says in captured.err and len(captured.err.strip().splitlines()) == 1
    assert captured.out == ""  # nothing replayed


def test_cli_replays_a_query_log_and_its_alpha_is_the_union_of_level_one_top_k(tiny_world, tmp_path, capsys):
    corpus = presets.gallery("shapes", "test")
    captions = [corpus.captions[image_id][0] for image_id in corpus.ids[:6]]
    lines = [captions[0], captions[1], captions[0], "", captions[2], captions[3], captions[0], captions[5]]
    path = tmp_path / "mine.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["replay", "--gallery", "test", "--queries-file", str(path), "--json", "--quiet"]) == 0
    row = json.loads(capsys.readouterr().out)
    preset = presets.get("shapes")
    distinct = list(dict.fromkeys(q for q in lines if q))
    small = create_encoder(preset.levels[0])  # by hand: level 1's top k_1 of each distinct query, no searcher
    images = small.encode_images([corpus.load(image_id) for image_id in corpus.ids])
    top = np.argsort(-(small.encode_texts(distinct) @ images.T), axis=1, kind="stable")[:, : preset.ks[0]]
    handed = len(set(top.ravel().tolist()))
    large = create_encoder(preset.levels[1])
    assert (row["workload"], row["queries"], row["distinct_queries"], row["skipped_empty"]) == ("file:mine.txt", 7,
                                                                                                 5, 1)  # fmt: skip
    assert row["alpha"] == round(handed / 150, 4)
    assert row["cascade_image_macs"] == 150 * small.image_macs + handed * large.image_macs
    assert row["baselines"] == {small.id: 150 * small.image_macs, large.id: 150 * large.image_macs}
    assert row["break_even"][small.id] == 0 and row["break_even"][large.id] is None
