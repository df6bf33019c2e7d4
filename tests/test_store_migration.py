"""Schemas 1 and 2 -> 3: a database written by older code keeps its log, even when the migration is killed.

``tests/data/store_v1.duckdb.gz`` was written by the schema-1 store (commit 2eb34ec): a 12-image
gallery, five logged searches of fake:small -> fake:large (one of them with other ks), features of
both levels, one evaluation. Expected values are read from the v1 file with plain DuckDB, never
through the store.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from analysis import store_schema
from analysis.store import SCHEMA_VERSION, Store, StoreError
from tests.conftest import ROOT

FIXTURE = ROOT / "tests" / "data" / "store_v1.duckdb.gz"
QUERY_COLUMNS = (
    "query_id, ts, config_key, corpus_id, corpus_size, query, build_image_macs, image_macs, text_macs, latency_ms"
)
LEVEL_COLUMNS = (
    "query_id, level, encoder_id, k, candidates, hits, misses, macs_per_image, image_macs, text_macs, latency_ms"
)


@pytest.fixture
def v1_db(tmp_path) -> Path:
    path = tmp_path / "v1.duckdb"
    with gzip.open(FIXTURE, "rb") as packed, open(path, "wb") as out:
        shutil.copyfileobj(packed, out)
    return path


def read_raw(path: Path) -> dict[str, pd.DataFrame]:
    """The file's log, features, evaluations and version, read with DuckDB alone."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {
            "version": con.execute("SELECT value FROM meta WHERE key = 'schema_version'").df(),
            "queries": con.execute(f"SELECT {QUERY_COLUMNS} FROM queries ORDER BY query_id").df(),
            "levels": con.execute(f"SELECT {LEVEL_COLUMNS} FROM query_levels ORDER BY query_id, level").df(),
            "features": con.execute("SELECT * FROM features ORDER BY encoder_id, image_id").df(),
            "evaluations": con.execute("SELECT * FROM evaluations").df(),
        }
    finally:
        con.close()


def assert_same_log(got: dict[str, pd.DataFrame], want: dict[str, pd.DataFrame]) -> None:
    for name in ("queries", "levels", "features", "evaluations"):
        pd.testing.assert_frame_equal(got[name], want[name], check_dtype=False, obj=name)


def test_the_fixture_is_a_schema_1_file_with_a_log(v1_db):
    raw = read_raw(v1_db)
    assert raw["version"]["value"].tolist() == ["1"]
    assert len(raw["queries"]) == 5 and len(raw["levels"]) == 10
    assert raw["evaluations"]["dataset"].tolist() == ["fixture"]


def test_a_v1_database_migrates_and_keeps_its_log(v1_db, tmp_path):
    before = read_raw(v1_db)
    with Store(v1_db) as store:
        key, corpus = before["queries"]["config_key"][0], before["queries"]["corpus_id"][0]
        queries, macs = store.lifetime(key, corpus)
        totals = store.config_totals()
    after = read_raw(v1_db)
    assert SCHEMA_VERSION == 3 and after["version"]["value"].tolist() == ["3"]
    assert_same_log(after, before)
    logged = before["queries"][(before["queries"].config_key == key) & (before["queries"].corpus_id == corpus)]
    assert queries == len(logged) == 4
    assert macs == logged["build_image_macs"].max() + logged["image_macs"].sum()
    assert sorted(totals["queries"].tolist()) == [1, 4]
    with Store(v1_db) as again:  # a second open finds v2 and logs on after the last v1 id
        again.record(again_result(), "c", 12)
        ids = again.frame("SELECT query_id FROM queries ORDER BY query_id")["query_id"].tolist()
    assert ids == [1, 2, 3, 4, 5, 6]
    grown = read_raw(v1_db)
    grown["queries"] = grown["queries"][grown["queries"].query_id <= 5]
    grown["levels"] = grown["levels"][grown["levels"].query_id <= 5]
    assert_same_log(grown, before)


def again_result():
    from cascade.types import CascadeConfig, LevelTrace, SearchResult

    trace = LevelTrace(encoder="fake:small", k=2, candidates=12, hits=12, misses=0, image_macs=0, text_macs=1000,
                       latency_ms=0.25, ids=("a", "b"), scores=(1.0, 0.5), macs_per_image=10)  # fmt: skip
    return SearchResult(query="after the migration", config=CascadeConfig(levels=("fake:small",), ks=(2,)),
                        levels=(trace,))  # fmt: skip


def test_a_migrated_file_has_the_schema_of_a_new_one(v1_db, tmp_path):
    Store(v1_db).close()
    Store(tmp_path / "new.duckdb").close()

    def schema(path: Path) -> list[tuple]:
        con = duckdb.connect(str(path), read_only=True)
        try:
            objects = con.execute(
                "SELECT table_name, table_type FROM information_schema.tables ORDER BY table_name"
            ).fetchall()
            columns = con.execute(
                "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns "
                "ORDER BY table_name, ordinal_position"
            ).fetchall()
            sequences = con.execute("SELECT sequence_name FROM duckdb_sequences()").fetchall()
            return objects + columns + sequences
        finally:
            con.close()

    assert schema(v1_db) == schema(tmp_path / "new.duckdb")


def test_a_v1_file_opened_read_only_is_refused_untouched(v1_db):
    digest = v1_db.read_bytes()
    with pytest.raises(StoreError, match="schema version 1; open it once without read-only"):
        Store(v1_db, read_only=True)
    assert v1_db.read_bytes() == digest


KILLER = textwrap.dedent(
    """
    import sys, time
    from analysis import store
    step = int(sys.argv[2])

    def pause(index):
        if index == step:
            print("at", index, flush=True)
            time.sleep(600)

    store._after_migration_step = pause
    s = store.Store(sys.argv[1])
    print("migrated", flush=True)  # step -1: killed after the commit, before close
    time.sleep(600)
    """
)


# After the v1 tables are renamed, after the log is copied, after the version is set (the last
# statement before COMMIT), and after the commit (-1).
@pytest.mark.parametrize("step", [3, 5, len(store_schema.migration(1)) - 1, -1])
def test_kill_9_during_the_migration_leaves_v1_or_v2_whole(v1_db, step):
    before = read_raw(v1_db)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", KILLER, str(v1_db), str(step)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        line = proc.stdout.readline()
        assert line.split() == (["migrated"] if step == -1 else ["at", str(step)]), proc.stderr.read()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    killed = read_raw(v1_db)
    assert killed["version"]["value"].tolist() == (["3"] if step == -1 else ["1"])
    assert_same_log(killed, before)  # all of v1, or all of v2: never a half
    with Store(v1_db):
        pass
    migrated = read_raw(v1_db)
    assert migrated["version"]["value"].tolist() == ["3"]
    assert_same_log(migrated, before)


V2_FIXTURE = ROOT / "tests" / "data" / "store_v2.duckdb.gz"  # written by the schema-2 store (commit 15c3de6)


def test_a_v2_database_migrates_its_hand_offs_and_labels(tmp_path):
    """Level 1's logged hand-off becomes the first of each level's; the page's preset labels become the
    dataset's; everything else is as it was. Expected values are read with DuckDB from the v2 file."""
    path = tmp_path / "v2.duckdb"
    with gzip.open(V2_FIXTURE, "rb") as packed, open(path, "wb") as out:
        shutil.copyfileobj(packed, out)
    con = duckdb.connect(str(path), read_only=True)
    old_handed = [row[0] for row in con.execute("SELECT handed_ids FROM queries ORDER BY query_id").fetchall()]
    old_labels = [row[0] for row in con.execute("SELECT dataset FROM evaluations ORDER BY ts").fetchall()]
    con.close()
    before = read_raw(path)
    assert before["version"]["value"].tolist() == ["2"] and len(old_handed) == 4
    with Store(path) as store:
        handed = store.handed_log("fake:small>fake:large>fake:huge|6,3,2", "corpus12")
        labels = store.evaluations()["dataset"].tolist()
    assert handed == [[json.loads(text)] for text in old_handed[:3]]  # deeper hand-offs were never logged
    assert labels == ["world:test", "flickr30k:test", "world:test", "captions.json:test"]
    assert old_labels == ["shapes:test", "flickr30k-cpu:test", "world:test", "captions.json:test"]
    after = read_raw(path)
    assert after["version"]["value"].tolist() == ["3"]
    for name in ("queries", "levels", "features"):
        pd.testing.assert_frame_equal(after[name], before[name], check_dtype=False, obj=name)
