"""The Gradio app: build a cascade, watch it search, see what it costs over its lifetime.

    python app.py                       # the offline shapes preset on http://127.0.0.1:7860
    python app.py --folder ~/photos     # also let users search a folder of this machine
    python app.py --host 0.0.0.0 --port 8080 --db /data/cascade.duckdb

The page is a thin layer over ``analysis.engine.Engine`` (``build_app(engine)``), assembled
from the ``cascade_ui`` package (one module per tab, the page in ``cascade_ui.page``): per-session
choices live in ``gr.State``; galleries, searchers, caches and the log are the engine's, shared by
every session. Importing this module starts nothing and imports neither gradio nor huggingface_hub;
``main()`` sets where the Hugging Face cache lives, opens the database and serves.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
import threading
from collections.abc import MutableMapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from analysis import front_door, presets
from analysis.engine import Engine
from analysis.store import Store
from cascade import datasets
from cascade.errors import CascadeError
from cascade.paths import default_db_path

if TYPE_CHECKING:
    import gradio as gr

SPACE_STORAGE = Path("/data")  # a Hugging Face Space's persistent storage, when it has some


def build_app(engine: Engine, notice: str = "") -> gr.Blocks:
    """The whole page for ``engine`` (``cascade_ui.page.build_app``); no work happens until it is launched."""
    from cascade_ui import page  # gradio imports huggingface_hub: after main() has set HF_HOME

    return page.build_app(engine, notice)


def launch(
    engine: Engine,
    host: str = "127.0.0.1",
    port: int | None = None,
    share: bool = False,
    block: bool = True,
    notice: str = "",
) -> gr.Blocks:
    """Build and serve the page (``cascade_ui.page.launch``); with ``block=False`` return at once (tests, notebooks)."""
    from cascade_ui import page  # gradio imports huggingface_hub: after main() has set HF_HOME

    return page.launch(engine, host=host, port=port, share=share, block=block, notice=notice)


def use_space_storage(environ: MutableMapping[str, str] = os.environ, storage: Path | None = None) -> None:
    """On a Space with persistent storage, download into it and read the weights preloaded at build time where
    they lie (``analysis.front_door.use_persistent_hub``, which says why). An explicit HF_HOME wins.

    huggingface_hub reads HF_HOME once, when it is first imported (gradio, open_clip and transformers
    import it), so ``main()`` calls this before anything imports them.
    """
    front_door.use_persistent_hub(environ, storage or SPACE_STORAGE)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python app.py", description="Serve the cascaded image search app.")
    on_space = bool(os.environ.get("SPACE_ID"))  # a Hugging Face Space must listen on every interface
    parser.add_argument("--host", default="0.0.0.0" if on_space else "127.0.0.1", help="address (default: %(default)s)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--db", default=str(default_db_path()), help="DuckDB file (default: %(default)s)")
    parser.add_argument(
        "--folder",
        action="append",
        default=[],
        metavar="PATH",
        help="a folder users may search and view (repeatable); nothing else is served",
    )
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    parser.add_argument(
        "--preset",
        choices=presets.names(),
        help=f"gallery and cascade (default: {front_door.SPACE_PRESET} on a Space when its files can be had, "
        f"else {front_door.FALLBACK})",
    )
    return parser


def main(argv: Sequence[str] | None = None, prepare: front_door.Ready = front_door.prepare) -> int:
    """Serve the app until it is stopped; returns the exit code.

    Args:
        prepare: makes the Space's preset usable, reporting progress (``front_door.prepare``), run after the
            page is served; the documented injection point for a test that makes it slow or fail.
    """
    use_space_storage()
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own start-up probes: noise in a server log
    missing = [folder for folder in args.folder if not Path(folder).expanduser().is_dir()]
    if missing:
        print(f"error: not a folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        store = Store(args.db)
        name = front_door.start_preset(args.preset, on_space=bool(os.environ.get("SPACE_ID")))
    except CascadeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    preset = presets.get(name)
    world_root = None if preset.dataset == "world" else datasets.folder(preset.dataset)
    engine = Engine(store, preset=preset, world_root=world_root, folders=args.folder)
    from cascade_ui import page  # gradio imports huggingface_hub, which reads HF_HOME (set above)

    warm_up = functools.partial(page.warm_up, engine)
    preparation = None
    if args.preset is None and name == front_door.SPACE_PRESET:  # a Space's own preset: prepared behind the page
        preparation = front_door.Preparation(engine, name, ready=prepare, then=warm_up)  # page.launch starts it
    else:
        threading.Thread(target=warm_up, name="warm-up", daemon=True).start()
    page.launch(engine, host=args.host, port=args.port, share=args.share, preparation=preparation)
    return 0


if __name__ == "__main__":
    sys.exit(main())
