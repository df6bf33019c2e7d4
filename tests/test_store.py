"""The DuckDB store: persistence across restarts, stable ids, atomic logging, concurrency, bad files."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pytest

from analysis.store import SCHEMA_VERSION, Store, StoreError
from cascade.corpus import Corpus
from cascade.search import CascadeSearcher
from tests.conftest import ROOT
from tests.fakes import FakeBiEncoder, count_features, make_gallery, run_in_threads


def levels() -> list[FakeBiEncoder]:
    return [FakeBiEncoder("small", seed=1, image_macs=10), FakeBiEncoder("large", seed=3, image_macs=1000)]


@pytest.fixture
def gallery(tmp_path) -> Path:
    return make_gallery(tmp_path / "gallery", 40)[0].parent


def test_features_round_trip_exactly(tmp_path):
    rng = np.random.default_rng(0)
    rows = {"a": rng.normal(size=16).astype(np.float32), "b": rng.normal(size=(3, 4)).astype(np.float32)}
    with Store(tmp_path / "db.duckdb") as store:
        store.put("enc", rows)
        store.put("enc", {"a": np.zeros(16, np.float32)})  # a second write of a key keeps the first value
        got = store.get("enc", ["a", "b", "missing"])
        assert set(got) == {"a", "b"}
        np.testing.assert_array_equal(got["a"], rows["a"])
        np.testing.assert_array_equal(got["b"], rows["b"])
        assert store.get("other-encoder", ["a"]) == {}


def test_restart_reuses_every_cached_embedding(tmp_path, gallery):
    db = tmp_path / "db.duckdb"
    corpus = Corpus.from_folder(gallery)
    with Store(db) as store:
        searcher = CascadeSearcher(levels(), corpus, cache=store, log=store)
        assert searcher.build().embedded == 40
        first = searcher.search("a red circle", ks=[10, 3])
        assert first.levels[1].misses == 10
    fresh_levels = levels()  # a new process: new models, nothing in memory
    with Store(db) as store:
        searcher = CascadeSearcher(fresh_levels, Corpus.from_folder(gallery), cache=store, log=store)
        report = searcher.build()
        again = searcher.search("a red circle", ks=[10, 3])
    assert (report.embedded, report.reused) == (0, 40)
    assert again.image_macs == 0 and again.levels[1].hits == 10
    assert fresh_levels[0].images_encoded == 0 and fresh_levels[1].images_encoded == 0
    assert again.ids == first.ids


def test_ids_survive_moving_the_folder(tmp_path, gallery):
    before = Corpus.from_folder(gallery)
    with Store(tmp_path / "db.duckdb") as store:
        CascadeSearcher(levels()[:1], before, cache=store).build()
        moved = shutil.move(str(gallery), str(tmp_path / "elsewhere" / "renamed"))
        after = Corpus.from_folder(moved)
        report = CascadeSearcher(levels()[:1], after, cache=store).build()
    assert sorted(after.ids) == sorted(before.ids)
    assert after.fingerprint == before.fingerprint
    assert (report.reused, report.embedded) == (40, 0)


def test_log_rows_and_cumulative_view(tmp_path, gallery):
    corpus = Corpus.from_folder(gallery)
    with Store(tmp_path / "db.duckdb") as store:
        searcher = CascadeSearcher(levels(), corpus, cache=store, log=store)
        results = [searcher.search(q, ks=[10, 3]) for q in ["a", "b", "a", "c"]]
        key = searcher.config([10, 3]).key
        curve = store.cumulative_cost(key, corpus.fingerprint)
        lifetime = store.lifetime(key, corpus.fingerprint)
        per_level = store.frame("SELECT query_id, level, misses, image_macs FROM query_levels ORDER BY query_id, level")
    build = 40 * 10
    expected = np.cumsum([build] + [r.image_macs for r in results])
    assert curve["query_index"].tolist() == [0, 1, 2, 3, 4]
    assert curve["cumulative_image_macs"].tolist() == expected.tolist()
    assert lifetime == (4, expected[-1])
    assert len(per_level) == 8
    assert per_level[per_level.level == 2]["image_macs"].tolist() == [r.levels[1].image_macs for r in results]


def test_query_text_is_stored_verbatim(tmp_path, gallery):
    hostile = '\'); DROP TABLE queries; -- \x00\x07 "quoted" 🙂 \u202e' + "x" * 10_000
    with Store(tmp_path / "db.duckdb") as store:
        searcher = CascadeSearcher(levels(), Corpus.from_folder(gallery), cache=store, log=store)
        searcher.search(hostile, ks=[5, 2])
        stored = store.frame("SELECT query FROM queries")["query"].tolist()
    assert stored == [hostile]


def test_eight_threads_log_every_query_exactly_once(tmp_path, gallery):
    corpus = Corpus.from_folder(gallery)
    with Store(tmp_path / "db.duckdb") as store:
        searcher = CascadeSearcher(levels(), corpus, cache=store, log=store)
        searcher.build()

        def worker(thread: int) -> None:
            for i in range(12):
                searcher.search(f"thread {thread} query {i}", ks=[8, 4])

        errors = run_in_threads(worker, 8)
        queries = store.frame("SELECT query, count(*) AS n FROM queries GROUP BY query")
        level_rows = store.frame("SELECT count(*) AS n FROM query_levels")["n"][0]
        duplicates = store.frame("SELECT encoder_id, image_id, count(*) n FROM features GROUP BY ALL HAVING n > 1")
        level2_rows = count_features(store, "fake:large")
    assert not errors
    assert len(queries) == 96 and set(queries["n"]) == {1}
    assert level_rows == 192
    assert duplicates.empty
    assert level2_rows == searcher.levels[1].images_encoded


def test_other_schema_version_fails_clearly_and_leaves_the_file_alone(tmp_path):
    db = tmp_path / "db.duckdb"
    Store(db).close()
    con = duckdb.connect(str(db))
    con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    con.close()
    digest = hashlib.sha256(db.read_bytes()).hexdigest()
    with pytest.raises(StoreError, match=f"schema version 99, this program reads version {SCHEMA_VERSION}"):
        Store(db)
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest


def test_foreign_and_broken_files_are_refused(tmp_path):
    foreign = tmp_path / "foreign.duckdb"
    con = duckdb.connect(str(foreign))
    con.execute("CREATE TABLE t(x INTEGER)")
    con.close()
    with pytest.raises(StoreError, match="another program"):
        Store(foreign)
    junk = tmp_path / "junk.duckdb"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot open database"):
        Store(junk)


def test_a_second_process_gets_a_clear_error(tmp_path):
    db = tmp_path / "db.duckdb"
    code = (
        "import sys; from analysis.store import Store, StoreError\n"
        "try:\n    Store(sys.argv[1])\nexcept StoreError as err:\n    print(err); sys.exit(3)\n"
    )
    with Store(db):
        out = subprocess.run([sys.executable, "-c", code, str(db)], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 3, out.stderr
    assert "in use by another process" in out.stdout
    assert "Traceback" not in out.stderr


def test_clear_log_removes_only_that_configuration(tmp_path, gallery):
    corpus = Corpus.from_folder(gallery)
    with Store(tmp_path / "db.duckdb") as store:
        searcher = CascadeSearcher(levels(), corpus, cache=store, log=store)
        for q in ["a", "b"]:
            searcher.search(q, ks=[10, 3])
            searcher.search(q, ks=[6, 2])
        features_before = store.frame("SELECT count(*) n FROM features")["n"][0]
        assert store.clear_log(searcher.config([10, 3]).key, corpus.fingerprint) == 2
        remaining = store.frame("SELECT config_key FROM queries")["config_key"].tolist()
        orphans = store.frame(
            "SELECT count(*) n FROM query_levels WHERE query_id NOT IN (SELECT query_id FROM queries)"
        )
        assert store.frame("SELECT count(*) n FROM features")["n"][0] == features_before
    assert remaining == [searcher.config([6, 2]).key] * 2
    assert orphans["n"][0] == 0


def test_unchanged_files_are_not_rehashed(tmp_path, gallery, monkeypatch):
    import cascade.corpus as corpus_module

    with Store(tmp_path / "db.duckdb") as store:
        first = Corpus.from_folder(gallery, known=store)
        hashed = []
        monkeypatch.setattr(corpus_module, "content_id", lambda path: hashed.append(path) or "never-used")
        again = Corpus.from_folder(gallery, known=store)
        assert hashed == [] and again.ids == first.ids
        changed = sorted(gallery.iterdir())[0]
        changed.write_bytes(changed.read_bytes() + b"\0")  # new size: must be hashed again
        Corpus.from_folder(gallery, known=store)
    assert hashed == [changed]
