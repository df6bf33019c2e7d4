"""The Evaluate tab: Recall@1/5/10 of chosen configurations on a dataset, stored, plotted against lifetime cost."""

from __future__ import annotations

import gradio as gr

from analysis import plots
from analysis.engine import Engine, GallerySource
from cascade.errors import ConfigError
from cascade_ui.common import LONG_CONCURRENCY, PROGRESS, Session, guarded, progress_fn
from cascade_ui.formatting import evaluation_table

DATASET_LABELS = {
    "built-in test gallery": "world",
    "Flickr30k test split (hub)": "dataset:flickr30k",
    "COCO 5k test split (hub)": "dataset:coco",
    "Karpathy dataset on the server": "karpathy",
}
YOUR_CASCADE = "your cascade (Search tab)"
SWEEP_K1S = (10, 15, 20, 50, 100)


def dataset_source(label: str, path: str, root: str) -> GallerySource:
    """The dataset the tab's radio and text boxes name (the Karpathy boxes matter only for that choice)."""
    kind, _, name = DATASET_LABELS[label].partition(":")
    if kind == "dataset":
        return GallerySource("dataset", path=name)
    return GallerySource(kind, path=path or "", image_root=root or "").normalised()


def evaluate_tab(engine: Engine, session: gr.State) -> dict:
    """Lay out and wire the tab; returns its ``refresh`` handler and its inputs and outputs, for the tab's select."""
    comparisons = {f"{' > '.join(c.levels)} (k {','.join(map(str, c.ks))})": c for c in engine.comparisons()}
    gr.Markdown("Recall@1/5/10 of each configuration (every caption is a query), stored in the database.")
    configs = gr.CheckboxGroup([*comparisons, YOUR_CASCADE], value=list(comparisons)[:2], label="Configurations",
                               elem_id="eval-configs")  # fmt: skip
    with gr.Row():
        dataset = gr.Radio(list(DATASET_LABELS), value="built-in test gallery", label="Dataset")
        json_path = gr.Textbox(label="Karpathy JSON on the server", visible=False)
        image_root = gr.Textbox(label="Its image root", visible=False)
        limit = gr.Slider(10, 10000, value=300, step=10, label="Captions to evaluate (first N)", elem_id="eval-limit")
        recall = gr.Radio(["r1", "r5", "r10"], value="r10", label="Plot")
    run = gr.Button("Evaluate", variant="primary")
    status = gr.Markdown()
    figure = gr.Plot(elem_id="pareto-plot")
    table = gr.Dataframe(label="Evaluations on this dataset")

    @guarded(status)
    def refresh(kind, path, root, which):
        frame = engine.evaluations(dataset_source(kind, path, root))
        return {figure: plots.pareto_figure(frame, which), table: evaluation_table(frame)}

    @guarded(status)
    def run_evaluation(names, kind, path, root, n, which, state: Session, progress: gr.Progress = PROGRESS):
        picked = [state.valid() if name == YOUR_CASCADE else comparisons[name] for name in names or []]
        results = engine.evaluate(picked, dataset_source(kind, path, root), int(n), progress_fn(progress))
        done = {status: f"Evaluated {len(results)} configuration(s) on {results[0].n_queries:,} captions."}
        return {**done, **refresh(kind, path, root, which)}

    dataset.change(lambda d: [gr.Textbox(visible=d != "built-in test gallery")] * 2, dataset, [json_path, image_root],
                   queue=False, api_visibility="private")  # fmt: skip
    inputs = [dataset, json_path, image_root, recall]
    recall.change(refresh, inputs, [status, figure, table], api_visibility="private")
    run.click(run_evaluation, [configs, dataset, json_path, image_root, limit, recall, session],
              [status, figure, table], concurrency_limit=LONG_CONCURRENCY, concurrency_id="long",
              api_visibility="private")  # fmt: skip
    _sweep_panel(engine, [dataset, json_path, image_root, limit])
    return {"refresh": refresh, "inputs": inputs, "outputs": [status, figure, table]}


def _sweep_panel(engine: Engine, dataset_inputs: list) -> None:
    """The k_1 knob: ``[first, last]`` at each k_1, R@1/5/10 and lifetime cost, the smallest k_1 within 1 point."""
    bi, _ = engine.encoder_names()
    preset = engine.preset
    gr.Markdown("**The k_1 sweep.** A two-level cascade at each k_1 against its last level alone (same dataset).")
    with gr.Row():
        first = gr.Dropdown(bi, value=preset.levels[0], label="First level", elem_id="sweep-first")
        last = gr.Dropdown(bi, value=preset.levels[-1] if preset.levels[-1] in bi else bi[-1], label="Last level",
                           elem_id="sweep-last")  # fmt: skip
        k1s = gr.Textbox(", ".join(map(str, SWEEP_K1S)), label="k_1 values (comma-separated, each >= 10)",
                         elem_id="sweep-k1s")  # fmt: skip
        run = gr.Button("Sweep k_1", elem_id="sweep-button")
    status = gr.Markdown(elem_id="sweep-status")
    figure = gr.Plot(elem_id="sweep-plot")
    table = gr.Dataframe(label="Sweep rows", visible=False)

    @guarded(status)
    def sweep(first_name, last_name, values, kind, path, root, n, progress: gr.Progress = PROGRESS):
        try:
            ks = [int(v) for v in str(values).replace(" ", "").split(",") if v]
        except ValueError:
            raise ConfigError(f"k_1 values are whole numbers separated by commas, got {values!r}") from None
        swept = engine.sweep_k1(first_name, last_name, dataset_source(kind, path, root), ks, int(n),
                                progress_fn(progress))  # fmt: skip
        found = (
            f"smallest k_1 within 1 point of {last_name} alone: **{swept.smallest_k1}**"
            if swept.smallest_k1 is not None
            else "no k_1 of the sweep is within 1 point of the last level alone"
        )
        return {status: f"Swept {len(swept.rows)} k_1 values: {found}.", figure: plots.sweep_figure(swept.frame(),
                swept.smallest_k1), table: gr.Dataframe(swept.frame().round(3), visible=True)}  # fmt: skip

    run.click(sweep, [first, last, k1s, *dataset_inputs], [status, figure, table], concurrency_limit=LONG_CONCURRENCY,
              concurrency_id="long", api_name="sweep_k1", api_visibility="undocumented")  # fmt: skip
