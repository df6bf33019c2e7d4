"""The whole page: the four tabs over one engine, served with only the galleries' folders reachable.

Imported by ``app.main`` after it has set ``HF_HOME``: importing gradio imports huggingface_hub,
which reads ``HF_HOME`` once, at its import.
"""

from __future__ import annotations

from collections.abc import Sequence

import gradio as gr
from starlette.middleware import Middleware

from analysis.engine import Engine
from analysis.front_door import Preparation
from cascade_ui import uploads
from cascade_ui.about import ABOUT_CLIP, ABOUT_TITLE
from cascade_ui.common import LOG, SEARCH_CONCURRENCY, Session, describe
from cascade_ui.cost_tab import cost_tab
from cascade_ui.evaluate_tab import evaluate_tab
from cascade_ui.preparing import preparing_panel, preset_line, wire_preparing
from cascade_ui.search_tab import search_tab
from cascade_ui.whatif_tab import whatif_tab

INTRO = (
    "# Cascaded text-to-image search\nA cheap encoder ranks every image; dearer ones re-rank only "
    "the few it keeps, and embed each image the first time a query needs it."
)


def build_app(engine: Engine, notice: str = "", preparation: Preparation | None = None) -> gr.Blocks:
    """The whole page for ``engine``; no work happens until it is launched and used.

    Args:
        notice: one line shown under the title (why the app started on another preset than asked).
        preparation: the engine's preset, still being prepared (a Space's start): the page shows its progress
            and turns Search on when it is ready (``cascade_ui.preparing``).
    """
    private = {"api_visibility": "private"}
    # delete_cache: uploads, reports and result copies older than an hour go (uploads.DELETE_CACHE)
    with gr.Blocks(title="Cascaded image search", analytics_enabled=False, delete_cache=uploads.DELETE_CACHE) as demo:
        gr.Markdown(INTRO)
        line = gr.Markdown(preset_line(engine.preset, notice), elem_id="preset-line")
        panel = preparing_panel(preparation) if preparation is not None else None
        with gr.Accordion(ABOUT_TITLE, open=False, elem_id="about-clip"):
            gr.Markdown(ABOUT_CLIP)
        session = gr.State(Session(engine.default_choice()))
        with gr.Tab("Search", id="search"):
            search = search_tab(engine, session)
        with gr.Tab("Cost", id="cost") as cost_block:
            cost = cost_tab(engine, session)
        with gr.Tab("What-if", id="whatif") as whatif_block:
            whatif = whatif_tab(engine)
        with gr.Tab("Evaluate", id="evaluate") as evaluate_block:
            evaluate = evaluate_tab(engine, session)

        def redraw_cost(state: Session) -> dict:
            return cost.drawn(engine, state.choice)

        # The Cost tab follows every search and build, and redraws when opened: its charts are the log's.
        for event in search.done:
            event.then(redraw_cost, session, cost.outputs, show_progress="hidden", **private)
        cost_block.select(redraw_cost, session, cost.outputs, **private)
        whatif_block.select(whatif.redraw, whatif.inputs.all, whatif.outputs, **private)
        evaluate_block.select(evaluate.redraw, evaluate.inputs, evaluate.outputs, **private)
        if preparation is not None:
            wire_preparing(demo, engine, preparation, panel, line, session, search, serve_in_place)
    return demo


def launch(
    engine: Engine,
    host: str = "127.0.0.1",
    port: int | None = None,
    share: bool = False,
    block: bool = True,
    notice: str = "",
    preparation: Preparation | None = None,
) -> gr.Blocks:
    """Build and serve the page (``build_app``); with ``block=False`` return at once (tests, notebooks).

    Only the gallery folders are served (``allowed_paths``): Gradio serves files there,
    uploads and its own cache, and nothing else of the machine. The same folders are Gradio's
    static paths, so a result image is served where it lies instead of being hashed and copied
    into Gradio's cache on every search (uploads already live in that cache).

    ``preparation``: the engine's preset, prepared in the background; started here, once the page is built.
    """
    serve_in_place(engine.allowed_paths())
    demo = build_app(engine, notice, preparation)
    if preparation is not None:  # once the page is built: a preset switched meanwhile would leave it half-built
        preparation.start()
    demo.queue(default_concurrency_limit=SEARCH_CONCURRENCY)
    demo.launch(
        server_name=host,
        server_port=port,
        share=share,
        allowed_paths=engine.allowed_paths(),
        prevent_thread_lock=not block,
        footer_links=["api"],
        show_error=False,
        quiet=not block,
        max_file_size=uploads.MAX_FILE_BYTES,  # refused while it arrives, before it is stored (uploads.py)
        app_kwargs={"middleware": [Middleware(uploads.UploadQuota)]},  # and all uploads together bounded
    )
    return demo


_STATIC: set[str] = set()  # folders already given to gr.set_static_paths (a process-wide list that only grows)


def serve_in_place(folders: Sequence[str]) -> None:
    """Make ``folders`` Gradio static paths: their files are served in place, never copied to the cache.

    Gradio keeps one list for the whole process, so every app launched in this process serves
    them; each folder is added once. They must already be allowed paths: Gradio's file route
    serves static paths too, and resolves links before checking either.
    """
    new = [folder for folder in dict.fromkeys(folders) if folder not in _STATIC]
    if new:
        gr.set_static_paths(new)
        _STATIC.update(new)


def warm_up(engine: Engine) -> None:
    """Do the slow first-time work before the first visitor asks: the default gallery and cascade, then the MACs."""
    steps = [engine.open_default]  # not through the gate: a preparation runs this before it opens the gate
    steps += [lambda mode=mode: engine.cost_model.table1(mode) for mode in ("paper", "full")]
    for step in steps:
        try:
            step()
        except Exception as err:  # noqa: BLE001  (a warm-up only: the page reports the same error when used)
            LOG.warning("warm-up step failed: %s", describe(err))
