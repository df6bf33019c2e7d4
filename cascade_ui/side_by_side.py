"""The Cost tab's side-by-side panel: the same replay through two or more configurations, their curves overlaid."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import gradio as gr
import pandas as pd

from analysis import plots
from analysis.engine import Choice, Engine
from analysis.side_by_side import SideBySide
from cascade_ui.common import LONG_CONCURRENCY, PROGRESS, Session, describe, progress_fn

REFRESH_S = 1.0
EQ1 = "k_2 from Eq. 1"
INTRO = (
    "**Side by side.** The replay's queries through each configuration below, each counted from a fresh "
    "start (not logged); dotted: the cost model at the alpha each one measured."
)


@dataclass(frozen=True)
class Option:
    """A configuration the panel offers: levels cheapest first, their ks, and whether k_2 comes from Eq. 1."""

    levels: tuple[str, ...]
    ks: tuple[int, ...]
    eq1: bool = False


def name(levels: tuple[str, ...], ks: tuple[int, ...]) -> str:
    """``a > b (k 20,10)``: how the panel and its results name a configuration."""
    return f"{' > '.join(levels)} (k {','.join(map(str, ks))})"


def options(engine: Engine) -> dict[str, Option]:
    """Label -> option: the preset's bi-encoder cascades, and each 3-level one again with its k_2 from Eq. 1
    (for the target the panel sets)."""
    _, cross = engine.encoder_names()
    found: dict[str, Option] = {}
    for levels, ks in engine.preset.comparisons:
        if len(levels) < 2 or any(level in cross for level in levels):
            continue  # a single encoder is a flat baseline on the chart already; a cross-encoder caches nothing
        found[name(levels, ks)] = Option(levels, ks)
        if len(levels) == 3:
            found[f"{' > '.join(levels)} (k_1 {ks[0]}, {EQ1})"] = Option(levels, ks, eq1=True)
    return found


def resolve(engine: Engine, state: Session, picked: list[str], target: float) -> list[Choice]:
    """The picked options on the session's gallery, Eq. 1's k_2 computed from the encoders' MACs."""
    known, gallery, choices = options(engine), state.choice.gallery, []
    for label in picked or []:
        option = known[label]
        if option.eq1:
            choices.append(engine.eq1_choice(gallery, option.levels, option.ks[0], option.ks[-1], float(target)))
        else:
            choices.append(Choice(gallery, option.levels, option.ks))
    return choices


def figures(result: SideBySide | None, partial: dict[str, list[int]] | None = None) -> tuple[object, object]:
    """(cumulative overlay, per-query bars): from a finished comparison, or from the curves measured so far."""
    if result is not None:
        curves, baselines, per_query = result.curves(), result.baselines_frame(), result.per_query()
    else:
        rows = [
            (label, "measured", q, macs)
            for label, curve in (partial or {}).items()
            for q, macs in enumerate(curve, start=1)
        ]
        curves = pd.DataFrame(rows, columns=["config", "kind", "query_index", "cumulative_image_macs"])
        baselines, per_query = pd.DataFrame(columns=["encoder_id", "image_macs"]), pd.DataFrame()
    cumulative = plots.side_by_side_cumulative_figure(curves, baselines)
    return cumulative, plots.side_by_side_per_query_figure(per_query)


@dataclass(frozen=True)
class _Outputs:
    status: gr.Markdown
    cumulative: gr.Plot
    per_query: gr.Plot
    table: gr.Dataframe
    last: gr.State

    @property
    def all(self) -> list:
        return [self.status, self.cumulative, self.per_query, self.table, self.last]


def panel(engine: Engine, session: gr.State, workload: gr.Radio, n_queries: gr.Slider, seed: gr.Number) -> gr.State:
    """Lay out and wire the panel; returns its ``gr.State`` holding the last finished comparison (for the report)."""
    known = options(engine)
    gr.Markdown(INTRO)
    with gr.Row():
        label = "Configurations (this gallery)"
        picked = gr.CheckboxGroup(list(known), value=list(known)[-2:], label=label, elem_id="sbs-configs")
        target = gr.Number(2.0, label="Eq. 1 target (x) for k_2", minimum=1.01)
        run = gr.Button("Replay side by side", elem_id="sbs-button")
    status = gr.Markdown(elem_id="sbs-status")
    with gr.Row():
        cumulative = gr.Plot(label="Cumulative image MACs, side by side", elem_id="sbs-cumulative")
        per_query = gr.Plot(label="Per-query image MACs, side by side", elem_id="sbs-per-query")
    out = _Outputs(
        status, cumulative, per_query, gr.Dataframe(label="Per configuration", visible=False), gr.State(None)
    )

    def go(state: Session, chosen, aim, kind, n, seed_value, progress: gr.Progress = PROGRESS) -> Iterator[dict]:
        try:
            choices = resolve(engine, state, chosen, aim)
        except Exception as err:  # noqa: BLE001  (one line in the page)
            yield {status: f"**Side by side:** {describe(err)}"}
            return
        yield from _run(engine, choices, kind, int(n), int(seed_value or 0), progress, out)

    run.click(
        go,
        [session, picked, target, workload, n_queries, seed],
        out.all,
        concurrency_limit=LONG_CONCURRENCY,
        concurrency_id="long",
        api_name="side_by_side",
        api_visibility="undocumented",
    )
    return out.last


def _run(
    engine: Engine, choices: list[Choice], kind: str, n: int, seed: int, progress: gr.Progress, out: _Outputs
) -> Iterator[dict]:
    """Run the comparison in a worker thread; redraw the measured curves every second, then the whole result."""
    names = [name(c.levels, c.ks) for c in choices]
    partial: dict[str, list[int]] = {}
    box: dict = {}

    def on_query(index, done, result, macs):
        partial.setdefault(names[index], []).append(macs)  # after query done (1, 2, ...)

    def work():
        try:
            box["result"] = engine.side_by_side(
                choices, kind, n, seed, on_query=on_query, progress=progress_fn(progress)
            )
        except Exception as err:  # noqa: BLE001  (reported below)
            box["error"] = err

    worker = threading.Thread(target=work, name="side-by-side", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(REFRESH_S)
        cum, per = figures(None, {k: list(v) for k, v in partial.items()})
        started = f"Replaying side by side: {len(partial)} of {len(choices)} configurations started…"
        yield {out.status: started, out.cumulative: cum, out.per_query: per}
    if "error" in box:
        yield {out.status: f"**Side by side:** {describe(box['error'])}"}
        return
    result: SideBySide = box["result"]
    cum, per = figures(result)
    done = f"Side by side done: {result.queries:,} {kind} queries through {len(choices)} configurations."
    table = gr.Dataframe(result.table().round(3), visible=True)
    yield {out.status: done, out.cumulative: cum, out.per_query: per, out.table: table, out.last: result}
