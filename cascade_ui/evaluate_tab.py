"""The Evaluate tab: Recall@1/5/10 of chosen configurations on a dataset, stored, plotted against lifetime cost."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr

from analysis import recall_plots
from analysis.engine import Engine, GalleryKind, GallerySource
from analysis.galleries import resolved
from cascade.errors import ConfigError
from cascade_ui.common import LONG_CONCURRENCY, PROGRESS, guarded, progress_fn
from cascade_ui.controls import filled
from cascade_ui.formatting import evaluation_table

# Each dataset the radio offers, as the source it opens; a Karpathy dataset's files come from the boxes.
DATASETS = {
    "built-in test gallery": GallerySource(GalleryKind.WORLD),
    "Flickr30k test split (hub)": GallerySource(GalleryKind.DATASET, path="flickr30k"),
    "COCO 5k test split (hub)": GallerySource(GalleryKind.DATASET, path="coco"),
    "Karpathy dataset on the server": GallerySource(GalleryKind.KARPATHY),
}
DEFAULT_DATASET = "built-in test gallery"
YOUR_CASCADE = "your cascade (Search tab)"
SWEEP_K1S = (10, 15, 20, 50, 100)
LONG = {"concurrency_limit": LONG_CONCURRENCY, "concurrency_id": "long"}


def dataset_choices(engine: Engine) -> list[tuple[str, str]]:
    """The radio's ``(label, value)`` pairs: the preset's own gallery named as the engine names it (a hub preset's:
    ``Flickr30k test split, 1,000 images``), and no second entry for the same gallery (one gallery, one choice)."""
    world = DATASETS[DEFAULT_DATASET]
    own = resolved(world, engine.preset)
    named = engine.galleries.name(world) or DEFAULT_DATASET
    return [
        (named if value == DEFAULT_DATASET else value, value)
        for value, source in DATASETS.items()
        if value == DEFAULT_DATASET or resolved(source, engine.preset) != own
    ]


def dataset_source(label: str, path: str | None, root: str | None) -> GallerySource:
    """The dataset the tab's radio and text boxes name (the Karpathy boxes matter only for that choice)."""
    return filled(DATASETS[label], path=path, image_root=root)


@dataclass(frozen=True)
class DatasetInputs:
    """The dataset radio and the Karpathy dataset's two boxes (shown only for it)."""

    label: gr.Radio
    json_path: gr.Textbox
    image_root: gr.Textbox

    def source(self, values: dict) -> GallerySource:
        """The dataset of a handler given these components in a set (``{component: value}``)."""
        return dataset_source(values[self.label], values[self.json_path], values[self.image_root])


@dataclass(frozen=True)
class EvaluateTab:
    """What the page needs to redraw the tab when it is opened: the handler, its inputs and its outputs."""

    inputs: set
    outputs: list
    redraw: Callable[[dict], dict]


def comparisons_of(engine: Engine) -> dict:
    """The preset's comparisons by the label the tab shows, read when used: a Space whose preparation failed
    switches the engine to ``shapes`` after the page was built, and its comparisons with it."""
    return {f"{' > '.join(c.levels)} (k {','.join(map(str, c.ks))})": c for c in engine.comparisons()}


def evaluate_tab(engine: Engine, session: gr.State) -> EvaluateTab:
    """Lay out and wire the tab."""
    comparisons = comparisons_of(engine)
    gr.Markdown("Recall@1/5/10 of each configuration (every caption is a query), stored in the database.")
    configs = gr.CheckboxGroup(
        [*comparisons, YOUR_CASCADE], value=list(comparisons)[:2], label="Configurations", elem_id="eval-configs"
    )
    with gr.Row():
        dataset = DatasetInputs(
            gr.Radio(dataset_choices(engine), value=DEFAULT_DATASET, label="Dataset"),
            gr.Textbox(label="Karpathy JSON on the server", visible=False),
            gr.Textbox(label="Its image root", visible=False),
        )
        limit = gr.Slider(10, 10000, value=300, step=10, label="Captions to evaluate (first N)", elem_id="eval-limit")
        recall = gr.Radio(["r1", "r5", "r10"], value="r10", label="Plot")
    run = gr.Button("Evaluate", variant="primary")
    status = gr.Markdown()
    figure = gr.Plot(elem_id="pareto-plot")
    table = gr.Dataframe(label="Evaluations on this dataset", elem_id="eval-table")

    @guarded(status)
    def redraw(values: dict) -> dict:
        frame = engine.evaluations(dataset.source(values))
        offered = [*comparisons_of(engine), YOUR_CASCADE]
        kept = [name for name in values[configs] or [] if name in offered] or offered[:2]
        return {
            figure: recall_plots.pareto_figure(frame, values[recall]),
            table: evaluation_table(frame),
            configs: gr.CheckboxGroup(choices=offered, value=kept),
        }

    @guarded(status)
    def run_evaluation(values: dict, progress: gr.Progress = PROGRESS) -> dict:
        state, now = values[session], comparisons_of(engine)
        picked = [state.valid() if name == YOUR_CASCADE else _offered(now, name) for name in values[configs] or []]
        results = engine.evaluate(picked, dataset.source(values), int(values[limit]), progress_fn(progress))
        done = {status: f"Evaluated {len(results)} configuration(s) on {results[0].n_queries:,} captions."}
        return {**done, **redraw(values)}

    karpathy = [dataset.json_path, dataset.image_root]
    dataset.label.change(_karpathy_boxes, dataset.label, karpathy, queue=False, api_visibility="private")
    inputs, outputs = {dataset.label, *karpathy, recall, configs}, [status, figure, table, configs]
    recall.change(redraw, inputs, outputs, api_visibility="private")
    run.click(run_evaluation, {configs, session, limit, *inputs}, outputs, api_visibility="private", **LONG)
    _sweep_panel(engine, dataset, limit)
    return EvaluateTab(inputs, outputs, redraw)


def _sweep_panel(engine: Engine, dataset: DatasetInputs, limit: gr.Slider) -> None:
    """The k_1 knob: ``[first, last]`` at each k_1, R@1/5/10 and lifetime cost, the smallest k_1 within 1 point."""
    bi, _ = engine.encoder_names()
    preset = engine.preset
    gr.Markdown("**The k_1 sweep.** A two-level cascade at each k_1 against its last level alone (same dataset).")
    with gr.Row():
        first = gr.Dropdown(bi, value=preset.levels[0], label="First level", elem_id="sweep-first")
        last_name = preset.levels[-1] if preset.levels[-1] in bi else bi[-1]
        last = gr.Dropdown(bi, value=last_name, label="Last level", elem_id="sweep-last")
        k1s_label = "k_1 values (comma-separated, each >= 10)"
        k1s = gr.Textbox(", ".join(map(str, SWEEP_K1S)), label=k1s_label, elem_id="sweep-k1s")
        run = gr.Button("Sweep k_1", elem_id="sweep-button")
    status = gr.Markdown(elem_id="sweep-status")
    figure = gr.Plot(elem_id="sweep-plot")
    table = gr.Dataframe(label="Sweep rows", visible=False)

    # Positional: the /sweep_k1 API's parameters are these, in this order.
    @guarded(status)
    def sweep(first_name, last_name, values, label, path, root, n, progress: gr.Progress = PROGRESS) -> dict:
        ks = _k1_values(values)
        source = dataset_source(label, path, root)
        swept = engine.sweep_k1(first_name, last_name, source, ks, int(n), progress_fn(progress))
        found = f"smallest k_1 within 1 point of {last_name} alone: **{swept.smallest_k1}**"
        if swept.smallest_k1 is None:
            found = "no k_1 of the sweep is within 1 point of the last level alone"
        return {
            status: f"Swept {len(swept.rows)} k_1 values: {found}.",
            figure: recall_plots.sweep_figure(swept.frame(), swept.smallest_k1),
            table: gr.Dataframe(swept.frame().round(3), visible=True),
        }

    def offered(name: str | None) -> gr.Dropdown:  # the engine's encoders now (a Space may have switched preset)
        names, _ = engine.encoder_names()
        return gr.Dropdown(choices=names, value=name if name in names else names[0])

    for box in (first, last):
        box.focus(offered, box, box, queue=False, api_visibility="private")
    inputs = [first, last, k1s, dataset.label, dataset.json_path, dataset.image_root, limit]
    run.click(sweep, inputs, [status, figure, table], api_name="sweep_k1", api_visibility="undocumented", **LONG)


def _offered(comparisons: dict, name: str):
    if name not in comparisons:
        raise ConfigError(f"{name} is not a configuration of this preset any more: open the tab again to see its own")
    return comparisons[name]


def _karpathy_boxes(label: str) -> list[gr.Textbox]:
    return [gr.Textbox(visible=DATASETS[label].kind is GalleryKind.KARPATHY)] * 2


def _k1_values(text: str) -> list[int]:
    try:
        return [int(v) for v in str(text).replace(" ", "").split(",") if v]
    except ValueError:
        raise ConfigError(f"k_1 values are whole numbers separated by commas, got {text!r}") from None
