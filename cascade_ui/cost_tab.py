"""The Cost tab: the session's cascade's log as charts, a replay that redraws them live, and resetting the log."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import gradio as gr
import pandas as pd

from analysis import hardware, plots
from analysis.engine import Choice, Engine
from analysis.query_logs import MAX_FILE_BYTES, QueryLog, read_query_log
from analysis.replay import ReplayResult
from analysis.report import Section, build_report, side_by_side_sections
from cascade_ui import side_by_side
from cascade_ui.common import LONG_CONCURRENCY, PROGRESS, Session, describe, guarded, progress_fn, report_file
from cascade_ui.formatting import cost_summary, describe_choice, real_units_summary, replay_done

REPLAY_REFRESH_S = 1.0
# A replay whose page stopped listening (Stop pressed, tab closed) for this long stops itself: Gradio
# cancels the event, but a sync generator's ``finally`` runs only when it is garbage collected.
REPLAY_ABANDONED_S = 5.0


def cost_outputs(engine: Engine, choice: Choice) -> tuple[str, object, object]:
    """(summary markdown, cumulative figure, per-query figure) of the session's cascade, from the log."""
    view = engine.cost_view(choice)
    if view is None:
        note = "Search (or press Build) with this cascade first: the charts read its query log."
        empty = pd.DataFrame()
        return note, plots.cumulative_cost_figure(empty, empty), plots.per_query_figure(empty)
    title = plots.short_config(view.config_key)
    summary = cost_summary(view, engine.measured_alpha(choice))
    cumulative = plots.cumulative_cost_figure(view.cumulative, view.baselines, title)
    return summary, cumulative, plots.per_query_figure(view.per_level)


def cost_report(engine: Engine, choice: Choice, units_text: str = "", compared=None) -> str:
    """The Cost tab as a report: the logged cost (with its real units when shown), and the last side by side."""
    text, cumulative, per_query = cost_outputs(engine, choice)
    view = engine.cost_view(choice)
    tables = () if view is None else (("Each level alone over the gallery", view.baselines),)
    sections = [Section("This cascade's query log", text + ("\n\n" + units_text if units_text else ""),
                        (cumulative, per_query), tables)]  # fmt: skip
    if compared is not None:
        sections += side_by_side_sections(compared)
    inputs = {"cascade": describe_choice(choice), "gallery": choice.gallery.kind, "ks": choice.ks,
              "measured alpha": round(engine.measured_alpha(choice), 4)}  # fmt: skip
    return build_report("Cost: what this cascade spent", inputs, sections)


def cost_tab(engine: Engine, session: gr.State) -> dict:
    """Lay out and wire the tab; returns the three components ``cost_outputs`` fills, for the page to refresh."""
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
    with gr.Row():
        log_file = gr.File(label=f"Your query log: text (one query a line) or CSV/Parquet with a 'query' column "
                                 f"(optional count, timestamp), at most {MAX_FILE_BYTES // 2**20} MiB",
                           file_types=[".txt", ".log", ".csv", ".parquet", ".pq"], type="filepath",
                           elem_id="query-log-file")  # fmt: skip
        file_button = gr.Button("Replay this log", elem_id="replay-file-button")
    replay_status = gr.Markdown(elem_id="replay-status")
    with gr.Row():
        profile = gr.Dropdown([hardware.MEASURED, *hardware.accelerators()], value=hardware.MEASURED,
                              label="Hardware for time, money and energy")  # fmt: skip
        efficiency = gr.Slider(1, 100, value=round(100 * hardware.default_efficiency()), step=1,
                               label="Efficiency (% of dense peak; named hardware only)")  # fmt: skip
        price = gr.Number(0.0, label="Price per hour (USD)", minimum=0)
        power = gr.Number(0.0, label="Power draw (W)", minimum=0)
        units_button = gr.Button("Show in time, money and energy", elem_id="cost-units-button")
    real_units = gr.Markdown(elem_id="cost-real-units")
    figures = [summary, cumulative, per_query]
    compared = side_by_side.panel(engine, session, workload, n_queries, seed)["last"]
    with gr.Row():
        report_button = gr.Button("Download report", elem_id="cost-report-button")
        report = gr.File(label="Report (one HTML file: inputs, charts, tables; opens offline)", visible=False,
                         elem_id="cost-report")  # fmt: skip

    @guarded(replay_status)
    def make_report(state: Session, units_text: str, result):
        document = cost_report(engine, state.choice, units_text, result)
        return {report: gr.File(report_file("cost-report.html", document), visible=True)}

    report_button.click(make_report, [session, real_units, compared], [replay_status, report], api_name="cost_report",
                        api_visibility="undocumented")  # fmt: skip

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

    def run_file(state: Session, path: str | None, progress: gr.Progress = PROGRESS):
        if state.problem:
            yield {replay_status: f"**Replay:** fix the cascade first: {state.problem}"}
            return
        if not path:
            yield {replay_status: "**Replay:** choose a query log file first."}
            return
        try:  # read and checked whole before any query runs: a bad file logs nothing
            log = read_query_log(path)
        except Exception as err:  # noqa: BLE001  (one line in the page, never a traceback)
            yield {replay_status: f"**Replay:** {describe(err)}"}
            return
        yield from replay_updates(engine, state.choice, f"file:{log.name}", len(log.queries), 0, progress, figures,
                                  replay_status, log)  # fmt: skip

    replaying_file = file_button.click(run_file, [session, log_file], [*figures, replay_status],
                                       concurrency_limit=LONG_CONCURRENCY, concurrency_id="long",
                                       api_name="replay_file", api_visibility="undocumented")  # fmt: skip
    stop_button.click(None, None, None, cancels=[replaying, replaying_file], api_visibility="private")
    reset_button.click(lambda: gr.Row(visible=True), None, confirm_row, queue=False, api_visibility="private")
    cancel.click(lambda: gr.Row(visible=False), None, confirm_row, queue=False, api_visibility="private")

    @guarded(replay_status)
    def reset(state: Session):
        deleted = engine.reset_log(state.choice)  # the cascade the charts show
        text, fig_cumulative, fig_per_query = cost_outputs(engine, state.choice)
        return {confirm_row: gr.Row(visible=False), replay_status: f"Deleted {deleted:,} logged queries.",
                summary: text, cumulative: fig_cumulative, per_query: fig_per_query}  # fmt: skip

    @guarded(real_units)
    def show_units(state: Session, name: str, percent: float, usd_h: float | None, watts: float | None,
                   progress: gr.Progress = PROGRESS):  # fmt: skip
        progress(None, desc="timing each encoder on this machine (once, then cached)")
        costs = engine.real_costs(state.choice, name, usd_h, watts, float(percent) / 100)
        if costs is None:
            return {real_units: "Search (or press Build) with this cascade first."}
        return {real_units: real_units_summary(costs)}

    units_button.click(show_units, [session, profile, efficiency, price, power], real_units,
                       api_visibility="private", concurrency_id="long")  # fmt: skip

    def profile_defaults(name: str):
        row = hardware.accelerators().get(name)
        return gr.Number(row.price_per_hour if row else 0.0), gr.Number(row.power_w if row else 0.0)

    profile.change(profile_defaults, profile, [price, power], queue=False, api_visibility="private")
    confirm.click(reset, session, [confirm_row, replay_status, *figures], api_visibility="private")
    return {"summary": summary, "cumulative": cumulative, "per_query": per_query}


@dataclass
class ReplayWatch:
    """What the replay's worker thread tells the generator that redraws the page, and when the page last asked.

    Plain attribute reads and writes: one writer per field, and a stale read only delays a redraw by a poll.
    """

    total: int
    what: str = "queries"
    done: int = 0
    polled: float = field(default_factory=time.monotonic)
    result: ReplayResult | None = None
    error: BaseException | None = None


def replay_updates(engine: Engine, current: Choice, kind: str, n: int, seed: int, progress: gr.Progress,
                   figures: Sequence, status: gr.Markdown, log: QueryLog | None = None) -> Iterator[dict]:  # fmt: skip
    """Run a replay in a worker thread; yield the log's charts every second, then the measured alpha.

    The worker, not this generator, runs the queries: a generator only runs between
    yields, and the page should redraw while the replay is busy. The generator's polls
    are the worker's heartbeat: once they stop (Stop pressed, page closed), it stops.
    """
    stop, watch = threading.Event(), ReplayWatch(total=n)

    def on_query(done, result, cumulative):
        watch.what, watch.done, watch.total = "queries", done, n
        if time.monotonic() - watch.polled > REPLAY_ABANDONED_S:
            stop.set()

    def on_progress(what, done, total):
        watch.what, watch.done, watch.total = what, done, total

    def work():
        try:
            extra = {} if log is None else {"queries": log.queries}  # a synthetic workload: the call as before
            watch.result = engine.replay(current, kind, n, seed, on_query, stop, on_progress, **extra)
        except Exception as err:  # noqa: BLE001  (reported by the generator)
            watch.error = err

    worker = threading.Thread(target=work, name="replay", daemon=True)
    worker.start()
    outputs = [*figures, status]
    try:
        while worker.is_alive():
            worker.join(REPLAY_REFRESH_S)
            watch.polled = time.monotonic()
            progress_fn(progress)(watch.what, watch.done, watch.total)
            where = kind if log is not None else f"{kind}, seed {seed}"
            text = f"Replaying: {watch.done:,} of {n:,} queries ({where})…"
            yield dict(zip(outputs, [*cost_outputs(engine, current), text]))
        verdict = replay_verdict(engine, current, watch)
        if log is not None and log.skipped_empty and watch.error is None:
            verdict += f" {log.skipped_empty:,} empty line(s) of the log skipped."
        yield dict(zip(outputs, [*cost_outputs(engine, current), verdict]))
    finally:
        stop.set()


def replay_verdict(engine: Engine, current: Choice, watch: ReplayWatch) -> str:
    """The status line once the worker ended: its error as one line (and a toast), or the measured alpha."""
    if watch.error is not None:
        message = describe(watch.error)
        gr.Warning(message)
        return f"**Replay:** {message}"
    n_images = len(engine.corpus(current.gallery))  # cached by the replay
    return replay_done(watch.result, engine.measured_alpha(current), current.ks[0], n_images)
