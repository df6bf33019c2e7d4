"""The Evaluate tab: Recall@1/5/10 of chosen configurations on a dataset, stored, plotted against lifetime cost."""

from __future__ import annotations

import gradio as gr

from analysis import plots
from analysis.engine import Engine, GallerySource
from ui.common import LONG_CONCURRENCY, PROGRESS, Session, guarded, progress_fn
from ui.formatting import evaluation_table

DATASET_LABELS = {"built-in test gallery": "world", "Karpathy dataset on the server": "karpathy"}
YOUR_CASCADE = "your cascade (Search tab)"


def dataset_source(label: str, path: str, root: str) -> GallerySource:
    """The dataset the tab's radio and text boxes name (the Karpathy boxes matter only for that choice)."""
    return GallerySource(DATASET_LABELS[label], path=path or "", image_root=root or "").normalised()


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
    return {"refresh": refresh, "inputs": inputs, "outputs": [status, figure, table]}
