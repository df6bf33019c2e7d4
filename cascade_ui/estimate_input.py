"""Your estimate on the page: the JSON ``cascade replay --estimate --json`` wrote, taken by the What-if and Cost tabs.

The estimate runs where the index is (it reads millions of rows in place); the page takes what it measured. The
What-if tab sets its alpha, gallery size and ks from it and redraws the cost model at your alpha; the Cost tab
shows the estimate's card and what the cascade would cost at that alpha against re-embedding every image.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

import gradio as gr

from analysis.estimate import LogEstimate
from analysis.estimate_report import MAX_ESTIMATE_BYTES, estimate_figure, read_estimate, summary
from cascade.errors import ConfigError
from cascade_ui.common import guarded

HOW = (
    "Measured your own alpha with `cascade replay --estimate --embeddings YOUR_INDEX --queries-file YOUR_LOG "
    "--levels ... --ks ... --json > estimate.json`? Load that file here."
)


def load(path: str | None) -> LogEstimate:
    """The estimate in the file at ``path`` (an upload), checked; ConfigError says in one line what is wrong."""
    if not path:
        raise ConfigError("no file: load the JSON cascade replay --estimate --json wrote")
    with open(path, "rb") as handle:  # one byte past the bound is enough for read_estimate to refuse it
        return read_estimate(handle.read(MAX_ESTIMATE_BYTES + 1))


def card(result: LogEstimate, adjusted: str = "") -> str:
    """The estimate's summary (the CLI's own lines) as a block of the page, and any note on what was adjusted."""
    note = f"\n\n{adjusted}" if adjusted else ""
    return f"**Your estimate**\n\n<pre>{html.escape(summary(result))}</pre>{note}"


@dataclass(frozen=True)
class SliderRange:
    """A What-if slider's bounds, to say when an estimate's value lies outside them."""

    low: float
    high: float

    def clamp(self, value: float) -> float:
        return min(max(value, self.low), self.high)


def whatif_values(result: LogEstimate, alpha: SliderRange, log_n: SliderRange, k: SliderRange) -> tuple[dict, str]:
    """The What-if sliders an estimate sets (``alpha``, ``log_n``, ``k1``, ``k2``) and a note naming any value
    that had to be brought inside a slider's range ("" when none)."""
    wanted = {
        "alpha": result.alpha,
        "log_n": math.log10(result.images),
        "k1": float(result.ks[0]),
        "k2": float(result.ks[1] if len(result.ks) > 1 else result.ks[0]),
    }
    ranges = {"alpha": alpha, "log_n": log_n, "k1": k, "k2": k}
    values = {name: ranges[name].clamp(value) for name, value in wanted.items()}
    moved = [
        f"{name} {wanted[name]:.4g} shown as {values[name]:.4g}" for name in wanted if values[name] != wanted[name]
    ]
    note = f"Outside the sliders' ranges: {'; '.join(moved)}." if moved else ""
    return values, note


def cost_panel() -> None:
    """The Cost tab's part: load an estimate, see its card and its chart."""
    with gr.Accordion("Your own index: the estimate's alpha", open=False):
        gr.Markdown(HOW)
        file = gr.File(label="estimate.json", file_types=[".json"], elem_id="cost-estimate-file")
        text = gr.Markdown(elem_id="cost-estimate-card")
        figure = gr.Plot(visible=False, elem_id="cost-estimate-plot")

    @guarded(text)
    def show(path: str | None) -> dict:
        result = load(path)
        return {text: card(result), figure: gr.Plot(estimate_figure(result), visible=True)}

    file.upload(show, file, [text, figure], api_visibility="private")
