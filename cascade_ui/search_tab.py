"""The Search tab: the cascade builder, a query, one gallery per stage, the cost card and the /search API."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
from gradio.events import Dependency

from analysis.engine import Choice, Engine
from analysis.search_json import search_json
from analysis.trace import example_queries
from cascade.corpus import Corpus
from cascade.index import parse_index
from cascade.index_auto import recall_line
from cascade.types import LevelTrace
from cascade_ui.common import MAX_STAGES, PROGRESS, SEARCH_CONCURRENCY, Session, guarded, progress_fn
from cascade_ui.controls import CascadeControls, cascade_controls, described, wire_controls
from cascade_ui.formatting import (
    cost_card,
    ks_cut_note,
    skipped_note,
    stage_items,
    stage_label,
    trace_markdown,
)
from cascade_ui.stage_gallery import StageGallery

EXAMPLES_LABEL = (
    "Examples: the gallery's own captions (search to load them); the trace then marks the image each one describes"
)


def stage_gallery(trace: LevelTrace, corpus: Corpus, number: int) -> gr.Gallery:
    """One stage's kept images, best first, captioned with rank and score; cache misses marked."""
    return StageGallery(value=stage_items(trace, corpus), label=stage_label(trace, number), visible=True)


@dataclass(frozen=True)
class SearchTab:
    """What the page needs of the Search tab: its status line, the events after which the Cost tab redraws, and
    (for a preset still preparing, ``cascade_ui.preparing``) the builder and the buttons that run the cascade."""

    status: gr.Markdown
    done: tuple[Dependency, ...]
    controls: CascadeControls
    buttons: tuple[gr.Button, ...]


@dataclass(frozen=True)
class _Results:
    """The components a search fills, in the order of the /search API's answer."""

    status: gr.Markdown
    galleries: tuple[StageGallery, ...]
    card: gr.Markdown
    raw: gr.JSON

    @property
    def outputs(self) -> list:
        return [self.status, *self.galleries, self.card, self.raw]


def search_tab(engine: Engine, session: gr.State) -> SearchTab:
    """Lay out and wire the tab."""
    controls = cascade_controls(engine)
    status = gr.Markdown(f"Cascade: {described(engine, engine.default_choice())}", elem_id="search-status")
    wire_controls(engine, controls, session, status)
    with gr.Row():
        placeholder = "e.g. two small striped red stars to the left of a blue circle"
        query = gr.Textbox(label="Query", placeholder=placeholder, scale=5, elem_id="query")
        search_button = gr.Button("Search", variant="primary", scale=1, elem_id="search-button")
        build_button = gr.Button("Build (embed gallery)", scale=1)
    examples = gr.Dataset(components=[query], samples=[], label=EXAMPLES_LABEL, elem_id="query-examples")
    trace = gr.Markdown(elem_id="stage-trace")
    results = _Results(status, _stage_galleries(), gr.Markdown(elem_id="cost-card"), _raw_result())
    run_search = _searcher(engine, results)
    searched = search_button.click(
        run_search,
        [query, session],
        results.outputs,
        api_name="search",
        concurrency_limit=SEARCH_CONCURRENCY,
        concurrency_id="search",
    )
    submitted = query.submit(
        run_search, [query, session], results.outputs, api_visibility="private", concurrency_id="search"
    )
    read_trace = _trace_reader(engine)
    for event in (searched, submitted):
        event.then(
            read_trace, [results.raw, session], [trace, examples], api_visibility="private", show_progress="hidden"
        )
    built = build_button.click(
        _builder(engine, status, examples),
        session,
        [status, examples],
        api_visibility="private",
        concurrency_id="search",
    )
    examples.click(lambda sample: sample[0], examples, query, queue=False, api_visibility="private")
    return SearchTab(status, (searched, submitted, built), controls, (search_button, build_button))


def _stage_galleries() -> tuple[StageGallery, ...]:
    return tuple(
        StageGallery(
            label=f"Stage {i + 1}",
            visible=False,
            columns=10,
            height=250,
            object_fit="contain",
            fit_columns=False,
            elem_id=f"stage-{i + 1}",
        )
        for i in range(MAX_STAGES)
    )


def _raw_result() -> gr.JSON:
    with gr.Accordion("Result as data (the /search API's answer)", open=False):
        return gr.JSON()


def _searcher(engine: Engine, results: _Results):
    @guarded(results.status)
    def run_search(text: str, state: Session, progress: gr.Progress = PROGRESS) -> dict:
        current = state.valid()
        outcome = engine.search(current, text, progress=progress_fn(progress))
        stages = [stage_gallery(t, outcome.corpus, n) for n, t in enumerate(outcome.result.levels, start=1)]
        stages += [StageGallery(value=None, visible=False)] * (MAX_STAGES - len(stages))
        cut = ks_cut_note(outcome.ks_asked, outcome.result.config.ks, len(outcome.corpus))
        note = f"Cascade: {described(engine, current)}{skipped_note(outcome.corpus)}{cut}{_index_note(engine, current)}"
        data = search_json(outcome.result, outcome.corpus)
        return dict(zip(results.outputs, [gr.Markdown(note), *stages, cost_card(outcome), data]))

    return run_search


def _trace_reader(engine: Engine):
    def read_trace(data: dict | None, state: Session) -> tuple[str, gr.Dataset]:
        """After a search, from its JSON: the stage trace, and example captions of the gallery searched."""
        corpus = engine.galleries.loaded(state.choice.gallery)
        samples = [[text] for text in example_queries(corpus)] if corpus is not None else []
        story = trace_markdown(data["trace"]) if isinstance(data, dict) and "trace" in data else ""
        return story, gr.Dataset(samples=samples)

    return read_trace


def _builder(engine: Engine, status: gr.Markdown, examples: gr.Dataset):
    @guarded(status)
    def run_build(state: Session, progress: gr.Progress = PROGRESS) -> dict:
        current = state.valid()
        searcher = engine.searcher(current, progress=progress_fn(progress))
        ready = f"({len(searcher.corpus):,} images ready){skipped_note(searcher.corpus)}"
        shown = gr.Dataset(samples=[[text] for text in example_queries(searcher.corpus)])
        built = f"Built: {described(engine, current)} {ready}{_index_note(engine, current)}"
        return {status: gr.Markdown(built), examples: shown}

    return run_build


def _index_note(engine: Engine, choice: Choice) -> str:
    """Level 1's approximate index in one line under the status (auto's pick and its recall); "" when exact."""
    if not parse_index(choice.index).approximate:
        return ""
    searcher = engine.searcher(choice)  # built by the search or build just made: no work here
    return "\n\n" + recall_line(searcher.index_recall(min(choice.ks[0], len(searcher.corpus))))
