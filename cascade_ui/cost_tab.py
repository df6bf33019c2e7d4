"""The Cost tab: the session's cascade's log as charts, a replay that redraws them live, and resetting the log."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import pandas as pd
import plotly.graph_objects as go

from analysis import hardware, plots
from analysis.engine import Choice, CostView, Engine
from analysis.query_logs import MAX_FILE_BYTES, read_query_log
from analysis.report import Section, build_report, side_by_side_sections
from cascade_ui import estimate_input, side_by_side
from cascade_ui import uploads as limits
from cascade_ui.common import LONG_CONCURRENCY, PROGRESS, Session, describe, guarded, report_file
from cascade_ui.controls import described
from cascade_ui.formatting import cost_summary, real_units_summary
from cascade_ui.live_replay import Replay, replay_updates

NOT_BUILT = "Search (or press Build) with this cascade first: the charts read its query log."
REPORT_LABEL = "Report (one HTML file: inputs, charts, tables; opens offline)"
LONG = {"concurrency_limit": LONG_CONCURRENCY, "concurrency_id": "long"}


def cost_outputs(engine: Engine, choice: Choice) -> tuple[str, go.Figure, go.Figure]:
    """(summary markdown, cumulative figure, per-query figure) of the session's cascade, from the log."""
    return view_outputs(engine.cost_view(choice))


def view_outputs(view: CostView | None) -> tuple[str, go.Figure, go.Figure]:
    """(summary markdown, cumulative figure, per-query figure) of a cost view; None: not built yet."""
    if view is None:
        empty = pd.DataFrame()
        return NOT_BUILT, plots.cumulative_cost_figure(empty, empty), plots.per_query_figure(empty)
    title = plots.short_config(view.config_key)
    cumulative = plots.cumulative_cost_figure(view.cumulative, view.baselines, title, paid=view.paid)
    return cost_summary(view), cumulative, plots.per_query_figure(view.per_level)


def cost_report(engine: Engine, choice: Choice, units_text: str = "", compared=None) -> str:
    """The Cost tab as a report: the logged cost (with its real units when shown), and the last side by side."""
    view = engine.cost_view(choice)
    text, cumulative, per_query = view_outputs(view)
    tables = () if view is None else (("Each level alone over the gallery", view.baselines),)
    body = text + ("\n\n" + units_text if units_text else "")
    sections = [Section("This cascade's query log", body, (cumulative, per_query), tables)]
    if compared is not None:
        sections += side_by_side_sections(compared)
    inputs = {
        "cascade": described(engine, choice),
        "gallery": str(choice.gallery.kind),
        "ks": choice.ks,
        "measured alpha": round(view.alpha if view is not None else 0.0, 4),
    }
    return build_report("Cost: what this cascade spent", inputs, sections)


@dataclass(frozen=True)
class CostTab:
    """The tab's charts, which the page redraws after every search and build and when the tab is opened."""

    summary: gr.Markdown
    cumulative: gr.Plot
    per_query: gr.Plot

    @property
    def outputs(self) -> list:
        return [self.summary, self.cumulative, self.per_query]

    def drawn(self, engine: Engine, choice: Choice) -> dict:
        """``{component: value}`` of the charts of ``choice``."""
        return dict(zip(self.outputs, cost_outputs(engine, choice)))


@dataclass(frozen=True)
class _ReplayControls:
    n_queries: gr.Slider
    workload: gr.Radio
    seed: gr.Number
    run: gr.Button
    stop: gr.Button
    reset: gr.Button
    log_file: gr.File
    run_file: gr.Button
    status: gr.Markdown
    logs_stored: gr.State  # the session's uploaded query logs (uploads.Ledger)


@dataclass(frozen=True)
class _ResetConfirm:
    row: gr.Row
    confirm: gr.Button
    cancel: gr.Button


@dataclass(frozen=True)
class _UnitControls:
    profile: gr.Dropdown
    efficiency: gr.Slider
    price: gr.Number
    power: gr.Number
    show: gr.Button
    text: gr.Markdown


def cost_tab(engine: Engine, session: gr.State) -> CostTab:
    """Lay out and wire the tab; returns the charts ``cost_outputs`` fills, for the page to refresh."""
    summary = gr.Markdown("Search with a cascade, then come back here.", elem_id="cost-summary")
    with gr.Row():
        cumulative = gr.Plot(label="Cumulative image MACs", elem_id="cost-cumulative")
        per_query = gr.Plot(label="Per-query image MACs", elem_id="cost-per-query")
    tab = CostTab(summary, cumulative, per_query)
    replays, confirm = _replay_controls()
    units = _unit_controls()
    compared = side_by_side.panel(engine, session, replays.workload, replays.n_queries, replays.seed)
    estimate_input.cost_panel()
    with gr.Row():
        report_button = gr.Button("Download report", elem_id="cost-report-button")
        report = gr.File(label=REPORT_LABEL, visible=False, elem_id="cost-report")

    @guarded(replays.status)
    def make_report(state: Session, units_text: str, result) -> dict:
        document = cost_report(engine, state.choice, units_text, result)
        return {report: gr.File(report_file("cost-report.html", document), visible=True)}

    report_inputs = [session, units.text, compared]
    outputs = [replays.status, report]
    report_button.click(make_report, report_inputs, outputs, api_name="cost_report", api_visibility="undocumented")
    _wire_replays(engine, session, tab, replays)
    _wire_reset(engine, session, tab, replays, confirm)
    _wire_units(engine, session, units)
    return tab


def _replay_controls() -> tuple[_ReplayControls, _ResetConfirm]:
    with gr.Row():
        n_queries = gr.Slider(10, 5000, value=200, step=10, label="Replay: queries", elem_id="replay-queries")
        workload = gr.Radio(["zipf", "uniform"], value="zipf", label="Workload")
        seed = gr.Number(0, precision=0, label="Seed")
    with gr.Row():
        run = gr.Button("Replay", variant="primary", elem_id="replay-button")
        stop = gr.Button("Stop")
        reset = gr.Button("Reset this cascade's log…", variant="stop")
    with gr.Row(visible=False) as confirm_row:
        gr.Markdown(
            "Delete every logged query of **this cascade on this gallery**? "
            "Embeddings, evaluations and other cascades stay."
        )
        confirm = _ResetConfirm(confirm_row, gr.Button("Yes, delete its log", variant="stop"), gr.Button("Cancel"))
    with gr.Row():
        log_file = gr.File(
            label="Your query log: text (one query a line) or CSV/Parquet with a 'query' column "
            f"(optional count, timestamp), at most {MAX_FILE_BYTES // 2**20} MiB",
            file_types=[".txt", ".log", ".csv", ".parquet", ".pq"],
            type="filepath",
            elem_id="query-log-file",
        )
        run_file = gr.Button("Replay this log", elem_id="replay-file-button")
    status = gr.Markdown(elem_id="replay-status")
    stored = gr.State(limits.Ledger())
    return _ReplayControls(n_queries, workload, seed, run, stop, reset, log_file, run_file, status, stored), confirm


def _unit_controls() -> _UnitControls:
    with gr.Row():
        profile = gr.Dropdown(
            [hardware.MEASURED, *hardware.accelerators()],
            value=hardware.MEASURED,
            label="Hardware for time, money and energy",
        )
        efficiency = gr.Slider(
            1,
            100,
            value=round(100 * hardware.default_efficiency()),
            step=1,
            label="Efficiency (% of dense peak; named hardware only)",
        )
        price = gr.Number(0.0, label="Price per hour (USD)", minimum=0)
        power = gr.Number(0.0, label="Power draw (W)", minimum=0)
        show = gr.Button("Show in time, money and energy", elem_id="cost-units-button")
    return _UnitControls(profile, efficiency, price, power, show, gr.Markdown(elem_id="cost-real-units"))


def _wire_replays(engine: Engine, session: gr.State, tab: CostTab, c: _ReplayControls) -> None:
    """Replay a synthetic workload or an uploaded log (both callable by API, undocumented: a test proves a
    running replay never blocks a search); Stop cancels either."""
    outputs = [*tab.outputs, c.status]

    def run(replay: Replay, progress: gr.Progress):
        return replay_updates(
            engine, replay, progress, lambda text: {**tab.drawn(engine, replay.choice), c.status: text}
        )

    def run_replay(state: Session, kind: str, n: float, seed: float, progress: gr.Progress = PROGRESS):
        if state.problem:
            yield {c.status: f"**Replay:** fix the cascade first: {state.problem}"}
            return
        yield from run(Replay(state.choice, kind, int(n), int(seed or 0)), progress)

    def run_file(state: Session, path: str | None, stored: limits.Ledger, progress: gr.Progress = PROGRESS):
        problem = _file_problem(state, path)
        if problem:
            yield {c.status: f"**Replay:** {problem}"}
            return
        admission = limits.admit([path], stored, limits.QUERY_LOGS)  # a log sent by API, never seen by admit_log
        yield {c.logs_stored: admission.ledger}
        if admission.refused:
            yield {c.status: f"**Replay:** {admission.message}"}
            return
        try:  # read and checked whole before any query runs: a bad file logs nothing
            log = read_query_log(path)
        except Exception as err:  # noqa: BLE001  (one line in the page, never a traceback)
            yield {c.status: f"**Replay:** {describe(err)}"}
            return
        yield from run(Replay(state.choice, f"file:{log.name}", len(log.queries), log=log), progress)

    inputs = [session, c.workload, c.n_queries, c.seed]
    api = {"api_visibility": "undocumented", **LONG}
    replaying = c.run.click(run_replay, inputs, outputs, api_name="replay", **api)
    file_outputs = [*tab.outputs, c.logs_stored, c.status]
    file_inputs = [session, c.log_file, c.logs_stored]
    replaying_file = c.run_file.click(run_file, file_inputs, file_outputs, api_name="replay_file", **api)
    c.stop.click(None, None, None, cancels=[replaying, replaying_file], api_visibility="private")

    def admit_log(path: str | None, stored: limits.Ledger) -> tuple:
        """A log the session may store (``uploads.QUERY_LOGS``) stays in the box; one past it is deleted."""
        admission = limits.admit([path] if path else [], stored, limits.QUERY_LOGS)
        if not admission.refused:
            return gr.skip(), admission.ledger, gr.skip()
        gr.Warning(admission.message)
        return None, admission.ledger, f"**Upload refused:** {admission.message}"

    admitted = [c.log_file, c.logs_stored, c.status]
    c.log_file.upload(
        admit_log, [c.log_file, c.logs_stored], admitted, api_visibility="private", show_progress="hidden"
    )


def _file_problem(state: Session, path: str | None) -> str:
    if state.problem:
        return f"fix the cascade first: {state.problem}"
    return "" if path else "choose a query log file first."


def _wire_reset(engine: Engine, session: gr.State, tab: CostTab, c: _ReplayControls, confirm: _ResetConfirm) -> None:
    """Reset asks first; confirming deletes the log of the cascade the charts show, and redraws them."""
    quick = {"queue": False, "api_visibility": "private"}
    c.reset.click(lambda: gr.Row(visible=True), None, confirm.row, **quick)
    confirm.cancel.click(lambda: gr.Row(visible=False), None, confirm.row, **quick)

    @guarded(c.status)
    def reset(state: Session) -> dict:
        deleted = engine.reset_log(state.choice)
        done = {confirm.row: gr.Row(visible=False), c.status: f"Deleted {deleted:,} logged queries."}
        return {**done, **tab.drawn(engine, state.choice)}

    confirm.confirm.click(reset, session, [confirm.row, c.status, *tab.outputs], api_visibility="private")


def _wire_units(engine: Engine, session: gr.State, c: _UnitControls) -> None:
    """The logged cost in time, money and energy, on this machine (measured) or on named hardware."""

    @guarded(c.text)
    def show_units(
        state: Session,
        name: str,
        percent: float,
        usd_h: float | None,
        watts: float | None,
        progress: gr.Progress = PROGRESS,
    ) -> dict:
        progress(None, desc="timing each encoder on this machine (once, then cached)")
        costs = engine.real_costs(state.choice, name, usd_h, watts, float(percent) / 100)
        if costs is None:
            return {c.text: "Search (or press Build) with this cascade first."}
        return {c.text: real_units_summary(costs)}

    inputs = [session, c.profile, c.efficiency, c.price, c.power]
    c.show.click(show_units, inputs, c.text, api_visibility="private", concurrency_id="long")

    def profile_defaults(name: str) -> tuple[gr.Number, gr.Number]:
        row = hardware.accelerators().get(name)
        return gr.Number(row.price_per_hour if row else 0.0), gr.Number(row.power_w if row else 0.0)

    c.profile.change(profile_defaults, c.profile, [c.price, c.power], queue=False, api_visibility="private")
