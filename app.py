"""The Gradio app: build a cascade, watch it search, see what it costs over its lifetime.

    python app.py                       # the offline shapes preset on http://127.0.0.1:7860
    python app.py --folder ~/photos     # also let users search a folder of this machine
    python app.py --host 0.0.0.0 --port 8080 --db /data/cascade.duckdb

The page is a thin layer over ``analysis.engine.Engine`` (``build_app(engine)``):
per-session choices live in ``gr.State``; galleries, searchers, caches and the
log are the engine's, shared by every session. Importing this module starts
nothing; ``main()`` opens the database and serves.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import gradio as gr
import pandas as pd

import cascade  # noqa: F401  (installs the torchvision compat shim before anything imports torchvision)
from analysis import engine as eng
from analysis import plots, whatif
from analysis.engine import Choice, Engine, GallerySource
from analysis.replay import ReplayResult
from analysis.store import Store
from cascade.corpus import Corpus
from cascade.errors import CascadeError, ConfigError
from cascade.paths import default_db_path
from cascade.types import LevelTrace
from cascade.world import LIFETIME_GALLERY_IMAGES

LOG = logging.getLogger("cascade.app")

MAX_LEVELS = 4
MAX_STAGES = MAX_LEVELS + 1  # plus an optional cross-encoder
MAX_SHOWN = 100  # images shown per stage: a k_1 of 1,000 would flood the page (and Gradio's file cache)
SEARCH_CONCURRENCY = 4  # searches are short; several may run while a replay holds its own slot
LONG_CONCURRENCY = 2  # replays and evaluations: a separate pool, so they never block searches
REPLAY_REFRESH_S = 1.0
# A replay whose page stopped listening (Stop pressed, tab closed) for this long stops itself: Gradio
# cancels the event, but a sync generator's ``finally`` runs only when it is garbage collected.
REPLAY_ABANDONED_S = 5.0
GALLERY_LABELS = {"built-in world": "world", "server folder": "folder", "uploaded images": "upload"}
DATASET_LABELS = {"built-in test gallery": "world", "Karpathy dataset on the server": "karpathy"}
PAPER_ALPHA = 0.1
YOUR_CASCADE = "your cascade (Search tab)"
# Gradio spots a progress parameter by its default being a gr.Progress and hands each call a fresh
# tracker, so one shared default instance is safe (and keeps calls out of argument defaults).
PROGRESS = gr.Progress()


# ---------------------------------------------------------------- error handling


def describe(err: BaseException) -> str:
    """One line for the page: the library's own message, or a short note for a bug (traceback in the server log)."""
    if isinstance(err, (CascadeError, ValueError)):
        return str(err)
    LOG.exception("unexpected error in a handler")
    return f"unexpected {type(err).__name__}: {err} (details in the server log)"


def guarded(status: gr.Markdown) -> Callable:
    """Turn a handler's exception into a warning toast and a visible line in ``status``; the page stays usable.

    Handlers return ``{component: value}`` dicts, so an error updates ``status`` only.
    """

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)  # keeps the signature: Gradio finds the gr.Progress parameter through it
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Exception as err:  # noqa: BLE001  (every failure becomes a message, never a stack trace)
                message = describe(err)
                gr.Warning(message)
                return {status: gr.Markdown(f"**Error:** {message}", visible=True)}

        return wrapper

    return decorate


def progress_fn(progress: gr.Progress) -> eng.Progress:
    def report(what: str, done: int, total: int) -> None:
        if total <= 0:  # a step without a count (loading a gallery or a model): an indeterminate bar
            progress(None, desc=what)
        else:
            progress((done, total), desc=what, unit="queries" if "queries" in what else "images")

    return report


# ---------------------------------------------------------------- the session's cascade


def choice_from(gallery: str, folder: str, uploads: Sequence[str] | None, n_levels: int, *rest) -> Choice:
    """The session's Choice from the Search tab's controls (names and ks per level, then the re-ranker)."""
    names, ks = rest[:MAX_LEVELS], rest[MAX_LEVELS : 2 * MAX_LEVELS]
    rerank, rerank_name, rerank_k = rest[2 * MAX_LEVELS :]
    kind = GALLERY_LABELS[gallery]
    source = GallerySource(kind, path=folder or "", uploads=tuple(str(p) for p in uploads or ()))
    levels, level_ks = list(names[: int(n_levels)]), list(ks[: int(n_levels)])
    if rerank:
        levels.append(rerank_name)
        level_ks.append(rerank_k)
    for number, (name, k) in enumerate(zip(levels, level_ks), start=1):
        if not name:
            raise ConfigError(f"stage {number} has no encoder")
        if k is None:
            raise ConfigError(f"stage {number} has no k")
    return Choice(source.normalised(), tuple(str(n).strip() for n in levels), tuple(int(k) for k in level_ks))


@dataclass(frozen=True)
class Session:
    """One browser session's cascade (in ``gr.State``): the last valid choice, and what is wrong with the newest edit.

    The cost charts keep showing the last valid cascade while an edit is invalid; actions that
    would run the cascade (search, build, replay) refuse with the problem instead of quietly
    running the old one.
    """

    choice: Choice
    problem: str = ""

    def valid(self) -> Choice:
        if self.problem:
            raise ConfigError(f"fix the cascade first: {self.problem}")
        return self.choice


def describe_choice(choice: Choice) -> str:
    stages = " > ".join(f"{name} (k={k})" for name, k in zip(choice.levels, choice.ks))
    where = {"world": "the built-in world", "folder": choice.gallery.path, "upload": "your uploaded images"}
    return f"{stages} on {where.get(choice.gallery.kind, choice.gallery.kind)}"


def skipped_note(corpus: Corpus, shown: int = 3) -> str:
    """`` · N file(s) skipped ...`` naming the first few files of a folder or upload that are not readable images."""
    if not corpus.skipped:
        return ""
    names = ", ".join(path.name for path in corpus.skipped[:shown]) + (", ..." if len(corpus.skipped) > shown else "")
    return f" · {len(corpus.skipped)} file(s) skipped, not readable images: {names}"


# ---------------------------------------------------------------- search results


def stage_gallery(trace: LevelTrace, corpus: Corpus, number: int) -> gr.Gallery:
    """One stage's kept images, best first, captioned with rank and score; cache misses marked."""
    items = []
    for rank, (image_id, score) in enumerate(zip(trace.ids[:MAX_SHOWN], trace.scores), start=1):
        mark = " · embedded now" if image_id in trace.missed_ids else ""
        items.append((str(corpus.paths[image_id]), f"#{rank} · {score:.4f}{mark}"))
    shown = f", showing {MAX_SHOWN}" if len(trace.ids) > MAX_SHOWN else ""
    label = (f"Stage {number}: {plots.short_encoder(trace.encoder)} kept {trace.k} of {trace.candidates}"
             f"{shown} · {trace.misses} embedded now")  # fmt: skip
    return gr.Gallery(value=items, label=label, visible=True)


def result_json(outcome: eng.SearchOutcome) -> dict:
    """The search as plain data (the API's stable shape): per stage, the kept images with file names and scores."""
    corpus = outcome.corpus
    stages = []
    for number, t in enumerate(outcome.result.levels, start=1):
        stages.append({
            "stage": number, "encoder": t.encoder, "k": t.k, "candidates": t.candidates, "hits": t.hits,
            "misses": t.misses, "image_macs": t.image_macs, "text_macs": t.text_macs,
            "latency_ms": round(t.latency_ms, 3),
            "results": [{"rank": rank, "id": i, "file": corpus.paths[i].name, "score": s,
                         "embedded_now": i in t.missed_ids}
                        for rank, (i, s) in enumerate(zip(t.ids, t.scores), start=1)],
        })  # fmt: skip
    return {"query": outcome.result.query, "config": outcome.result.config.key, "stages": stages}


def cost_card(outcome: eng.SearchOutcome) -> str:
    """Markdown: per-stage MACs and wall time, and the uncascaded top encoder over the same lifetime."""
    si, result = plots.format_si, outcome.result
    rows = ["| stage | encoder | scored | embedded now | image MACs | text MACs | wall time |",
            "|---|---|--:|--:|--:|--:|--:|"]  # fmt: skip
    rows += [f"| {n} | {plots.short_encoder(t.encoder)} | {t.candidates:,} | {t.misses:,} | {si(t.image_macs)} "
             f"| {si(t.text_macs)} | {t.latency_ms:.1f} ms |"
             for n, t in enumerate(result.levels, start=1)]  # fmt: skip
    rows.append(f"| **total** | | | | **{si(result.image_macs)}** | **{si(result.text_macs)}** "
                f"| **{result.latency_ms:.1f} ms** |")  # fmt: skip
    top = max(result.levels, key=lambda t: t.macs_per_image)
    n_images, q = len(outcome.corpus), max(outcome.queries_logged, 1)
    top_total = n_images * top.macs_per_image
    rows += ["", f"**Uncascaded, {plots.short_encoder(top.encoder)} alone** embeds all {n_images:,} images once: "
             f"{si(top_total)}MACs at build, nothing per query. Over the {q:,} queries logged for this cascade that is "
             f"{si(top_total / q)}MACs per query; the cascade has spent {si(outcome.lifetime_image_macs)}MACs "
             f"(its build plus every miss), {si(outcome.lifetime_image_macs / q)}MACs per query."]  # fmt: skip
    return "\n".join(rows)


# ---------------------------------------------------------------- cost tab


def cost_outputs(engine: Engine, choice: Choice) -> tuple[str, object, object]:
    """(summary markdown, cumulative figure, per-query figure) of the session's cascade, from the log."""
    view = engine.cost_view(choice)
    if view is None:
        note = "Search (or press Build) with this cascade first: the charts read its query log."
        return note, plots.cumulative_cost_figure(_no_rows(), _no_rows()), plots.per_query_figure(_no_rows())
    title = plots.short_config(view.config_key)
    summary = cost_summary(view, engine.measured_alpha(choice))
    cumulative = plots.cumulative_cost_figure(view.cumulative, view.baselines, title)
    return summary, cumulative, plots.per_query_figure(view.per_level)


def _no_rows() -> pd.DataFrame:
    return pd.DataFrame()


def cost_summary(view: eng.CostView, alpha: float) -> str:
    if view.cumulative.empty:
        return f"**{plots.short_config(view.config_key)}**: no queries logged yet."
    si, spent = plots.format_si, float(view.cumulative["cumulative_image_macs"].iloc[-1])
    lines = [f"**{plots.short_config(view.config_key)}** on {view.corpus_size:,} images: "
             f"{len(view.cumulative) - 1:,} quer{'y' if len(view.cumulative) == 2 else 'ies'} logged, "
             f"{si(spent)}MACs spent (build included). "
             f"Measured alpha {alpha:.3f} (the paper assumes {PAPER_ALPHA})."]  # fmt: skip
    for row in view.baselines.itertuples():
        crossing = plots.break_even_index(view.cumulative["cumulative_image_macs"], row.image_macs)
        verdict = ("costs more from the start (it is the cheapest level)" if crossing == 0
                   else f"break-even at query {view.cumulative['query_index'].iloc[crossing]}" if crossing
                   else f"not reached: {si(row.image_macs - spent)}MACs saved so far")  # fmt: skip
        lines.append(f"- vs **{plots.short_encoder(row.encoder_id)} alone** ({si(row.image_macs)}MACs): {verdict}")
    return "\n".join(lines)


# ---------------------------------------------------------------- the page


def build_app(engine: Engine) -> gr.Blocks:
    """The whole page for ``engine``; no work happens until it is launched and used."""
    with gr.Blocks(title="Cascaded image search", analytics_enabled=False) as demo:
        gr.Markdown("# Cascaded text-to-image search\nA cheap encoder ranks every image; dearer ones re-rank only "
                    "the few it keeps, and embed each image the first time a query needs it.")  # fmt: skip
        session = gr.State(Session(engine.default_choice()))
        with gr.Tab("Search", id="search"):
            search = search_tab(engine, session)
        with gr.Tab("Cost", id="cost") as cost_tab_block:
            cost = cost_tab(engine, session)
        with gr.Tab("What-if", id="whatif") as whatif_block:
            whatif = whatif_tab(engine)
        with gr.Tab("Evaluate", id="evaluate") as evaluate_block:
            evaluate = evaluate_tab(engine, session)

        def refresh(state: Session):
            return cost_outputs(engine, state.choice)

        cost_targets = [cost["summary"], cost["cumulative"], cost["per_query"]]
        for event in search["done"]:
            event.then(refresh, session, cost_targets, api_visibility="private", show_progress="hidden")
        cost_tab_block.select(refresh, session, cost_targets, api_visibility="private")
        whatif_block.select(whatif["update"], whatif["inputs"], whatif["outputs"], api_visibility="private")
        evaluate_block.select(evaluate["refresh"], evaluate["inputs"], evaluate["outputs"], api_visibility="private")
    return demo


@dataclass
class CascadeControls:
    """The Search tab's cascade builder; ``values()`` order is what ``choice_from`` reads."""

    preset: gr.Dropdown
    gallery: gr.Radio
    folder: gr.Textbox
    uploads: gr.File
    n_levels: gr.Slider
    rows: list[gr.Row]
    names: list[gr.Dropdown]
    ks: list[gr.Number]
    rerank: gr.Checkbox
    rerank_name: gr.Dropdown
    rerank_k: gr.Number

    def values(self) -> list:
        return [self.gallery, self.folder, self.uploads, self.n_levels, *self.names, *self.ks, self.rerank,
                self.rerank_name, self.rerank_k]  # fmt: skip


def cascade_controls(engine: Engine) -> CascadeControls:
    bi_names, cross_names = engine.encoder_names()
    preset, cross_names = engine.preset, cross_names or [""]
    with gr.Row():
        preset_box = gr.Dropdown([preset.name, "custom"], value=preset.name, label="Preset", scale=1)
        gallery = gr.Radio(list(GALLERY_LABELS), value="built-in world", label="Gallery", scale=2)
        shared = ", ".join(map(str, engine.folders)) or "no folder shared (start the app with --folder)"
        folder = gr.Textbox(label="Folder on the server", visible=False, scale=2, placeholder=shared)
        uploads = gr.File(file_count="multiple", file_types=["image"], label="Images", visible=False, scale=2)
    n_levels = gr.Slider(1, MAX_LEVELS, value=len(preset.levels), step=1, label="Bi-encoder levels")
    rows, names, ks = [], [], []
    for i in range(MAX_LEVELS):
        default = i < len(preset.levels)
        with gr.Row(visible=default) as row:
            names.append(gr.Dropdown(bi_names, value=preset.levels[i] if default else bi_names[0],
                                     allow_custom_value=True, label=f"Level {i + 1} encoder", scale=3))  # fmt: skip
            ks.append(gr.Number(preset.ks[i] if default else 10, precision=0, minimum=1, label=f"k{i + 1}", scale=1,
                                elem_id=f"k{i + 1}"))  # fmt: skip
        rows.append(row)
    with gr.Row():
        rerank = gr.Checkbox(False, label="Cross-encoder re-ranks as the last stage", scale=2, elem_id="rerank")
        rerank_name = gr.Dropdown(cross_names, value=preset.reranker or cross_names[0], allow_custom_value=True,
                                  label="Re-ranker", visible=False, scale=3)  # fmt: skip
        rerank_k = gr.Number(preset.ks[-1], precision=0, minimum=1, label="k (re-ranked)", visible=False, scale=1)
    return CascadeControls(preset_box, gallery, folder, uploads, n_levels, rows, names, ks, rerank, rerank_name,
                           rerank_k)  # fmt: skip


def wire_controls(engine: Engine, c: CascadeControls, session: gr.State, status: gr.Markdown) -> None:
    """Every edit re-validates the cascade at once (no queue): the page says what is wrong as you type."""

    def update_choice(state: Session, *values):
        try:
            new = choice_from(*values)
            engine.validate(new)
        except Exception as err:  # noqa: BLE001  (an invalid edit is a message; the last valid choice stays)
            message = describe(err)
            return {session: replace(state, problem=message), status: gr.Markdown(f"**Not valid:** {message}")}
        return {session: Session(new), status: gr.Markdown(f"Cascade: {describe_choice(new)}")}

    quick = {"queue": False, "api_visibility": "private", "show_progress": "hidden"}
    triggers = [control.change for control in c.values()]
    gr.on(triggers, update_choice, [session, *c.values()], [session, status], **quick)
    c.n_levels.change(lambda n: [gr.Row(visible=i < n) for i in range(MAX_LEVELS)], c.n_levels, c.rows, **quick)
    c.gallery.change(lambda g: (gr.Textbox(visible=g == "server folder"), gr.File(visible=g == "uploaded images")),
                     c.gallery, [c.folder, c.uploads], **quick)  # fmt: skip
    c.rerank.change(lambda on: (gr.Dropdown(visible=on), gr.Number(visible=on)), c.rerank,
                    [c.rerank_name, c.rerank_k], **quick)  # fmt: skip
    preset = engine.preset

    def apply_preset(name: str) -> dict:
        if name != preset.name:  # "custom": keep whatever the controls say
            return {}
        return {c.gallery: "built-in world", c.n_levels: len(preset.levels), c.rerank: False,
                **dict(zip(c.names, preset.levels)), **dict(zip(c.ks, preset.ks))}  # fmt: skip

    c.preset.input(apply_preset, c.preset, [c.gallery, c.n_levels, c.rerank, *c.names, *c.ks], **quick)


def search_tab(engine: Engine, session: gr.State) -> dict:
    controls = cascade_controls(engine)
    status = gr.Markdown(f"Cascade: {describe_choice(engine.default_choice())}", elem_id="search-status")
    wire_controls(engine, controls, session, status)
    with gr.Row():
        query = gr.Textbox(label="Query", placeholder="e.g. two small striped red stars to the left of a blue circle",
                           scale=5, elem_id="query")  # fmt: skip
        search_button = gr.Button("Search", variant="primary", scale=1, elem_id="search-button")
        build_button = gr.Button("Build (embed gallery)", scale=1)
    galleries = [gr.Gallery(label=f"Stage {i + 1}", visible=False, columns=10, height=250, object_fit="contain",
                            fit_columns=False, elem_id=f"stage-{i + 1}") for i in range(MAX_STAGES)]  # fmt: skip
    card = gr.Markdown(elem_id="cost-card")
    with gr.Accordion("Result as data (the /search API's answer)", open=False):
        raw = gr.JSON()
    outputs = [status, *galleries, card, raw]

    @guarded(status)
    def run_search(text: str, state: Session, progress: gr.Progress = PROGRESS):
        current = state.valid()
        outcome = engine.search(current, text, progress=progress_fn(progress))
        stages = [stage_gallery(t, outcome.corpus, n) for n, t in enumerate(outcome.result.levels, start=1)]
        stages += [gr.Gallery(value=None, visible=False)] * (MAX_STAGES - len(stages))
        note = f"Cascade: {describe_choice(current)}{skipped_note(outcome.corpus)}"
        return dict(zip(outputs, [gr.Markdown(note), *stages, cost_card(outcome), result_json(outcome)]))

    @guarded(status)
    def run_build(state: Session, progress: gr.Progress = PROGRESS):
        current = state.valid()
        searcher = engine.searcher(current, progress=progress_fn(progress))
        ready = f"({len(searcher.corpus):,} images ready){skipped_note(searcher.corpus)}"
        return {status: gr.Markdown(f"Built: {describe_choice(current)} {ready}")}

    searched = search_button.click(run_search, [query, session], outputs, api_name="search",
                                   concurrency_limit=SEARCH_CONCURRENCY, concurrency_id="search")  # fmt: skip
    submitted = query.submit(run_search, [query, session], outputs, api_visibility="private",
                             concurrency_id="search")  # fmt: skip
    built = build_button.click(run_build, session, status, api_visibility="private", concurrency_id="search")
    return {"done": [searched, submitted, built], "status": status}


def cost_tab(engine: Engine, session: gr.State) -> dict:
    summary = gr.Markdown("Search with a cascade, then come back here.", elem_id="cost-summary")
    with gr.Row():
        cumulative = gr.Plot(label="Cumulative image MACs", elem_id="cost-cumulative")
        per_query = gr.Plot(label="Per-query image MACs", elem_id="cost-per-query")
    with gr.Row():
        n_queries = gr.Slider(10, 5000, value=200, step=10, label="Replay: queries", elem_id="replay-queries")
        workload = gr.Radio(["zipf", "uniform"], value="zipf", label="Workload")
        seed = gr.Number(0, precision=0, label="Seed")
    with gr.Row():
        replay_button = gr.Button("Replay", variant="primary", elem_id="replay-button")
        stop_button = gr.Button("Stop")
        reset_button = gr.Button("Reset this cascade's log…", variant="stop")
    with gr.Row(visible=False) as confirm_row:
        gr.Markdown("Delete every logged query of **this cascade on this gallery**? Embeddings, evaluations and "
                    "other cascades stay.")  # fmt: skip
        confirm = gr.Button("Yes, delete its log", variant="stop")
        cancel = gr.Button("Cancel")
    replay_status = gr.Markdown(elem_id="replay-status")
    figures = [summary, cumulative, per_query]

    def run_replay(state: Session, kind: str, n: float, seed_value: float, progress: gr.Progress = PROGRESS):
        if state.problem:
            yield {replay_status: f"**Replay:** fix the cascade first: {state.problem}"}
            return
        yield from replay_updates(engine, state.choice, kind, int(n), int(seed_value or 0), progress, figures,
                                  replay_status)  # fmt: skip

    # Callable by API (undocumented) so a test can prove a running replay never blocks a search.
    replaying = replay_button.click(run_replay, [session, workload, n_queries, seed], [*figures, replay_status],
                                    concurrency_limit=LONG_CONCURRENCY, concurrency_id="long", api_name="replay",
                                    api_visibility="undocumented")  # fmt: skip
    stop_button.click(None, None, None, cancels=[replaying], api_visibility="private")
    reset_button.click(lambda: gr.Row(visible=True), None, confirm_row, queue=False, api_visibility="private")
    cancel.click(lambda: gr.Row(visible=False), None, confirm_row, queue=False, api_visibility="private")

    @guarded(replay_status)
    def reset(state: Session):
        deleted = engine.reset_log(state.choice)  # the cascade the charts show
        text, fig_cumulative, fig_per_query = cost_outputs(engine, state.choice)
        return {confirm_row: gr.Row(visible=False), replay_status: f"Deleted {deleted:,} logged queries.",
                summary: text, cumulative: fig_cumulative, per_query: fig_per_query}  # fmt: skip

    confirm.click(reset, session, [confirm_row, replay_status, *figures], api_visibility="private")
    return {"summary": summary, "cumulative": cumulative, "per_query": per_query}


def replay_updates(engine: Engine, current: Choice, kind: str, n: int, seed: int, progress, figures, status):
    """Run a replay in a worker thread; yield the log's charts every second, then the measured alpha.

    The worker, not this generator, runs the queries: a generator only runs between
    yields, and the page should redraw while the replay is busy. The generator's polls
    are the worker's heartbeat: once they stop (Stop pressed, page closed), it stops.
    """
    stop, shared = threading.Event(), {"done": 0, "what": "queries", "total": n, "polled": time.monotonic()}

    def on_query(done, result, cumulative):
        shared.update(done=done, what="queries", total=n)
        if time.monotonic() - shared["polled"] > REPLAY_ABANDONED_S:
            stop.set()

    def on_progress(what, done, total):
        shared.update(what=what, done=done, total=total)

    def work():
        try:
            shared["result"] = engine.replay(current, kind, n, seed, on_query, stop, on_progress)
        except Exception as err:  # noqa: BLE001  (reported by the generator)
            shared["error"] = err

    worker = threading.Thread(target=work, name="replay", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(REPLAY_REFRESH_S)
            shared["polled"] = time.monotonic()
            progress_fn(progress)(shared["what"], shared["done"], shared["total"])
            text = f"Replaying: {shared['done']:,} of {n:,} queries ({kind}, seed {seed})…"
            yield dict(zip([*figures, status], [*cost_outputs(engine, current), text]))
        yield dict(zip([*figures, status], [*cost_outputs(engine, current), replay_verdict(engine, current, shared)]))
    finally:
        stop.set()


def replay_verdict(engine: Engine, current: Choice, shared: dict) -> str:
    if "error" in shared:
        message = describe(shared["error"])
        gr.Warning(message)
        return f"**Replay:** {message}"
    result = shared["result"]
    floor = alpha_floor_note(result, current.ks[0], len(engine.corpus(current.gallery)))  # corpus: cached
    return (f"**Replay done:** {result.queries:,} {result.workload} queries in {result.wall_s:.1f} s. "
            f"Alpha measured in this replay (fresh system): **{result.alpha:.3f}**; ever embedded above level 1: "
            f"**{engine.measured_alpha(current):.3f}**; the paper assumes **{PAPER_ALPHA}**. Fresh-system cost "
            f"{plots.format_si(result.cascade_image_macs)}MACs vs {plots.format_si(result.baseline_image_macs)}MACs "
            f"for the last level alone ({result.reduction:.2f}x).{floor}")  # fmt: skip


def alpha_floor_note(result: ReplayResult, k_1: int, n_images: int) -> str:
    """Why alpha came out far above the paper's, when it did: distinct queries x k_1 against the gallery."""
    if result.alpha <= 2 * PAPER_ALPHA or result.alpha == 0:
        return ""
    reach = result.distinct_queries * k_1
    return (f" Why so high: {result.distinct_queries:,} distinct queries x k_1 = {k_1} can hand up to {reach:,} "
            f"images to level 2, against {n_images:,} in this gallery. Alpha stays near {PAPER_ALPHA} only in a "
            f"gallery large against that: `python -m analysis.replay` replays on the preset's lifetime gallery "
            f"({LIFETIME_GALLERY_IMAGES:,} images).")  # fmt: skip


def whatif_tab(engine: Engine) -> dict:
    gr.Markdown("The paper's cost model on real architectures (MACs counted from the architecture, no weights).")
    families = whatif.families()
    with gr.Row():
        family = gr.Dropdown(families, value=families[0], label="Family")
        labels = gr.CheckboxGroup(whatif.family_labels(families[0]), value=whatif.family_labels(families[0]),
                                  label="Cascade (cheapest first)")  # fmt: skip
        mode = gr.Radio(["paper", "full"], value="paper", label="MAC counting")
    with gr.Row():
        log_n = gr.Slider(3, 9, value=6, step=0.1, label="Gallery size N = 10^x images")
        alpha = gr.Slider(0.001, 1, value=PAPER_ALPHA, step=0.001, label="alpha (share ever reaching level 2)")
        log_q = gr.Slider(1, 9, value=6, step=0.1, label="Queries Q = 10^x")
    with gr.Row():
        k1 = gr.Slider(1, 1000, value=50, step=1, label="k1 (handed to level 2)")
        k2 = gr.Slider(1, 1000, value=14, step=1, label="k2 (handed to level 3)")
    summary = gr.Markdown(elem_id="whatif-summary")
    figure = gr.Plot(elem_id="whatif-plot")
    table_button = gr.Button("Show Table 1 (both MAC modes)")
    tables = gr.Markdown()
    paper_table = gr.Dataframe(label="MACs: paper (THOP, as printed)", visible=False)
    full_table = gr.Dataframe(label="MACs: full (attention counted)", visible=False)

    inputs = [family, labels, mode, log_n, alpha, log_q, k1, k2]

    @guarded(summary)
    def update(family_title, chosen, macs_mode, x_n, a, x_q, first_k, second_k, progress: gr.Progress = PROGRESS):
        progress(None, desc="counting MACs (first time per encoder: seconds)")
        n, q = int(round(10**x_n)), int(round(10**x_q))
        model = engine.cost_model.whatif(family_title, chosen, macs_mode, n, a, q, (int(first_k), int(second_k)))
        plot = plots.whatif_figure(model.curves, model.break_even)
        return {summary: whatif_summary(model, n, a, macs_mode), figure: plot}

    gr.on([c.change for c in inputs], update, inputs, [summary, figure], api_visibility="private",
          concurrency_id="whatif", trigger_mode="always_last")  # fmt: skip

    def family_encoders(title: str) -> gr.CheckboxGroup:
        return gr.CheckboxGroup(choices=whatif.family_labels(title), value=whatif.family_labels(title))

    family.change(family_encoders, family, labels, queue=False, api_visibility="private")

    @guarded(tables)
    def show_tables(progress: gr.Progress = PROGRESS):
        progress(None, desc="counting MACs of every Table 1 encoder, both modes (once per run)")
        paper, full = engine.cost_model.table1("paper"), engine.cost_model.table1("full")
        from analysis.table1 import NOTES

        return {paper_table: gr.Dataframe(whatif.table1_frame(paper), visible=True),
                full_table: gr.Dataframe(whatif.table1_frame(full), visible=True),
                tables: f"**Why the two modes differ.** {NOTES['paper']}\n\n{NOTES['full']}"}  # fmt: skip

    table_button.click(show_tables, None, [paper_table, full_table, tables], api_visibility="private",
                       concurrency_id="long")  # fmt: skip
    return {"update": update, "inputs": inputs, "outputs": [summary, figure]}


def whatif_summary(model: whatif.WhatIf, n: int, alpha: float, macs_mode: str) -> str:
    costs = ", ".join(f"{label} {gmacs:.2f}" for label, gmacs in model.image_gmacs.items())
    eq1 = ("Eq. 1 early-latency reduction against [first, last]: "
           f"**{model.early_latency_reduction:.2f}x**" if model.early_latency_reduction is not None
           else "Eq. 1 needs 3 levels (it compares a deep cascade with [first, last])")  # fmt: skip
    lines = [f"N = {n:,} images, alpha = {alpha:g}, MACs: {macs_mode} (GMACs per image: {costs}).",
             f"- Lifetime reduction against the last level alone: **{model.lifetime_reduction:.2f}x**",
             f"- First query (empty caches) embeds **{model.early_query_image_gmacs:,.0f} GMACs** of images; "
             f"{eq1}"]  # fmt: skip
    for name, q in model.break_even.items():
        verdict = ("costs more from the start" if q == 0 else "never (the cascade stays cheaper)" if q is None
                   else f"{q:,} queries")  # fmt: skip
        lines.append(f"- Break-even with {name}: {verdict}")
    return "\n".join(lines)


def evaluate_tab(engine: Engine, session: gr.State) -> dict:
    comparisons = {f"{' > '.join(c.levels)} (k {','.join(map(str, c.ks))})": c for c in engine.comparisons()}
    gr.Markdown("Recall@1/5/10 of each configuration (every caption is a query), stored in the database.")
    configs = gr.CheckboxGroup([*comparisons, YOUR_CASCADE], value=list(comparisons)[:2], label="Configurations",
                               elem_id="eval-configs")  # fmt: skip
    with gr.Row():
        dataset = gr.Radio(list(DATASET_LABELS), value="built-in test gallery", label="Dataset")
        json_path = gr.Textbox(label="Karpathy JSON on the server", visible=False)
        image_root = gr.Textbox(label="Its image root", visible=False)
        limit = gr.Slider(10, 10000, value=300, step=10, label="Captions to evaluate (first N)", elem_id="eval-limit")
        recall = gr.Radio(["r1", "r5", "r10"], value="r10", label="Plot")
    run = gr.Button("Evaluate", variant="primary")
    status = gr.Markdown()
    figure = gr.Plot(elem_id="pareto-plot")
    table = gr.Dataframe(label="Evaluations on this dataset")

    def source(kind: str, path: str, root: str) -> GallerySource:
        return GallerySource(DATASET_LABELS[kind], path=path or "", image_root=root or "").normalised()

    @guarded(status)
    def refresh(kind, path, root, which):
        frame = engine.evaluations(source(kind, path, root))
        return {figure: plots.pareto_figure(frame, which), table: evaluation_table(frame)}

    @guarded(status)
    def run_evaluation(names, kind, path, root, n, which, state: Session, progress: gr.Progress = PROGRESS):
        picked = [state.valid() if name == YOUR_CASCADE else comparisons[name] for name in names or []]
        results = engine.evaluate(picked, source(kind, path, root), int(n), progress_fn(progress))
        done = {status: f"Evaluated {len(results)} configuration(s) on {results[0].n_queries:,} captions."}
        return {**done, **refresh(kind, path, root, which)}

    dataset.change(lambda d: [gr.Textbox(visible=d != "built-in test gallery")] * 2, dataset, [json_path, image_root],
                   queue=False, api_visibility="private")  # fmt: skip
    inputs = [dataset, json_path, image_root, recall]
    recall.change(refresh, inputs, [status, figure, table], api_visibility="private")
    run.click(run_evaluation, [configs, dataset, json_path, image_root, limit, recall, session],
              [status, figure, table], concurrency_limit=LONG_CONCURRENCY, concurrency_id="long",
              api_visibility="private")  # fmt: skip
    return {"refresh": refresh, "inputs": inputs, "outputs": [status, figure, table]}


def evaluation_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The evaluations as people read them: short names, recall in percent, lifetime MACs with SI units."""
    return pd.DataFrame({
        "configuration": [plots.short_config(key, drop_backend=True) for key in frame["config_key"]],
        "images": frame["n_images"], "queries": frame["n_queries"],
        "R@1 %": frame["r1"].round(1), "R@5 %": frame["r5"].round(1), "R@10 %": frame["r10"].round(1),
        "lifetime image MACs": [f"{plots.format_si(m)}MACs" for m in frame["image_macs"]],
        "alpha": frame["alpha"].round(3),
    })  # fmt: skip


# ---------------------------------------------------------------- serving


def launch(engine: Engine, host: str = "127.0.0.1", port: int | None = None, share: bool = False,
           block: bool = True) -> gr.Blocks:  # fmt: skip
    """Build and serve the page; with ``block=False`` return at once (tests, notebooks).

    Only the gallery folders are served (``allowed_paths``): Gradio serves files there,
    uploads and its own cache, and nothing else of the machine.
    """
    demo = build_app(engine)
    demo.queue(default_concurrency_limit=SEARCH_CONCURRENCY)
    demo.launch(server_name=host, server_port=port, share=share, allowed_paths=engine.allowed_paths(),
                prevent_thread_lock=not block, footer_links=["api"], show_error=False, quiet=not block)  # fmt: skip
    return demo


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python app.py", description="Serve the cascaded image search app.")
    on_space = bool(os.environ.get("SPACE_ID"))  # a Hugging Face Space must listen on every interface
    parser.add_argument("--host", default="0.0.0.0" if on_space else "127.0.0.1", help="address (default: %(default)s)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--db", default=str(default_db_path()), help="DuckDB file (default: %(default)s)")
    parser.add_argument("--folder", action="append", default=[], metavar="PATH",
                        help="a folder users may search and view (repeatable); nothing else is served")  # fmt: skip
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own start-up probes: noise in a server log
    missing = [folder for folder in args.folder if not Path(folder).expanduser().is_dir()]
    if missing:
        print(f"error: not a folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        store = Store(args.db)
    except CascadeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    engine = Engine(store, folders=args.folder)
    threading.Thread(target=warm_up, args=(engine,), name="warm-up", daemon=True).start()
    launch(engine, host=args.host, port=args.port, share=args.share)
    return 0


def warm_up(engine: Engine) -> None:
    """Do the slow first-time work before the first visitor asks: the default gallery and cascade, then the MACs."""
    steps = [lambda: engine.searcher(engine.default_choice())]
    steps += [lambda mode=mode: engine.cost_model.table1(mode) for mode in ("paper", "full")]
    for step in steps:
        try:
            step()
        except Exception as err:  # noqa: BLE001  (a warm-up only: the page reports the same error when used)
            LOG.warning("warm-up step failed: %s", describe(err))


if __name__ == "__main__":
    sys.exit(main())
