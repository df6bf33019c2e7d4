"""The Gradio app: build a cascade, watch it search, see what it costs over its lifetime.

    python app.py                       # the offline shapes preset on http://127.0.0.1:7860
    python app.py --folder ~/photos     # also let users search a folder of this machine
    python app.py --host 0.0.0.0 --port 8080 --db /data/cascade.duckdb

The page is a thin layer over ``analysis.engine.Engine`` (``build_app(engine)``), assembled
from the ``cascade_ui`` package (one module per tab): per-session choices live in ``gr.State``;
galleries, searchers, caches and the log are the engine's, shared by every session.
Importing this module starts nothing; ``main()`` opens the database and serves.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

# On a Space with persistent storage, keep the Hugging Face cache there (before gradio imports huggingface_hub,
# which reads HF_HOME once): weights and datasets then survive restarts. An explicit HF_HOME wins.
if os.environ.get("SPACE_ID") and Path("/data").is_dir():
    os.environ.setdefault("HF_HOME", "/data/.huggingface")

import gradio as gr  # noqa: E402

import cascade  # noqa: E402, F401  (installs the torchvision compat shim before anything imports torchvision)
from analysis import front_door, presets  # noqa: E402
from analysis.engine import Engine  # noqa: E402
from analysis.store import Store  # noqa: E402
from cascade import datasets  # noqa: E402
from cascade.errors import CascadeError  # noqa: E402
from cascade.paths import default_db_path  # noqa: E402
from cascade_ui.common import LOG, SEARCH_CONCURRENCY, Session, describe  # noqa: E402
from cascade_ui.cost_tab import cost_outputs, cost_tab  # noqa: E402
from cascade_ui.evaluate_tab import evaluate_tab  # noqa: E402
from cascade_ui.search_tab import search_tab  # noqa: E402
from cascade_ui.whatif_tab import whatif_tab  # noqa: E402


def build_app(engine: Engine, notice: str = "") -> gr.Blocks:
    """The whole page for ``engine``; no work happens until it is launched and used.

    Args:
        notice: one line shown under the title (why the app started on another preset than asked).
    """
    with gr.Blocks(title="Cascaded image search", analytics_enabled=False) as demo:
        gr.Markdown("# Cascaded text-to-image search\nA cheap encoder ranks every image; dearer ones re-rank only "
                    "the few it keeps, and embed each image the first time a query needs it.")  # fmt: skip
        gr.Markdown(f"Preset: **{engine.preset.name}**: {engine.preset.description}. {notice}", elem_id="preset-line")
        session = gr.State(Session(engine.default_choice()))
        with gr.Tab("Search", id="search"):
            search = search_tab(engine, session)
        with gr.Tab("Cost", id="cost") as cost_block:
            cost = cost_tab(engine, session)
        with gr.Tab("What-if", id="whatif") as whatif_block:
            whatif = whatif_tab(engine)
        with gr.Tab("Evaluate", id="evaluate") as evaluate_block:
            evaluate = evaluate_tab(engine, session)

        def refresh(state: Session):
            return cost_outputs(engine, state.choice)

        # The Cost tab follows every search and build, and redraws when opened: its charts are the log's.
        cost_targets = [cost["summary"], cost["cumulative"], cost["per_query"]]
        for event in search["done"]:
            event.then(refresh, session, cost_targets, api_visibility="private", show_progress="hidden")
        cost_block.select(refresh, session, cost_targets, api_visibility="private")
        whatif_block.select(whatif["update"], whatif["inputs"], whatif["outputs"], api_visibility="private")
        evaluate_block.select(evaluate["refresh"], evaluate["inputs"], evaluate["outputs"], api_visibility="private")
    return demo


def launch(engine: Engine, host: str = "127.0.0.1", port: int | None = None, share: bool = False,
           block: bool = True, notice: str = "") -> gr.Blocks:  # fmt: skip
    """Build and serve the page; with ``block=False`` return at once (tests, notebooks).

    Only the gallery folders are served (``allowed_paths``): Gradio serves files there,
    uploads and its own cache, and nothing else of the machine. The same folders are Gradio's
    static paths, so a result image is served where it lies instead of being hashed and copied
    into Gradio's cache on every search (uploads already live in that cache).
    """
    serve_in_place(engine.allowed_paths())
    demo = build_app(engine, notice)
    demo.queue(default_concurrency_limit=SEARCH_CONCURRENCY)
    demo.launch(server_name=host, server_port=port, share=share, allowed_paths=engine.allowed_paths(),
                prevent_thread_lock=not block, footer_links=["api"], show_error=False, quiet=not block)  # fmt: skip
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python app.py", description="Serve the cascaded image search app.")
    on_space = bool(os.environ.get("SPACE_ID"))  # a Hugging Face Space must listen on every interface
    parser.add_argument("--host", default="0.0.0.0" if on_space else "127.0.0.1", help="address (default: %(default)s)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--db", default=str(default_db_path()), help="DuckDB file (default: %(default)s)")
    parser.add_argument("--folder", action="append", default=[], metavar="PATH",
                        help="a folder users may search and view (repeatable); nothing else is served")  # fmt: skip
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    parser.add_argument("--preset", choices=presets.names(),
                        help=f"gallery and cascade (default: {front_door.SPACE_PRESET} on a Space when its files can "
                        f"be had, else {front_door.FALLBACK})")  # fmt: skip
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
    start = front_door.choose(args.preset, on_space=bool(os.environ.get("SPACE_ID")))
    if start.notice:
        LOG.warning("%s", start.notice)
    preset = presets.get(start.preset)
    world_root = None if preset.dataset == "world" else datasets.folder(preset.dataset)
    engine = Engine(store, preset=preset, world_root=world_root, folders=args.folder)
    threading.Thread(target=warm_up, args=(engine,), name="warm-up", daemon=True).start()
    launch(engine, host=args.host, port=args.port, share=args.share, notice=start.notice)
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
