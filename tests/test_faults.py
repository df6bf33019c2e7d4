"""Load and faults: concurrent users through gradio_client, kill -9 during a replay, a database held by another process.

(``kill -9`` during ``index`` and a database locked against the command line are in test_cli.py.)
Everything runs on loopback with the seeded fake encoders, so every count below is exact.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import app
from analysis.replay import workload
from analysis.store import Store, StoreError
from bench.load import hammer
from cascade.corpus import Corpus
from cascade.search import CascadeSearcher
from tests.app_engine import fake_encoders, free_port, make_engine
from tests.conftest import ROOT
from tests.fakes import count_features, make_gallery, small_and_large

CLIENTS = 16


def check_feature_rows(store: Store, corpus, encoders: dict) -> dict[str, int]:
    """Every cached row is unique, whole, and equal to what its encoder computes now; returns rows per encoder."""
    rows = store.frame("SELECT encoder_id, image_id, shape, data FROM features")
    assert not rows.duplicated(["encoder_id", "image_id"]).any()
    by_id = {encoder.id: encoder for encoder in encoders.values()}
    for encoder_id, group in rows.groupby("encoder_id"):
        encoder = by_id[encoder_id]
        stored = np.stack(
            [np.frombuffer(data, np.float32).reshape(shape) for shape, data in zip(group["shape"], group["data"])]
        )
        fresh = encoder.encode_images([corpus.load(image_id) for image_id in group.image_id])
        np.testing.assert_allclose(stored, fresh, atol=1e-6)
    return rows["encoder_id"].value_counts().to_dict()


def check_log_is_whole(store: Store, n_levels: int) -> None:
    """Every logged query has exactly one row per level, and no level row lacks its query."""
    per_query = store.frame(
        "SELECT q.query_id, count(l.level) AS levels, min(l.level) AS first, max(l.level) AS last "
        "FROM queries q LEFT JOIN query_levels l USING (query_id) GROUP BY q.query_id"
    )
    assert (per_query["levels"] == n_levels).all() and (per_query["first"] == 1).all()
    assert (per_query["last"] == n_levels).all()
    orphans = store.frame("SELECT count(*) AS n FROM query_levels WHERE query_id NOT IN (SELECT query_id FROM queries)")
    assert orphans["n"][0] == 0


# ---------------------------------------------------------------- load


@pytest.mark.slow
def test_sixteen_concurrent_clients_every_query_logged_once_cache_clean(tmp_path):
    engine = make_engine(tmp_path, n_images=200)
    encoders = fake_encoders()  # same seeds as the engine's: they recompute its features exactly
    demo = app.launch(engine, port=free_port(), block=False)
    try:
        corpus = engine.corpus(engine.default_choice().gallery)
        queries = [f"{text} #{i}" for i, text in enumerate(workload(corpus, "uniform", 5000, seed=3))]
        seen = hammer(demo.local_url, queries, CLIENTS, duration_s=6.0)  # hundreds of overlapping queries
        answered, errors = seen.answered, seen.errors
    finally:
        demo.close()
    try:
        assert not errors, errors[:3]
        assert len(answered) >= CLIENTS  # every client got through at least once
        logged = engine.store.frame("SELECT query FROM queries")["query"]
        assert sorted(logged) == sorted(answered)  # each answered query exactly once, nothing else
        check_log_is_whole(engine.store, n_levels=2)

        counts = check_feature_rows(engine.store, corpus, encoders)
        small, large = encoders["fake:small"].id, encoders["fake:large"].id
        assert counts[small] == len(corpus)
        # Concurrent queries never paid twice for one image: the misses they logged are the rows cached.
        misses = engine.store.frame("SELECT sum(misses) AS n FROM query_levels WHERE level = 2")["n"][0]
        assert misses == counts[large] > 0
    finally:
        engine.store.close()


# ---------------------------------------------------------------- kill -9 during a replay

REPLAY_CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    from tests.app_engine import make_engine

    engine = make_engine(Path(sys.argv[1]), n_images=60)

    def on_query(done, result, cumulative):
        print(done, flush=True)  # printed after the engine logged the query

    engine.replay(engine.default_choice(), "uniform", 5000, 0, on_query=on_query)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [5, 60])
def test_kill_9_during_a_replay_keeps_every_completed_query(tmp_path, kill_after):
    child = subprocess.Popen(
        [sys.executable, "-c", REPLAY_CHILD, str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    completed = 0
    try:
        for line in child.stdout:
            completed = int(line)
            if completed >= kill_after:
                child.send_signal(signal.SIGKILL)
                break
    finally:
        child.kill()
        child.wait(timeout=60)
    assert completed >= kill_after, "the replay ended before it could be killed"

    with Store(tmp_path / "cascade.duckdb", read_only=True) as store:  # opens cleanly, as `cascade log` would
        logged = store.frame("SELECT query FROM queries ORDER BY query_id")["query"].tolist()
    engine = make_engine(tmp_path, n_images=60)  # and for writing: the app restarts on it
    try:
        # Every completed query is there, in order; at most the one in flight when killed besides.
        assert completed <= len(logged) <= completed + 1
        corpus = engine.corpus(engine.default_choice().gallery)
        assert logged == workload(corpus, "uniform", 5000, 0)[: len(logged)]
        check_log_is_whole(engine.store, n_levels=2)
        check_feature_rows(engine.store, corpus, fake_encoders())
        engine.search(engine.default_choice(), "after the crash")
        assert engine.store.frame("SELECT count(*) AS n FROM queries")["n"][0] == len(logged) + 1
    finally:
        engine.store.close()


# ---------------------------------------------------------------- a database held by another process

HOLDER_CHILD = textwrap.dedent(
    """
    import sys, time
    from analysis.store import Store

    store = Store(sys.argv[1])
    print("holding", flush=True)
    time.sleep(120)
    """
)


@pytest.fixture
def held_db(tmp_path):
    """A database with one logged query, then held open for writing by another process: ``(path, holder)``."""
    db = tmp_path / "held.duckdb"
    corpus = Corpus.from_folder(make_gallery(tmp_path / "gallery", 20)[0].parent)
    with Store(db) as store:
        levels = small_and_large(large_seed=2)
        CascadeSearcher(levels, corpus, cache=store, log=store).search("logged before the holder came", (5, 2))
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER_CHILD, str(db)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "holding"
    yield db, holder
    holder.kill()
    holder.wait(timeout=60)


@pytest.mark.slow
def test_a_database_held_by_another_process_is_a_clear_error_for_the_app(held_db, capsys, monkeypatch):
    db, _ = held_db
    launched = []
    monkeypatch.setattr(app, "launch", lambda *args, **kwargs: launched.append(args))  # never serve in a test
    assert app.main(["--db", str(db), "--port", str(free_port())]) == 1
    assert not launched  # refused before serving anything
    err = capsys.readouterr().err
    assert f"error: database {db} is in use by another process" in err and "Traceback" not in err
    with pytest.raises(StoreError, match="in use by another process"):
        Store(db, read_only=True)  # DuckDB has no reader beside another process's writer: a clear no


@pytest.mark.slow
def test_the_held_database_is_whole_once_its_holder_is_killed(held_db):
    db, holder = held_db
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=60)
    with Store(db) as store:
        assert store.frame("SELECT query FROM queries")["query"].tolist() == ["logged before the holder came"]
        check_log_is_whole(store, n_levels=2)
        assert count_features(store, "fake:small") == 20


def test_hammer_counts_a_missing_server_as_errors_without_hanging():
    """The load harness itself: clients that cannot connect are errors, and the others do not wait forever."""
    seen = hammer(f"http://127.0.0.1:{free_port()}/", ["q"] * 4, clients=3, duration_s=5)
    assert (seen.latencies, seen.answered) == ([], [])
    assert len(seen.errors) == 3 and all(query == "<connect>" for query, _ in seen.errors)


def test_hammer_skips_certificates_only_on_plain_http():
    with pytest.raises(ValueError, match="only for plain http"):
        hammer("https://127.0.0.1:1/", ["q"], clients=1, duration_s=1)
