"""The Search tab: the cascade builder, a query, one gallery per stage, the cost card and the /search API."""

from __future__ import annotations

import gradio as gr

from analysis.engine import Engine
from analysis.search_json import search_json
from analysis.trace import example_queries
from cascade.corpus import Corpus
from cascade.types import LevelTrace
from cascade_ui.common import MAX_STAGES, PROGRESS, SEARCH_CONCURRENCY, Session, guarded, progress_fn
from cascade_ui.controls import cascade_controls, wire_controls
from cascade_ui.formatting import (
    cost_card,
    describe_choice,
    ks_cut_note,
    skipped_note,
    stage_items,
    stage_label,
    trace_markdown,
)
from cascade_ui.stage_gallery import StageGallery


def stage_gallery(trace: LevelTrace, corpus: Corpus, number: int) -> gr.Gallery:
    """One stage's kept images, best first, captioned with rank and score; cache misses marked."""
    return StageGallery(value=stage_items(trace, corpus), label=stage_label(trace, number), visible=True)


def search_tab(engine: Engine, session: gr.State) -> dict:
    """Lay out and wire the tab; returns its ``done`` events (search, submit, build) for the Cost tab to follow."""
    controls = cascade_controls(engine)
    status = gr.Markdown(f"Cascade: {describe_choice(engine.default_choice())}", elem_id="search-status")
    wire_controls(engine, controls, session, status)
    with gr.Row():
        query = gr.Textbox(label="Query", placeholder="e.g. two small striped red stars to the left of a blue circle",
                           scale=5, elem_id="query")  # fmt: skip
        search_button = gr.Button("Search", variant="primary", scale=1, elem_id="search-button")
        build_button = gr.Button("Build (embed gallery)", scale=1)
    examples = gr.Dataset(
        components=[query],
        samples=[],
        label="Examples: the gallery's own captions (search to "
        "load them); the trace then marks the image each one describes",
        elem_id="query-examples",
    )
    trace = gr.Markdown(elem_id="stage-trace")
    galleries = [StageGallery(label=f"Stage {i + 1}", visible=False, columns=10, height=250, object_fit="contain",
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
        stages += [StageGallery(value=None, visible=False)] * (MAX_STAGES - len(stages))
        cut = ks_cut_note(outcome.ks_asked, outcome.result.config.ks, len(outcome.corpus))
        note = f"Cascade: {describe_choice(current)}{skipped_note(outcome.corpus)}{cut}"
        data = search_json(outcome.result, outcome.corpus)
        return dict(zip(outputs, [gr.Markdown(note), *stages, cost_card(outcome), data]))

    def read_trace(data: dict | None, state: Session):
        """After a search, from its JSON: the stage trace, and example captions of the gallery searched."""
        corpus = engine.galleries.loaded(state.choice.gallery)
        samples = [[text] for text in example_queries(corpus)] if corpus is not None else []
        story = trace_markdown(data["trace"]) if isinstance(data, dict) and "trace" in data else ""
        return story, gr.Dataset(samples=samples)

    @guarded(status)
    def run_build(state: Session, progress: gr.Progress = PROGRESS):
        current = state.valid()
        searcher = engine.searcher(current, progress=progress_fn(progress))
        ready = f"({len(searcher.corpus):,} images ready){skipped_note(searcher.corpus)}"
        shown = gr.Dataset(samples=[[text] for text in example_queries(searcher.corpus)])
        return {status: gr.Markdown(f"Built: {describe_choice(current)} {ready}"), examples: shown}

    searched = search_button.click(run_search, [query, session], outputs, api_name="search",
                                   concurrency_limit=SEARCH_CONCURRENCY, concurrency_id="search")  # fmt: skip
    submitted = query.submit(run_search, [query, session], outputs, api_visibility="private",
                             concurrency_id="search")  # fmt: skip
    for event in (searched, submitted):
        event.then(read_trace, [raw, session], [trace, examples], api_visibility="private", show_progress="hidden")
    built = build_button.click(run_build, session, [status, examples], api_visibility="private",
                               concurrency_id="search")  # fmt: skip
    examples.click(lambda sample: sample[0], examples, query, queue=False, api_visibility="private")
    return {"done": [searched, submitted, built], "status": status}
