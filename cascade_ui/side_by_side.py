"""The Cost tab's side-by-side panel: the same replay through two or more configurations, their curves overlaid."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import gradio as gr
import pandas as pd

from analysis import plots
from analysis.engine import Choice, Engine
from analysis.side_by_side import SideBySide
from cascade_ui.common import LONG_CONCURRENCY, PROGRESS, Session, describe, progress_fn

REFRESH_S = 1.0
EQ1 = "k_2 from Eq. 1"


def options(engine: Engine) -> dict[str, tuple[tuple[str, ...], tuple[int, ...], bool]]:
    """Label -> (levels, ks, whether k_2 comes from Eq. 1): the preset's bi-encoder cascades, and each 3-level one
    again with its k_2 from Eq. 1 (for the target the panel sets)."""
    _, cross = engine.encoder_names()
    found: dict[str, tuple[tuple[str, ...], tuple[int, ...], bool]] = {}
    for levels, ks in engine.preset.comparisons:
        if len(levels) < 2 or any(name in cross for name in levels):
            continue  # a single encoder is a flat baseline on the chart already; a cross-encoder caches nothing
        found[f"{' > '.join(levels)} (k {','.join(map(str, ks))})"] = (levels, ks, False)
        if len(levels) == 3:
            found[f"{' > '.join(levels)} (k_1 {ks[0]}, {EQ1})"] = (levels, ks, True)
    return found


def resolve(engine: Engine, state: Session, picked: list[str], target: float) -> list[Choice]:
    """The picked options on the session's gallery, Eq. 1's k_2 computed from the encoders' MACs."""
    known, gallery, choices = options(engine), state.choice.gallery, []
    for label in picked or []:
        levels, ks, eq1 = known[label]
        choices.append(engine.eq1_choice(gallery, levels, ks[0], ks[-1], float(target)) if eq1
                       else Choice(gallery, levels, ks))  # fmt: skip
    return choices


def figures(result: SideBySide | None, partial: dict[str, list[int]] | None = None) -> tuple[object, object]:
    """(cumulative overlay, per-query bars): from a finished comparison, or from the curves measured so far."""
    if result is not None:
        curves, baselines, per_query = result.curves(), result.baselines_frame(), result.per_query()
    else:
        rows = [
            (name, "measured", q, macs)
            for name, curve in (partial or {}).items()
            for q, macs in enumerate(curve, start=1)
        ]
        curves = pd.DataFrame(rows, columns=["config", "kind", "query_index", "cumulative_image_macs"])
        baselines, per_query = pd.DataFrame(columns=["encoder_id", "image_macs"]), pd.DataFrame()
    return (plots.side_by_side_cumulative_figure(curves, baselines),
            plots.side_by_side_per_query_figure(per_query))  # fmt: skip


def panel(engine: Engine, session: gr.State, workload: gr.Radio, n_queries: gr.Slider, seed: gr.Number) -> dict:
    """Lay out and wire the panel; returns its ``gr.State`` holding the last finished comparison (for the report)."""
    known = options(engine)
    gr.Markdown("**Side by side.** The replay's queries through each configuration below, each counted from a fresh "
                "start (not logged); dotted: the cost model at the alpha each one measured.")  # fmt: skip
    with gr.Row():
        picked = gr.CheckboxGroup(list(known), value=list(known)[-2:], label="Configurations (this gallery)",
                                  elem_id="sbs-configs")  # fmt: skip
        target = gr.Number(2.0, label="Eq. 1 target (x) for k_2", minimum=1.01)
        run = gr.Button("Replay side by side", elem_id="sbs-button")
    status = gr.Markdown(elem_id="sbs-status")
    with gr.Row():
        cumulative = gr.Plot(label="Cumulative image MACs, side by side", elem_id="sbs-cumulative")
        per_query = gr.Plot(label="Per-query image MACs, side by side", elem_id="sbs-per-query")
    table = gr.Dataframe(label="Per configuration", visible=False)
    last = gr.State(None)

    def go(state: Session, chosen, aim, kind, n, seed_value, progress: gr.Progress = PROGRESS) -> Iterator[dict]:
        try:
            choices = resolve(engine, state, chosen, aim)
        except Exception as err:  # noqa: BLE001  (one line in the page)
            yield {status: f"**Side by side:** {describe(err)}"}
            return
        yield from _run(engine, choices, kind, int(n), int(seed_value or 0), progress,
                        (status, cumulative, per_query, table, last))  # fmt: skip

    run.click(go, [session, picked, target, workload, n_queries, seed], [status, cumulative, per_query, table, last],
              concurrency_limit=LONG_CONCURRENCY, concurrency_id="long", api_name="side_by_side",
              api_visibility="undocumented")  # fmt: skip
    return {"last": last}


def _run(engine: Engine, choices: list[Choice], kind: str, n: int, seed: int, progress: gr.Progress,
         outputs: tuple) -> Iterator[dict]:  # fmt: skip
    """Run the comparison in a worker thread; redraw the measured curves every second, then the whole result."""
    status, cumulative, per_query, table, last = outputs
    names = [f"{' > '.join(c.levels)} (k {','.join(map(str, c.ks))})" for c in choices]
    partial: dict[str, list[int]] = {}
    box: dict = {}

    def on_query(index, done, result, macs):
        partial.setdefault(names[index], []).append(macs)  # after query done (1, 2, ...)

    def work():
        try:
            box["result"] = engine.side_by_side(choices, kind, n, seed, on_query=on_query,
                                                progress=progress_fn(progress))  # fmt: skip
        except Exception as err:  # noqa: BLE001  (reported below)
            box["error"] = err

    worker = threading.Thread(target=work, name="side-by-side", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(REFRESH_S)
        cum, per = figures(None, {k: list(v) for k, v in partial.items()})
        yield {status: f"Replaying side by side: {len(partial)} of {len(choices)} configurations started…",
               cumulative: cum, per_query: per}  # fmt: skip
    if "error" in box:
        yield {status: f"**Side by side:** {describe(box['error'])}"}
        return
    result: SideBySide = box["result"]
    cum, per = figures(result)
    frame = result.table().round(3)
    yield {status: f"Side by side done: {result.queries:,} {kind} queries through {len(choices)} configurations.",
           cumulative: cum, per_query: per, table: gr.Dataframe(frame, visible=True), last: result}  # fmt: skip
