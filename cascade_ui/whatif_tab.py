"""The What-if tab: the paper's cost model on Table 1's architectures, and Table 1 itself in both MAC modes."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from analysis import hardware, plots, whatif
from analysis.engine import Engine
from analysis.report import Section, build_report
from analysis.table1 import NOTES
from cascade_ui.common import PROGRESS, guarded, report_file
from cascade_ui.formatting import PAPER_ALPHA, real_units_summary, whatif_summary


def whatif_tab(engine: Engine) -> dict:
    """Lay out and wire the tab; returns its ``update`` handler and its inputs and outputs, for the tab's select."""
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
    profiles = hardware.accelerators()
    first_profile = next(iter(profiles.values()))
    with gr.Row():
        profile = gr.Dropdown(list(profiles), value=first_profile.name, label="Hardware (datasheet dense TFLOPS)")
        efficiency = gr.Slider(1, 100, value=round(100 * hardware.default_efficiency()), step=1,
                               label="Efficiency (% of dense peak)", info=hardware.efficiency_note())  # fmt: skip
        price = gr.Number(first_profile.price_per_hour, label="Price per hour (USD)", minimum=0)
        power = gr.Number(first_profile.power_w, label="Power draw (W)", minimum=0)
    summary = gr.Markdown(elem_id="whatif-summary")
    real_units = gr.Markdown(elem_id="whatif-real-units")
    figure = gr.Plot(elem_id="whatif-plot")
    with gr.Row():
        report_button = gr.Button("Download report", elem_id="whatif-report-button")
        report = gr.File(label="Report (one HTML file: inputs, charts, tables; opens offline)", visible=False,
                         elem_id="whatif-report")  # fmt: skip
    table_button = gr.Button("Show Table 1 (both MAC modes)")
    tables = gr.Markdown()
    paper_table = gr.Dataframe(label="MACs: paper (THOP, as printed)", visible=False)
    full_table = gr.Dataframe(label="MACs: full (attention counted)", visible=False)

    inputs = [family, labels, mode, log_n, alpha, log_q, k1, k2, profile, efficiency, price, power]

    @guarded(summary)
    def update(family_title, chosen, macs_mode, x_n, a, x_q, first_k, second_k, profile_name, percent, usd_h, watts,
               progress: gr.Progress = PROGRESS):  # fmt: skip
        progress(None, desc="counting MACs (first time per encoder: seconds)")
        n, q = int(round(10**x_n)), int(round(10**x_q))
        model = engine.cost_model.whatif(family_title, chosen, macs_mode, n, a, q, (int(first_k), int(second_k)))
        plot = plots.whatif_figure(model.curves, model.break_even)
        chosen_profile = hardware.accelerator_profile(profile_name, float(percent) / 100, usd_h, watts)
        money = real_units_summary(whatif.real_units(model, chosen_profile), model.break_even)
        return {summary: whatif_summary(model, n, a, macs_mode), figure: plot, real_units: money}

    outputs = [summary, figure, real_units]

    @guarded(summary)
    def make_report(family_title, chosen, macs_mode, x_n, a, x_q, first_k, second_k, profile_name, percent, usd_h,
                    watts):  # fmt: skip
        n, q = int(round(10**x_n)), int(round(10**x_q))
        model = engine.cost_model.whatif(family_title, chosen, macs_mode, n, a, q, (int(first_k), int(second_k)))
        chosen_profile = hardware.accelerator_profile(profile_name, float(percent) / 100, usd_h, watts)
        values = {"family": family_title, "cascade": " > ".join(model.levels), "ks handed on": model.ks,
                  "MAC counting": macs_mode, "gallery N": n, "alpha": a, "queries Q": q,
                  "hardware": chosen_profile.label,
                  "price per hour (USD)": usd_h, "power (W)": watts}  # fmt: skip
        tables = (("GMACs per image", pd.DataFrame({"encoder": list(model.image_gmacs),
                                                    "GMACs per image": list(model.image_gmacs.values())})),
                  ("Break-even with each encoder alone (queries)",
                   pd.DataFrame({"encoder alone": list(model.break_even),
                                 "break-even query": list(model.break_even.values())})))  # fmt: skip
        text = (
            whatif_summary(model, n, a, macs_mode)
            + "\n\n"
            + real_units_summary(whatif.real_units(model, chosen_profile), model.break_even)
        )
        section = Section("The cost model", text, (plots.whatif_figure(model.curves, model.break_even),), tables)
        document = build_report("What-if: the cost model", values, [section])
        return {report: gr.File(report_file("whatif-report.html", document), visible=True)}

    report_button.click(make_report, inputs, [summary, report], api_name="whatif_report",
                        api_visibility="undocumented", concurrency_id="whatif")  # fmt: skip
    gr.on([c.change for c in inputs], update, inputs, outputs, api_visibility="private",
          concurrency_id="whatif", trigger_mode="always_last")  # fmt: skip

    def profile_defaults(name: str):
        row = profiles[name]
        return gr.Number(row.price_per_hour), gr.Number(row.power_w)

    profile.change(profile_defaults, profile, [price, power], queue=False, api_visibility="private")

    def family_encoders(title: str) -> gr.CheckboxGroup:
        return gr.CheckboxGroup(choices=whatif.family_labels(title), value=whatif.family_labels(title))

    family.change(family_encoders, family, labels, queue=False, api_visibility="private")

    @guarded(tables)
    def show_tables(progress: gr.Progress = PROGRESS):
        progress(None, desc="counting MACs of every Table 1 encoder, both modes (once per run)")
        paper, full = engine.cost_model.table1("paper"), engine.cost_model.table1("full")
        return {paper_table: gr.Dataframe(whatif.table1_frame(paper), visible=True),
                full_table: gr.Dataframe(whatif.table1_frame(full), visible=True),
                tables: f"**Why the two modes differ.** {NOTES['paper']}\n\n{NOTES['full']}"}  # fmt: skip

    table_button.click(show_tables, None, [paper_table, full_table, tables], api_visibility="private",
                       concurrency_id="long")  # fmt: skip
    return {"update": update, "inputs": inputs, "outputs": outputs}
