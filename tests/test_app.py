"""The app and its engine: the /search API against the engine, the log behind the charts, bad input, serving.

The engine runs on a temporary database, a 40-image world gallery and seeded fake
encoders (tests/fakes.py), so every number below is exact and the tests need no weights.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import gradio as gr
import httpx
import numpy as np
import pytest

import app
from analysis.engine import Choice, Engine, GallerySource, ReplayStopped, SharedObjects
from analysis.replay import ReplayResult, workload
from cascade.errors import ConfigError, CorpusError
from tests.app_engine import (
    LARGE_MACS,
    N_IMAGES,
    PRESET,
    ROOT,
    SMALL_MACS,
    free_port,
    make_engine,
)
from tests.fakes import make_gallery, make_karpathy
from ui.common import MAX_STAGES, Session, guarded
from ui.controls import choice_from
from ui.formatting import alpha_floor_note, skipped_note


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(tmp_path)
    yield engine
    engine.store.close()


@pytest.fixture
def served(engine):
    demo = app.launch(engine, port=free_port(), block=False)
    yield engine, demo
    demo.close()


# ---------------------------------------------------------------- the /search API


def test_search_api_returns_each_stage_as_the_engine_ranks_it(served, tmp_path):
    from gradio_client import Client

    engine, demo = served
    client = Client(demo.local_url, verbose=False, download_files=str(tmp_path / "downloads"))
    status, *rest = client.predict("two large striped red circles", api_name="/search")
    galleries, card, data = rest[: MAX_STAGES], rest[MAX_STAGES], rest[MAX_STAGES + 1]

    # The engine's own answer to the same query (a repeat: every image is cached by now).
    outcome = engine.search(engine.default_choice(), "two large striped red circles")
    assert [t.misses for t in outcome.result.levels] == [0, 0]
    assert [stage["misses"] for stage in data["stages"]] == [0, 20]  # the API's search came first: level 2 embedded k_1
    for stage, trace, gallery in zip(data["stages"], outcome.result.levels, galleries):
        assert [r["id"] for r in stage["results"]] == list(trace.ids)
        np.testing.assert_allclose([r["score"] for r in stage["results"]], trace.scores, rtol=1e-6)
        files = [Path(item["image"]).name for item in gallery["value"]]
        assert files == [outcome.corpus.paths[i].name for i in trace.ids]
        captions = [item["caption"] for item in gallery["value"]]
        assert captions[0].startswith(f"#1 · {trace.scores[0]:.4f}")
    assert all("embedded now" in item["caption"] for item in galleries[1]["value"])  # level 2 saw them first
    assert not any("embedded now" in item["caption"] for item in galleries[0]["value"])
    assert [g["visible"] for g in galleries] == [True, True, False, False, False]
    assert f"| 2 | fake:large | 20 | 20 | {20 * LARGE_MACS / 1e6:.2f} M |" in card
    assert "Error" not in status["value"]


def test_search_api_reports_an_empty_query_in_the_page(served, tmp_path):
    from gradio_client import Client

    _, demo = served
    client = Client(demo.local_url, verbose=False, download_files=str(tmp_path / "downloads"))
    status, *_ = client.predict("   ", api_name="/search")
    assert "the query is empty" in status["value"] and status["visible"] is True


def _logged(engine: Engine) -> int:
    view = engine.cost_view(engine.default_choice())
    return 0 if view is None else max(len(view.cumulative) - 1, 0)


def _wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.2)


def test_a_running_replay_never_blocks_a_search_and_stops_when_abandoned(served, tmp_path):
    from gradio_client import Client

    engine, demo = served
    client = Client(demo.local_url, verbose=False, download_files=str(tmp_path / "downloads"))
    replay = client.submit("uniform", 5000, 0, api_name="/replay")  # ~14 ms a query here: over a minute
    _wait_for(lambda: _logged(engine) >= 5, 60, "the replay to log its first queries")
    started = time.monotonic()
    status, *_ = client.predict("a green square", api_name="/search")
    assert time.monotonic() - started < 10 and "Error" not in status["value"]
    assert not replay.done()  # the search was answered while the replay ran
    replay.cancel()
    # Once the page stops listening the replay stops itself: the log stops growing, far short of 5,000.
    assert _logged_once_quiet(engine, timeout_s=30) < 2500


def _logged_once_quiet(engine: Engine, timeout_s: float) -> int:
    """The number of logged queries once it stops changing for two seconds."""
    deadline, before = time.monotonic() + timeout_s, _logged(engine)
    while time.monotonic() < deadline:
        time.sleep(2.0)
        now = _logged(engine)
        if now == before:
            return now
        before = now
    raise AssertionError(f"the log still grew after {timeout_s} s")


def test_only_gallery_images_are_served(served):
    engine, demo = served
    corpus = engine.corpus(GallerySource("world"))
    assert engine.allowed_paths() == [str(engine.world_root)]
    image = corpus.paths[corpus.ids[0]]
    with httpx.Client(base_url=demo.local_url.rstrip("/")) as http:
        assert http.get(f"/gradio_api/file={image}").status_code == 200
        # The database sits in the same temporary folder tree, yet is not served; nor is anything else.
        assert http.get(f"/gradio_api/file={engine.store.path}").status_code == 403
        assert http.get(f"/gradio_api/file={Path(app.__file__).resolve()}").status_code == 403
        assert http.get("/gradio_api/file=/etc/passwd").status_code == 403


# ---------------------------------------------------------------- the engine behind the page


def test_the_cost_view_is_the_log(engine):
    choice = engine.default_choice()
    assert engine.cost_view(choice) is None  # nothing built yet: the tab says so
    engine.search(choice, "a red circle")
    engine.search(choice, "a red circle")
    view = engine.cost_view(choice)
    build = N_IMAGES * SMALL_MACS
    assert view.cumulative["cumulative_image_macs"].tolist() == [build, build + 20 * LARGE_MACS] + [
        build + 20 * LARGE_MACS
    ]
    assert view.baselines["image_macs"].tolist() == [N_IMAGES * SMALL_MACS, N_IMAGES * LARGE_MACS]
    assert view.per_level.query("level == 2")["misses"].tolist() == [20, 0]  # a repeated query embeds nothing
    assert engine.measured_alpha(choice) == pytest.approx(20 / N_IMAGES)


def test_reset_clears_only_this_cascade(engine):
    choice, other = engine.default_choice(), Choice(GallerySource("world"), ("fake:small", "fake:large"), (10, 5))
    for current in (choice, choice, other):
        engine.search(current, "a blue square")
    assert engine.reset_log(choice) == 2
    assert engine.cost_view(choice).cumulative.empty
    assert len(engine.cost_view(other).cumulative) == 2  # build row + its one query
    assert engine.store.count_features("fake:large") == 20  # embeddings are never reset


def test_replay_logs_every_query_and_measures_alpha(engine):
    choice, seen = engine.default_choice(), []
    result = engine.replay(choice, "zipf", 30, seed=3, on_query=lambda done, r, c: seen.append(done))
    assert seen == list(range(1, 31))
    assert len(engine.cost_view(choice).cumulative) == 31
    # A fresh cache: what the replay handed to level 2 is exactly what the cache now holds for it.
    assert engine.measured_alpha(choice) == pytest.approx(result.alpha)
    assert result.cascade_image_macs == N_IMAGES * SMALL_MACS + round(result.alpha * N_IMAGES) * LARGE_MACS
    assert result.distinct_queries == len(set(workload(engine.corpus(choice.gallery), "zipf", 30, seed=3)))
    assert result.alpha <= result.distinct_queries * choice.ks[0] / N_IMAGES  # the floor the app explains


def test_the_replay_verdict_explains_a_high_alpha_by_distinct_queries_and_k1():
    def result(alpha: float, distinct: int) -> ReplayResult:
        return ReplayResult("zipf", 300, distinct, alpha, 10, 20, (10,), 1.0)

    assert alpha_floor_note(result(0.12, 200), k_1=15, n_images=100_000) == ""  # near the paper's 0.1
    note = alpha_floor_note(result(0.67, 548), k_1=15, n_images=5_000)
    assert "548 distinct queries x k_1 = 15 can hand up to 8,220 images to level 2, against 5,000" in note


def test_a_stopped_replay_keeps_what_it_logged(engine):
    stop = threading.Event()

    def stop_after_five(done, result, cumulative):
        if done == 5:
            stop.set()

    with pytest.raises(ReplayStopped, match="after 5 of 50"):
        engine.replay(engine.default_choice(), "uniform", 50, seed=0, on_query=stop_after_five, stop=stop)
    assert len(engine.cost_view(engine.default_choice()).cumulative) == 6


def test_sessions_share_one_build(engine):
    choice = engine.default_choice()
    searchers = []
    threads = [threading.Thread(target=lambda: searchers.append(engine.searcher(choice))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(searchers) == 4 and len({id(s) for s in searchers}) == 1
    assert searchers[0].levels[0].images_encoded == N_IMAGES  # embedded once for all four sessions


def test_shared_objects_evict_the_least_recently_used():
    shared = SharedObjects(capacity=2)
    made = []
    for key in ("a", "b", "a", "c", "b"):
        shared.get(key, lambda key=key: made.append(key) or key.upper())
    assert made == ["a", "b", "c", "b"]  # "b" was evicted by "c" ("a" had been used more recently)
    assert shared.peek("a") is None and shared.peek("c") == "C"


def test_evaluate_stores_recall_and_cost(engine):
    results = engine.evaluate(engine.comparisons(), GallerySource("world"), limit=20)
    frame = engine.evaluations(GallerySource("world"))
    assert frame["config_key"].tolist() == ["fake:small|10", "fake:small>fake:large|20,10"]
    assert frame["n_queries"].tolist() == [20, 20] and frame["dataset"].unique().tolist() == ["test:test"]
    assert results[0].image_macs == N_IMAGES * SMALL_MACS
    assert frame["r10"].tolist() == [r.r10 for r in results]
    assert engine.cost_view(engine.comparisons()[1]).cumulative.empty  # evaluations never fill the cost charts


def test_evaluate_on_a_karpathy_dataset_in_a_shared_folder(tmp_path):
    json_path, image_root = make_karpathy(tmp_path / "shared", n_images=25)
    engine = make_engine(tmp_path / "engine", folders=(tmp_path / "shared",))
    try:
        dataset = GallerySource("karpathy", path=str(json_path), image_root=str(image_root))
        (result,) = engine.evaluate([engine.comparisons()[1]], dataset, limit=None)
        assert (result.n_images, result.n_queries) == (25, 50)  # two captions per image, all of them queries
        assert engine.evaluations(dataset)["dataset"].tolist() == ["dataset_test.json:test"]
        assert engine.evaluations(GallerySource("world")).empty
    finally:
        engine.store.close()


def test_whatif_follows_the_cost_model(engine):
    model = engine.cost_model.whatif(
        "CLIP, ViT", ["B/16", "L/14", "g/14"], "paper", 1_000_000, 0.1, 1_000_000, (50, 14)
    )
    assert model.lifetime_reduction == pytest.approx(180 / (10 + 0.1 * (50 + 180)))
    assert model.early_latency_reduction == pytest.approx(50 * 180 / (50 * 50 + 14 * 180))
    assert model.early_query_image_gmacs == pytest.approx(50 * 50 + 14 * 180)
    cascade = model.curves.query("series == 'cascade'")
    # After the first query: the build (C_1 x N) plus that query's misses (k_1 x C_2 + k_2 x C_3).
    assert cascade["queries"].iloc[0] == 1
    assert cascade["image_macs"].iloc[0] == pytest.approx((10 * 1_000_000 + 50 * 50 + 14 * 180) * 1e9)
    # alpha = 0.1 bounds the cascade at 33 GMACs per image: below L/14's 50, so only B/16 is ever matched.
    assert model.break_even == {"B/16 alone": 0, "L/14 alone": None, "g/14 alone": None}
    costly = engine.cost_model.whatif("CLIP, ViT", ["B/16", "L/14", "g/14"], "paper", 1000, 0.5, 10_000, (50, 14))
    q = costly.break_even["L/14 alone"]  # alpha = 0.5: up to 125 GMACs per image, so L/14's 50 is reached
    curve = costly.curves.query("series == 'cascade'").set_index("queries")["image_macs"]
    assert 0 < q < 10_000
    assert curve[curve.index < q].max() < 50 * 1000 * 1e9 <= curve[curve.index >= q].min()
    doubled = engine.cost_model.whatif("CLIP, ViT", ["g/14", "B/16"], "full", 1000, 0.1, 100, (50,))
    assert doubled.image_gmacs["g/14"] == 360.0 and doubled.early_latency_reduction is None
    with pytest.raises(ConfigError, match="at least two"):
        engine.cost_model.whatif("CLIP, ViT", ["B/16"], "paper", 1000, 0.1, 100, (50,))


# ---------------------------------------------------------------- bad input is a message


def _controls(**changes) -> list:
    """The Search tab's control values (gallery, folder, uploads, n_levels, 4 names, 4 ks, re-ranker)."""
    values = {"gallery": "built-in world", "folder": "", "uploads": None, "n_levels": 2,
              "names": ["fake:small", "fake:large", "fake:small", "fake:small"], "ks": [20, 5, 10, 10],
              "rerank": False, "rerank_name": "fake:cross", "rerank_k": 3}  # fmt: skip
    values.update(changes)
    return [values["gallery"], values["folder"], values["uploads"], values["n_levels"], *values["names"],
            *values["ks"], values["rerank"], values["rerank_name"], values["rerank_k"]]  # fmt: skip


def test_controls_make_the_sessions_choice():
    choice = choice_from(*_controls(rerank=True))
    assert choice == Choice(GallerySource("world"), ("fake:small", "fake:large", "fake:cross"), (20, 5, 3))
    with pytest.raises(ConfigError, match="must not grow"):
        choice_from(*_controls(ks=[5, 20, 10, 10])).config()
    with pytest.raises(ConfigError, match="stage 2 has no k"):
        choice_from(*_controls(ks=[5, None, 10, 10]))


def test_a_session_with_an_invalid_edit_refuses_to_run_the_old_cascade(engine):
    session = Session(engine.default_choice(), problem="k must not grow from level to level")
    with pytest.raises(ConfigError, match="fix the cascade first: k must not grow"):
        session.valid()
    assert Session(engine.default_choice()).valid() == engine.default_choice()


def test_impossible_k_and_bad_galleries_are_one_line_errors(engine, tmp_path):
    engine.searcher(engine.default_choice())  # loads the gallery: validation now knows N
    with pytest.raises(ConfigError, match=f"k_1 = 100 is larger than the collection \\({N_IMAGES} images\\)"):
        engine.validate(choice_from(*_controls(ks=[100, 5, 1, 1])))
    outside = Choice(GallerySource("folder", path=str(tmp_path)), PRESET.levels, (5, 2))
    with pytest.raises(ConfigError, match="outside the folders this server shares: none"):
        engine.searcher(outside)
    bad_upload = tmp_path / "notes.png"
    bad_upload.write_text("not an image")
    with pytest.raises(CorpusError, match="none of the 1 uploaded file"):
        engine.searcher(Choice(GallerySource("upload", uploads=(str(bad_upload),)), PRESET.levels, (5, 2)))
    with pytest.raises(ConfigError, match="the query is empty"):
        engine.search(engine.default_choice(), " ")


def test_a_shared_folder_and_uploads_are_searchable(tmp_path):
    shared = tmp_path / "shared"
    make_gallery(shared / "photos", 12)
    engine = make_engine(tmp_path / "engine", folders=(shared,))
    try:
        assert engine.allowed_paths()[1:] == [str(shared.resolve())]
        with pytest.raises(CorpusError, match="not found"):
            engine.searcher(Choice(GallerySource("folder", path=str(shared / "missing")), PRESET.levels, (5, 2)))
        folder = Choice(GallerySource("folder", path=str(shared / "photos")), PRESET.levels, (5, 2))
        assert len(engine.search(folder, "anything").result.levels[-1].ids) == 2
        uploads = tuple(str(p) for p in sorted((shared / "photos").iterdir())[:6])
        upload = Choice(GallerySource("upload", uploads=uploads), PRESET.levels, (6, 3))
        assert len(engine.search(upload, "anything").corpus) == 6
        assert skipped_note(engine.search(upload, "anything").corpus) == ""
        notes = tmp_path / "notes.png"
        notes.write_text("not an image")
        mixed = Choice(GallerySource("upload", uploads=(*uploads, str(notes))), PRESET.levels, (6, 3))
        outcome = engine.search(mixed, "anything")
        assert len(outcome.corpus) == 6  # the bad file costs nothing but a line in the page
        assert skipped_note(outcome.corpus) == " · 1 file(s) skipped, not readable images: notes.png"
    finally:
        engine.store.close()


def test_guarded_handlers_turn_errors_into_a_visible_line(monkeypatch):
    warnings = []
    monkeypatch.setattr(app.gr, "Warning", warnings.append)
    status = gr.Markdown()

    @guarded(status)
    def handler(x):
        raise ConfigError(f"k must not grow, got {x}")

    update = handler([1, 2])[status]
    assert update.visible is True and update.value == "**Error:** k must not grow, got [1, 2]"
    assert warnings == ["k must not grow, got [1, 2]"]


# ---------------------------------------------------------------- starting the app


def test_importing_the_app_does_no_work(tmp_path):
    code = "import sys, app; print(sorted(m for m in ('open_clip', 'transformers') if m in sys.modules))"
    env = {**os.environ, "CASCADE_CACHE_DIR": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / "cache").exists()  # no database, no gallery, no weights touched
    assert out.stdout.strip() == "[]"  # no model library either


def test_command_line_binds_loopback_unless_on_a_space(monkeypatch):
    monkeypatch.delenv("SPACE_ID", raising=False)
    args = app._parser().parse_args([])
    assert (args.host, args.share, args.folder) == ("127.0.0.1", False, [])
    monkeypatch.setenv("SPACE_ID", "someone/cascade")
    assert app._parser().parse_args([]).host == "0.0.0.0"


def test_main_refuses_a_missing_folder_before_opening_anything(tmp_path, capsys):
    assert app.main(["--db", str(tmp_path / "db.duckdb"), "--folder", str(tmp_path / "nope")]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert not (tmp_path / "db.duckdb").exists()
