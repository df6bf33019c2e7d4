"""The What-if tab: the paper's cost model on Table 1's architectures, and Table 1 itself in both MAC modes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr
import pandas as pd

from analysis import hardware, plots, whatif
from analysis.engine import Engine
from analysis.report import Section, build_report
from analysis.table1 import NOTES
from cascade_ui import estimate_input
from cascade_ui.common import PROGRESS, components, guarded, named_values, report_file
from cascade_ui.formatting import PAPER_ALPHA, real_units_summary, whatif_summary

REPORT_LABEL = "Report (one HTML file: inputs, charts, tables; opens offline)"


@dataclass(frozen=True)
class WhatIfValues:
    """What the tab's controls hold (``WhatIfInputs`` names the component of each field)."""

    family: str
    labels: list[str]
    mode: str
    log_n: float  # gallery size N = 10^log_n images
    alpha: float
    log_q: float  # queries Q = 10^log_q
    k1: float
    k2: float
    profile: str
    efficiency: float  # percent of dense peak
    price: float | None  # USD per hour
    power: float | None  # W

    @property
    def n(self) -> int:
        return int(round(10**self.log_n))

    @property
    def q(self) -> int:
        return int(round(10**self.log_q))

    def model(self, engine: Engine) -> whatif.WhatIf:
        """The cost model these values ask for: both of the tab's handlers call this, never the engine directly."""
        ks = (int(self.k1), int(self.k2))
        return engine.cost_model.whatif(self.family, self.labels, self.mode, self.n, self.alpha, self.q, ks)

    def accelerator(self) -> hardware.HardwareProfile:
        return hardware.accelerator_profile(self.profile, float(self.efficiency) / 100, self.price, self.power)


@dataclass(frozen=True)
class WhatIfInputs:
    """The tab's controls, in the order of the /whatif_report API's parameters (the order they are made in)."""

    family: gr.Dropdown
    labels: gr.CheckboxGroup
    mode: gr.Radio
    log_n: gr.Slider
    alpha: gr.Slider
    log_q: gr.Slider
    k1: gr.Slider
    k2: gr.Slider
    profile: gr.Dropdown
    efficiency: gr.Slider
    price: gr.Number
    power: gr.Number

    def read(self, values: dict) -> WhatIfValues:
        """The values of a handler given these components as a set (``{component: value}``)."""
        return WhatIfValues(**named_values(self, values))

    @property
    def all(self) -> set:
        return set(components(self))


@dataclass(frozen=True)
class WhatIfTab:
    """What the page needs to redraw the tab when it is opened: the handler, its inputs and its outputs."""

    inputs: WhatIfInputs
    outputs: list
    redraw: Callable[[dict], dict]


def whatif_tab(engine: Engine) -> WhatIfTab:
    """Lay out and wire the tab."""
    gr.Markdown("The paper's cost model on real architectures (MACs counted from the architecture, no weights).")
    inputs = _inputs()
    summary = gr.Markdown(elem_id="whatif-summary")
    real_units = gr.Markdown(elem_id="whatif-real-units")
    figure = gr.Plot(elem_id="whatif-plot")
    with gr.Row():
        report_button = gr.Button("Download report", elem_id="whatif-report-button")
        report = gr.File(label=REPORT_LABEL, visible=False, elem_id="whatif-report")

    @guarded(summary)
    def redraw(values: dict, progress: gr.Progress = PROGRESS) -> dict:
        progress(None, desc="counting MACs (first time per encoder: seconds)")
        chosen = inputs.read(values)
        model = chosen.model(engine)
        money = real_units_summary(whatif.real_units(model, chosen.accelerator()), model.break_even)
        text = whatif_summary(model, chosen.n, chosen.alpha, chosen.mode)
        return {summary: text, figure: plots.whatif_figure(model.curves, model.break_even), real_units: money}

    @guarded(summary)
    def make_report(values: dict) -> dict:
        document = whatif_report(engine, inputs.read(values))
        return {report: gr.File(report_file("whatif-report.html", document), visible=True)}

    outputs = [summary, figure, real_units]
    api = {"api_name": "whatif_report", "api_visibility": "undocumented", "concurrency_id": "whatif"}
    report_button.click(make_report, inputs.all, [summary, report], **api)
    changed = [c.change for c in components(inputs)]
    gr.on(
        changed,
        redraw,
        inputs.all,
        outputs,
        api_visibility="private",
        concurrency_id="whatif",
        trigger_mode="always_last",
    )
    _wire_defaults(inputs)
    _estimate(inputs)
    _table1(engine)
    return WhatIfTab(inputs, outputs, redraw)


def _inputs() -> WhatIfInputs:
    families = whatif.families()
    with gr.Row():
        family = gr.Dropdown(families, value=families[0], label="Family")
        encoders = whatif.family_labels(families[0])
        labels = gr.CheckboxGroup(encoders, value=encoders, label="Cascade (cheapest first)")
        mode = gr.Radio(["paper", "full"], value="paper", label="MAC counting")
    with gr.Row():
        log_n = gr.Slider(3, 9, value=6, step=0.1, label="Gallery size N = 10^x images", elem_id="whatif-n")
        alpha = gr.Slider(
            0.001, 1, value=PAPER_ALPHA, step=0.001, label="alpha (share ever reaching level 2)", elem_id="whatif-alpha"
        )
        log_q = gr.Slider(1, 9, value=6, step=0.1, label="Queries Q = 10^x")
    with gr.Row():
        k1 = gr.Slider(1, 1000, value=50, step=1, label="k1 (handed to level 2)")
        k2 = gr.Slider(1, 1000, value=14, step=1, label="k2 (handed to level 3)")
    first = next(iter(hardware.accelerators().values()))
    with gr.Row():
        profile = gr.Dropdown(
            list(hardware.accelerators()), value=first.name, label="Hardware (datasheet dense TFLOPS)"
        )
        efficiency = gr.Slider(
            1,
            100,
            value=round(100 * hardware.default_efficiency()),
            step=1,
            label="Efficiency (% of dense peak)",
            info=hardware.efficiency_note(),
        )
        price = gr.Number(first.price_per_hour, label="Price per hour (USD)", minimum=0)
        power = gr.Number(first.power_w, label="Power draw (W)", minimum=0)
    return WhatIfInputs(family, labels, mode, log_n, alpha, log_q, k1, k2, profile, efficiency, price, power)


def whatif_report(engine: Engine, chosen: WhatIfValues) -> str:
    """The tab as a report: its inputs, the model's text, its chart, per-image costs and break-evens."""
    model, profile = chosen.model(engine), chosen.accelerator()
    values = {
        "family": chosen.family,
        "cascade": " > ".join(model.levels),
        "ks handed on": model.ks,
        "MAC counting": chosen.mode,
        "gallery N": chosen.n,
        "alpha": chosen.alpha,
        "queries Q": chosen.q,
        "hardware": profile.label,
        "price per hour (USD)": chosen.price,
        "power (W)": chosen.power,
    }
    gmacs = pd.DataFrame({"encoder": list(model.image_gmacs), "GMACs per image": list(model.image_gmacs.values())})
    break_even = pd.DataFrame(
        {"encoder alone": list(model.break_even), "break-even query": list(model.break_even.values())}
    )
    tables = (("GMACs per image", gmacs), ("Break-even with each encoder alone (queries)", break_even))
    money = real_units_summary(whatif.real_units(model, profile), model.break_even)
    text = whatif_summary(model, chosen.n, chosen.alpha, chosen.mode) + "\n\n" + money
    section = Section("The cost model", text, (plots.whatif_figure(model.curves, model.break_even),), tables)
    return build_report("What-if: the cost model", values, [section])


def _wire_defaults(inputs: WhatIfInputs) -> None:
    """A hardware profile brings its price and power; a family, its encoders (all ticked)."""
    quick = {"queue": False, "api_visibility": "private"}

    def profile_defaults(name: str) -> tuple[gr.Number, gr.Number]:
        row = hardware.accelerators()[name]
        return gr.Number(row.price_per_hour), gr.Number(row.power_w)

    inputs.profile.change(profile_defaults, inputs.profile, [inputs.price, inputs.power], **quick)

    def family_encoders(title: str) -> gr.CheckboxGroup:
        return gr.CheckboxGroup(choices=whatif.family_labels(title), value=whatif.family_labels(title))

    inputs.family.change(family_encoders, inputs.family, inputs.labels, **quick)


def _estimate(inputs: WhatIfInputs) -> None:
    """Your own alpha: an estimate's JSON sets alpha, N and the ks (the sliders' change redraws the model)."""
    with gr.Accordion("Your own index: take the alpha your log measured", open=False):
        gr.Markdown(estimate_input.HOW)
        file = gr.File(label="estimate.json", file_types=[".json"], elem_id="whatif-estimate-file")
        text = gr.Markdown(elem_id="whatif-estimate-card")

    def slider(component: gr.Slider) -> estimate_input.SliderRange:
        return estimate_input.SliderRange(component.minimum, component.maximum)

    @guarded(text)
    def take(path: str | None) -> dict:
        result = estimate_input.load(path)
        ranges = slider(inputs.alpha), slider(inputs.log_n), slider(inputs.k1)
        values, note = estimate_input.whatif_values(result, *ranges)
        sliders = {getattr(inputs, name): value for name, value in values.items()}
        return {**sliders, text: estimate_input.card(result, note)}

    outputs = [inputs.alpha, inputs.log_n, inputs.k1, inputs.k2, text]
    file.upload(take, file, outputs, api_visibility="private")


def _table1(engine: Engine) -> None:
    """Table 1 in both MAC modes, counted on demand (seconds, once per run)."""
    button = gr.Button("Show Table 1 (both MAC modes)")
    notes = gr.Markdown()
    paper_table = gr.Dataframe(label="MACs: paper (THOP, as printed)", visible=False)
    full_table = gr.Dataframe(label="MACs: full (attention counted)", visible=False)

    @guarded(notes)
    def show_tables(progress: gr.Progress = PROGRESS) -> dict:
        progress(None, desc="counting MACs of every Table 1 encoder, both modes (once per run)")
        paper, full = engine.cost_model.table1("paper"), engine.cost_model.table1("full")
        return {
            paper_table: gr.Dataframe(whatif.table1_frame(paper), visible=True),
            full_table: gr.Dataframe(whatif.table1_frame(full), visible=True),
            notes: f"**Why the two modes differ.** {NOTES['paper']}\n\n{NOTES['full']}",
        }

    button.click(show_tables, None, [paper_table, full_table, notes], api_visibility="private", concurrency_id="long")
