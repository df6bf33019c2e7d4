"""The app and its engine: the /search API against a ranking by hand, the log behind the charts, bad input, serving.

The engine runs on a temporary database, a 40-image world gallery and seeded fake
encoders (tests/fakes.py), so every number below is exact and the tests need no weights.
Expected rankings are recomputed with numpy from the fakes (tests/app_engine.py), never
read back from the engine under test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import gradio as gr
import numpy as np
import pytest

import app
from analysis.engine import Choice, GalleryKind, GallerySource, ReplayStopped
from analysis.replay import workload
from analysis.shared import SharedObjects
from cascade import datasets
from cascade.errors import ConfigError, CorpusError, WeightsUnavailable
from cascade_ui.common import MAX_STAGES, Session, guarded
from cascade_ui.controls import CascadeValues, choice_of, validated
from cascade_ui.evaluate_tab import dataset_source
from cascade_ui.formatting import describe_choice, skipped_note
from tests.app_engine import LARGE_MACS, N_IMAGES, PRESET, ROOT, SMALL_MACS, expected_levels, make_engine
from tests.fakes import count_features, make_gallery, make_karpathy

WAIT_S = 60  # every wait below is bounded so a hang fails the test; none of them asserts a speed


# ---------------------------------------------------------------- the /search API


def test_search_api_returns_each_stage_as_ranked_by_hand(client, engine):
    query = "two large striped red circles"
    status, *rest = client.predict(query, api_name="/search")
    galleries, card, data = rest[:MAX_STAGES], rest[MAX_STAGES], rest[MAX_STAGES + 1]

    corpus = engine.corpus(GallerySource("world"))
    expected = expected_levels(query, corpus, [("fake:small", 20), ("fake:large", 5)])
    assert [stage["misses"] for stage in data["stages"]] == [0, 20]  # the build embedded level 1; level 2 its k_1
    assert [stage["candidates"] for stage in data["stages"]] == [N_IMAGES, 20]
    assert [stage["image_macs"] for stage in data["stages"]] == [0, 20 * LARGE_MACS]
    for stage, (ids, scores), gallery in zip(data["stages"], expected, galleries):
        assert [r["id"] for r in stage["results"]] == ids
        np.testing.assert_allclose([r["score"] for r in stage["results"]], scores, rtol=1e-5)
        assert [Path(item["image"]).name for item in gallery["value"]] == [corpus.paths[i].name for i in ids]
        assert gallery["value"][0]["caption"].startswith(f"#1 · {scores[0]:.4f}")
    assert all(item["caption"].endswith(" · embedded now") for item in galleries[1]["value"])  # level 2's first look
    assert not any("embedded now" in item["caption"] for item in galleries[0]["value"])
    assert [g["visible"] for g in galleries] == [True, True, False, False, False]
    assert "| 2 | fake:large | 20 | 20 | 1.00 M |" in card  # 20 misses x 50,000 MACs
    assert "Error" not in status["value"]


def test_result_images_are_served_in_place_and_nothing_beside_the_gallery(served, tmp_path):
    """A result image is the gallery's own file, served with its exact bytes (no copy into Gradio's cache)."""
    import httpx
    from gradio_client import Client

    engine, demo = served
    corpus = engine.corpus(GallerySource("world"))
    _, *rest = Client(demo.local_url, verbose=False, download_files=False).predict("a blue star", api_name="/search")
    galleries, data = rest[:MAX_STAGES], rest[MAX_STAGES + 1]
    for stage, gallery in zip(data["stages"], galleries):
        files = [item["image"] for item in gallery["value"]]
        assert [f["path"] for f in files] == [str(corpus.paths[r["id"]]) for r in stage["results"]]
        with httpx.Client() as http:
            for file, result in zip(files, stage["results"]):
                response = http.get(file["url"])
                assert response.status_code == 200 and response.content == corpus.paths[result["id"]].read_bytes()
    beside = engine.world_root.parent / "beside.png"  # next to the gallery folder, not in it
    beside.write_bytes(corpus.paths[corpus.ids[0]].read_bytes())
    with httpx.Client(base_url=demo.local_url.rstrip("/")) as http:
        assert http.get(f"/gradio_api/file={beside}").status_code == 403
        assert http.get(f"/gradio_api/file={engine.world_root}/../beside.png").status_code == 403


def test_stage_galleries_are_drawn_as_gradio_galleries(served):
    from cascade_ui.stage_gallery import StageGallery

    _, demo = served
    wanted = [f"stage-{i}" for i in range(1, MAX_STAGES + 1)]
    stages = [c for c in demo.config["components"] if c.get("props", {}).get("elem_id") in wanted]
    assert [c["props"]["elem_id"] for c in stages] == wanted
    assert {c["type"] for c in stages} == {"gallery"}  # the page's own Gallery component, not a custom one
    assert StageGallery(render=False).api_info() == gr.Gallery(render=False).api_info()


def test_search_api_reports_an_empty_query_in_the_page(client):
    status, *_ = client.predict("   ", api_name="/search")
    assert status["visible"] is True and status["value"].startswith("**Error:** the query is empty")


def _logged(engine, choice=None) -> int:
    """Queries in the cost view of ``choice`` (the default cascade): its rows but the build's."""
    view = engine.cost_view(choice or engine.default_choice())
    return 0 if view is None else max(len(view.cumulative) - 1, 0)


def test_a_running_replay_never_blocks_a_search_and_stops_when_abandoned(client, engine, monkeypatch):
    running, ended, endings = threading.Event(), threading.Event(), []
    real_replay = engine.replay

    def watched_replay(choice, kind, n, seed, on_query, stop, progress):
        def counted(done, result, cumulative):
            on_query(done, result, cumulative)
            if done == 5:
                running.set()

        try:
            endings.append(real_replay(choice, kind, n, seed, counted, stop, progress))
        except Exception as err:
            endings.append(err)
            raise
        finally:
            ended.set()

    monkeypatch.setattr(engine, "replay", watched_replay)
    replay = client.submit("uniform", 5000, 0, api_name="/replay")  # minutes of queries: it cannot finish here
    assert running.wait(WAIT_S), "the replay never logged its first five queries"
    status, *_ = client.predict("a green square", api_name="/search")
    assert "Error" not in status["value"]
    assert not replay.done()  # the search was answered while the replay still ran
    replay.cancel()
    # Once the page stops listening the replay stops itself, keeping what it logged (5,000 minus
    # one search, had it run on).
    assert ended.wait(WAIT_S), "the abandoned replay never stopped"
    (ending,) = endings
    assert isinstance(ending, ReplayStopped)
    assert str(ending) == f"replay stopped after {_logged(engine) - 1} of 5000 queries"  # the log also holds the search


# ---------------------------------------------------------------- the engine behind the page


def test_the_cost_view_is_the_log(engine):
    choice = engine.default_choice()
    assert engine.cost_view(choice) is None  # nothing built yet: the tab says so
    engine.search(choice, "a red circle")
    engine.search(choice, "a red circle")
    view = engine.cost_view(choice)
    build, first = N_IMAGES * SMALL_MACS, 20 * LARGE_MACS  # level 1 embeds the gallery; query 1 hands level 2 k_1
    assert view.cumulative["cumulative_image_macs"].tolist() == [build, build + first, build + first]
    assert view.baselines["image_macs"].tolist() == [N_IMAGES * SMALL_MACS, N_IMAGES * LARGE_MACS]
    assert view.per_level.query("level == 2")["misses"].tolist() == [20, 0]  # a repeated query embeds nothing
    assert engine.measured_alpha(choice) == pytest.approx(20 / N_IMAGES)


def test_reset_clears_only_this_cascade(engine):
    choice, other = engine.default_choice(), Choice(GallerySource("world"), ("fake:small", "fake:large"), (10, 5))
    for current in (choice, choice, other):
        engine.search(current, "a blue square")
    assert engine.reset_log(choice) == 2
    assert _logged(engine, choice) == 0
    assert len(engine.cost_view(other).cumulative) == 2  # build row + its one query
    # Embeddings are never reset: the first cascade's 20, which include the other's 10 (the same level 1 ranking).
    assert count_features(engine.store, "fake:large") == 20


def test_replay_logs_every_query_and_measures_alpha(engine):
    choice, seen = engine.default_choice(), []
    result = engine.replay(choice, "zipf", 30, seed=3, on_query=lambda done, r, c: seen.append(done))
    assert seen == list(range(1, 31))
    assert len(engine.cost_view(choice).cumulative) == 31
    # By hand: level 2 embeds each image the first time any query's level 1 top k_1 = 20 holds it.
    corpus = engine.corpus(choice.gallery)
    texts = set(workload(corpus, "zipf", 30, seed=3))
    handed = set().union(*(expected_levels(text, corpus, [("fake:small", 20)])[0][0] for text in texts))
    assert result.distinct_queries == len(texts)
    assert result.alpha == pytest.approx(len(handed) / N_IMAGES)
    assert result.cascade_image_macs == N_IMAGES * SMALL_MACS + len(handed) * LARGE_MACS
    assert count_features(engine.store, "fake:large") == len(handed)  # a fresh cache: the replay filled it
    assert engine.measured_alpha(choice) == pytest.approx(len(handed) / N_IMAGES)


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
    assert frame["n_queries"].tolist() == [20, 20] and frame["dataset"].unique().tolist() == ["world:test"]
    assert results[0].image_macs == N_IMAGES * SMALL_MACS
    # Recall@10 by hand: the share of the first 20 captions whose own image the ranking by hand keeps in its top 10.
    corpus = engine.corpus(GallerySource("world"))
    queries = [(text, image_id) for image_id in corpus.ids for text in corpus.captions[image_id]][:20]
    for row, levels in zip(frame.itertuples(), [[("fake:small", 10)], [("fake:small", 20), ("fake:large", 10)]]):
        hits = sum(image_id in expected_levels(text, corpus, levels)[-1][0] for text, image_id in queries)
        assert row.r10 == pytest.approx(100 * hits / 20)
    assert _logged(engine, engine.comparisons()[1]) == 0  # evaluations never fill the cost charts


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

    # alpha = 0.5: up to 125 GMACs per image, so L/14's 50 is reached. By hand, the miss model: of the pool
    # P = alpha N = 500 images, level i has embedded P (1 - (1 - k / P)^q) after q queries.
    def cascade_gmacs(q: int) -> float:
        return 10 * 1000 + 50 * 500 * (1 - (1 - 50 / 500) ** q) + 180 * 500 * (1 - (1 - 14 / 500) ** q)

    first = next(q for q in range(1, 10_000) if cascade_gmacs(q) >= 50 * 1000)
    assert costly.break_even["L/14 alone"] == first  # 11 queries
    doubled = engine.cost_model.whatif("CLIP, ViT", ["g/14", "B/16"], "full", 1000, 0.1, 100, (50,))
    assert doubled.image_gmacs["g/14"] == 360.0 and doubled.early_latency_reduction is None
    with pytest.raises(ConfigError, match="at least two"):
        engine.cost_model.whatif("CLIP, ViT", ["B/16"], "paper", 1000, 0.1, 100, (50,))


# ---------------------------------------------------------------- bad input is a message


def _controls(**changes) -> CascadeValues:
    """The Search tab's control values: the preset's two levels on the built-in world, four level rows."""
    values = {
        "gallery": "built-in world",
        "folder": "",
        "uploads": None,
        "n_levels": 2,
        "names": ("fake:small", "fake:large", "fake:small", "fake:small"),
        "ks": (20, 5, 10, 10),
        "rerank": False,
        "rerank_name": "fake:cross",
        "rerank_k": 3,
        "index": "exact",
    }
    return CascadeValues(**{**values, **changes})


def test_level_one_on_a_faiss_index_is_a_choice_of_the_page(engine):
    exact = engine.search(choice_of(_controls()), "a red circle")
    hnsw_choice = choice_of(_controls(index="faiss:HNSW32"))
    assert hnsw_choice.index == "faiss:HNSW32" and hnsw_choice.key != choice_of(_controls()).key
    hnsw = engine.search(hnsw_choice, "a red circle")
    # 40 images: HNSW's search breadth covers the gallery, so its top 20 is exact's; later levels re-score exactly.
    assert [level.ids for level in hnsw.result.levels] == [level.ids for level in exact.result.levels]
    assert engine.store.path.with_name(engine.store.path.name + ".indexes").is_dir()  # saved beside the database
    with pytest.raises(ConfigError, match="faiss"):
        choice_of(_controls(index="faiss:")).config()


def test_controls_make_the_sessions_choice():
    choice = choice_of(_controls(rerank=True))
    assert choice == Choice(GallerySource("world"), ("fake:small", "fake:large", "fake:cross"), (20, 5, 3))
    with pytest.raises(ConfigError, match="must not grow"):
        choice_of(_controls(ks=[5, 20, 10, 10])).config()
    with pytest.raises(ConfigError, match="stage 2 has no k"):
        choice_of(_controls(ks=[5, None, 10, 10]))


def test_each_gallery_label_opens_its_own_source():
    folder = choice_of(_controls(gallery="server folder", folder=" /srv/photos ", uploads=["/up/a.png"]))
    assert folder.gallery == GallerySource(GalleryKind.FOLDER, path="/srv/photos")  # the uploads box is not read
    upload = choice_of(_controls(gallery="uploaded images", folder="/srv/photos", uploads=["/up/a.png"]))
    assert upload.gallery == GallerySource(GalleryKind.UPLOAD, uploads=("/up/a.png",))
    coco = choice_of(_controls(gallery="COCO (hub)", folder="/srv/photos"))
    assert coco.gallery == GallerySource(GalleryKind.DATASET, path="coco")
    karpathy = dataset_source("Karpathy dataset on the server", " /d/k.json", "/d/images ")
    assert karpathy == GallerySource(GalleryKind.KARPATHY, path="/d/k.json", image_root="/d/images")
    assert dataset_source("built-in test gallery", "/d/k.json", "/d/images") == GallerySource(GalleryKind.WORLD)


def test_a_per_query_chart_of_zeros_says_why_instead_of_an_empty_axis():
    import pandas as pd

    from analysis.plots import NOTHING_HANDED_ON, per_query_figure

    level_2 = {"query_index": [1, 2], "level": [2, 2], "encoder_id": ["fake:large"] * 2, "misses": [0, 0]}
    zeros = pd.DataFrame({**level_2, "image_macs": [0, 0]})  # a repeated query: nothing handed on is new
    note = per_query_figure(zeros)
    assert note.data == () and [a.text for a in note.layout.annotations] == [NOTHING_HANDED_ON]
    bars = per_query_figure(zeros.assign(image_macs=[0, 20 * LARGE_MACS]))
    assert [list(trace.y) for trace in bars.data] == [[0, 20 * LARGE_MACS]]


def test_a_session_with_an_invalid_edit_refuses_to_run_the_old_cascade(engine):
    session = Session(engine.default_choice(), problem="k must not grow from level to level")
    with pytest.raises(ConfigError, match="fix the cascade first: k must not grow"):
        session.valid()
    assert Session(engine.default_choice()).valid() == engine.default_choice()


def test_an_edit_is_validated_as_it_is_made(engine):
    state = Session(engine.default_choice())
    new, line = validated(state, _controls(ks=[10, 4, 10, 10]))
    assert new == Session(Choice(GallerySource("world"), ("fake:small", "fake:large"), (10, 4)))
    assert line == "Cascade: fake:small (k=10) > fake:large (k=4) on the built-in world"
    kept, line = validated(new, _controls(ks=[10, 50, 10, 10]))
    problem = "k must not grow from level to level (k_1 >= k_2 >= ...), got [10, 50]"
    assert kept == Session(new.choice, problem=problem)  # the last valid cascade stays, marked
    assert line == f"**Not valid:** {problem}"


def test_ks_larger_than_a_small_gallery_are_cut_to_its_size(engine):
    big = choice_of(_controls(ks=[100, 50, 1, 1]))
    big.config()  # no error as you type: the gallery's size decides at search time
    outcome = engine.search(big, "a red circle")
    assert outcome.ks_asked == (100, 50) and outcome.result.config.ks == (N_IMAGES, N_IMAGES)
    assert [len(level.ids) for level in outcome.result.levels] == [N_IMAGES, N_IMAGES]
    view = engine.cost_view(big)  # the log of the search as it ran, found under the session's own choice
    assert view is not None and view.cumulative["query_index"].tolist() == [0, 1]
    assert engine.search(engine.default_choice(), "a red circle").ks_asked == ()  # nothing cut: nothing said


def test_impossible_k_and_bad_galleries_are_one_line_errors(engine, tmp_path):
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
        hub = [str(datasets.folder(name) / "images") for name in ("coco", "flickr30k")]  # served once materialised
        assert engine.allowed_paths() == [str(engine.world_root), *hub, str(shared.resolve())]
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
        removed = Choice(
            GallerySource("upload", uploads=(*uploads[:2], str(tmp_path / "gone.png"))), PRESET.levels, (2, 1)
        )
        with pytest.raises(CorpusError, match="1 of the 3 uploaded file.s. are no longer on the server: upload again"):
            engine.search(removed, "anything")  # the page's delete_cache removed it: one line, not a stat error
    finally:
        engine.store.close()


def test_guarded_handlers_turn_errors_into_a_visible_line(monkeypatch):
    warnings = []
    monkeypatch.setattr(gr, "Warning", warnings.append)
    status = gr.Markdown()

    @guarded(status)
    def handler(x):
        raise ConfigError(f"k must not grow, got {x}")

    update = handler([1, 2])[status]
    assert update.visible is True and update.value == "**Error:** k must not grow, got [1, 2]"
    assert warnings == ["k must not grow, got [1, 2]"]


# ---------------------------------------------------------------- starting the app


@pytest.fixture(scope="module")
def fresh_import(tmp_path_factory) -> dict:
    """``import app`` and every ui module in a fresh process: what it printed, and what it left on disk.

    ``modules``: the model libraries loaded by then; ``cache``: whether the cache folder was made;
    ``stub_before``/``stub_after``: ``cascade_ui/stage_gallery.pyi``, which gradio rewrites on import.
    """
    cache, stub = tmp_path_factory.mktemp("import") / "cache", ROOT / "cascade_ui" / "stage_gallery.pyi"
    before = stub.read_bytes()
    code = (
        "import sys, app; print(sorted(m for m in ('gradio', 'huggingface_hub') if m in sys.modules)); "
        "import cascade_ui.common, cascade_ui.controls, cascade_ui.formatting, cascade_ui.search_tab, "
        "cascade_ui.cost_tab, cascade_ui.whatif_tab, cascade_ui.evaluate_tab, cascade_ui.stage_gallery, "
        "cascade_ui.live_replay, cascade_ui.page; "
        "print(sorted(m for m in ('open_clip', 'transformers') if m in sys.modules))"
    )
    env = {**os.environ, "CASCADE_CACHE_DIR": str(cache)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    app_alone, modules = out.stdout.strip().splitlines()
    return {
        "app_alone": app_alone,
        "modules": modules,
        "cache": cache.exists(),
        "stub_before": before,
        "stub_after": stub.read_bytes(),
    }


def test_importing_the_app_does_no_work(fresh_import):
    assert not fresh_import["cache"]  # no database, no gallery, no weights touched
    assert fresh_import["modules"] == "[]"  # no model library either


def test_importing_the_app_leaves_huggingface_hub_for_main_to_import(fresh_import):
    """huggingface_hub reads HF_HOME once, on import (gradio imports it): ``main()`` sets HF_HOME first."""
    assert fresh_import["app_alone"] == "[]"


def test_main_keeps_the_hub_cache_in_a_spaces_storage_before_huggingface_hub_reads_it(tmp_path):
    code = (
        f"import sys, pathlib, app; app.SPACE_STORAGE = pathlib.Path({str(tmp_path)!r}); "
        "assert app.main(['--folder', '/no/such/folder']) == 2; "
        "import huggingface_hub.constants as hub; print(hub.HF_HOME)"
    )
    env = {key: value for key, value in os.environ.items() if key != "HF_HOME"}
    env.update(SPACE_ID="someone/cascade", CASCADE_CACHE_DIR=str(tmp_path / "cache"))
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(tmp_path / ".huggingface")


def test_an_explicit_hf_home_wins_and_off_a_space_nothing_changes(tmp_path):
    mine = {"SPACE_ID": "someone/cascade", "HF_HOME": "/mine"}
    app.use_space_storage(mine, tmp_path)
    assert mine["HF_HOME"] == "/mine"
    local: dict[str, str] = {}
    app.use_space_storage(local, tmp_path)
    assert local == {}
    without_storage = {"SPACE_ID": "someone/cascade"}
    app.use_space_storage(without_storage, tmp_path / "missing")
    assert "HF_HOME" not in without_storage


def test_importing_the_stage_gallery_leaves_its_committed_stub_as_it_is(fresh_import):
    """Gradio writes a .pyi beside a component subclass on import; the committed one must be what it writes."""
    assert fresh_import["stub_after"] == fresh_import["stub_before"]
    assert not (ROOT / "cascade_ui" / "search_tab.pyi").exists()  # the tab's module holds no component class


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


def test_a_hub_dataset_is_a_gallery_of_the_page_and_offline_says_what_is_missing(engine):
    choice = choice_of(_controls(gallery="Flickr30k (hub)"))
    assert choice.gallery == GallerySource("dataset", path="flickr30k")
    assert describe_choice(choice) == "fake:small (k=20) > fake:large (k=5) on flickr30k"
    with pytest.raises(WeightsUnavailable, match="clip-benchmark/wds_flickr30k"):  # offline, nothing cached
        engine.search(choice, "a dog")
    assert dataset_source("COCO 5k test split (hub)", "", "") == GallerySource("dataset", path="coco")
    assert engine.dataset_name(GallerySource("dataset", path="coco")) == "coco:test"
