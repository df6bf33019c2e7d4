"""A report to hand on: one self-contained HTML file with the inputs, the charts and the tables.

Inputs, figures and tables in, an HTML string out; the caller writes the file. The
file reads offline: plotly.js is inlined once (no CDN), each chart is a plotly div
with its data as plain JSON lists (plotly's own JSON packs numbers as base64
typed arrays, which nobody can read or grep in a report), and every string a
user supplied (queries, file names, encoder names, table cells) is escaped.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analysis import plots, recall_plots
from analysis.evaluate import EvalResult
from analysis.replay import ReplayResult
from analysis.side_by_side import SideBySide
from analysis.sweep import K1Sweep

_BOLD = re.compile(r"\*\*(.+?)\*\*")
_END_SCRIPT = re.compile(r"</(script)", re.IGNORECASE)
_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; } th { background: #f3f3f3; }
td:first-child, th:first-child { text-align: left; }
.note { color: #555; font-size: 0.9em; } .chart { margin: 1em 0; }
"""


@dataclass(frozen=True)
class Section:
    """One part of a report: a heading, some text (``**bold**`` kept, the rest escaped), charts, tables.

    Attributes:
        tables: ``(caption, frame)`` pairs; cells are escaped, floats shown with 4 significant digits.
    """

    heading: str
    text: str = ""
    figures: tuple[go.Figure, ...] = ()
    tables: tuple[tuple[str, pd.DataFrame], ...] = field(default_factory=tuple)


def build_report(title: str, inputs: Mapping[str, object], sections: Sequence[Section], note: str = "") -> str:
    """The whole report as one HTML document (plotly.js inlined, about 5 MB).

    Args:
        title: the page's title and heading.
        inputs: what produced the report (name -> value), shown first as a table.
        sections: the report's parts, in order.
        note: a line under the title (e.g. the command that made it).
    """
    from plotly.offline import get_plotlyjs  # 4.8 MB of JavaScript: only when a report is made

    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="note">Made {stamp}. {_text(note)}</p>',
        "<h2>Inputs</h2>",
        _inputs_table(inputs),
    ]
    counter = iter(range(1, 10_000))
    for section in sections:
        parts.append(f"<h2>{html.escape(section.heading)}</h2>")
        if section.text:
            parts.append(f"<p>{_text(section.text)}</p>")
        parts.extend(_figure_div(figure, f"chart-{next(counter)}") for figure in section.figures)
        parts.extend(_table(caption, frame) for caption, frame in section.tables)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style>"
        f"<script>{_script_safe(get_plotlyjs())}</script></head>\n<body>\n" + "\n".join(parts) + "\n</body></html>\n"
    )


def figure_data(figure: go.Figure) -> dict:
    """The figure as plain JSON-ready data: plotly's base64 typed arrays decoded to lists."""
    return _plain(figure.to_plotly_json())


# ---------------------------------------------------------------- pieces


def _text(text: str) -> str:
    escaped = html.escape(text)
    return _BOLD.sub(r"<b>\1</b>", escaped).replace("\n\n", "</p><p>").replace("\n", "<br>")


def _inputs_table(inputs: Mapping[str, object]) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_cell(v))}</td></tr>" for k, v in inputs.items()
    )
    return f'<table class="inputs">{rows}</table>'


def _table(caption: str, frame: pd.DataFrame) -> str:
    shown = frame.map(_cell) if not frame.empty else frame
    body = shown.to_html(index=False, escape=True, border=0, na_rep="")
    return f"<figure><figcaption>{html.escape(caption)}</figcaption>{body}</figure>"


def _cell(value: object) -> str:
    if isinstance(value, float | np.floating):
        return "" if np.isnan(value) else f"{value:,.4g}" if abs(value) < 1e6 else f"{value:,.4e}"
    if isinstance(value, list | tuple):
        return ", ".join(_cell(v) for v in value)
    if value is None:
        return ""
    return str(value)


def _figure_div(figure: go.Figure, div_id: str) -> str:
    data = figure_data(figure)
    config = {"displaylogo": False, "responsive": True}
    payload = ", ".join(_json_script(part) for part in (data.get("data", []), data.get("layout", {}), config))
    return (
        f'<div class="chart"><div id="{div_id}" class="plotly-graph-div" style="height:420px;width:100%"></div>'
        f'<script>Plotly.newPlot("{div_id}", {payload});</script></div>'
    )


def _script_safe(text: str) -> str:
    """JavaScript that cannot end its ``<script>`` early (plotly.js holds no ``</script``; this keeps it so)."""
    return _END_SCRIPT.sub(r"<\\/\1", text)


def _json_script(value: object) -> str:
    """JSON safe inside ``<script>``: ``<``, ``>`` and ``&`` as JSON's own escapes, so user text cannot break out."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _plain(value: object) -> object:
    if isinstance(value, dict):
        if "bdata" in value and "dtype" in value:
            array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
            shape = value.get("shape")
            if shape:
                array = array.reshape([int(n) for n in str(shape).split(",")])
            return _plain(array)
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None  # JSON has no NaN: plotly reads null as a gap
    if isinstance(value, pd.Timestamp | datetime):
        return value.isoformat()
    return value


# ---------------------------------------------------------------- what the CLI and the tabs hand on


def replay_sections(result: ReplayResult) -> list[Section]:
    """A replay's cumulative cost against each level alone, and its measured figures."""
    curve = pd.DataFrame(
        {"query_index": range(len(result.curve_image_macs)), "cumulative_image_macs": result.curve_image_macs}
    )
    baselines = pd.DataFrame({"encoder_id": list(result.baselines), "image_macs": list(result.baselines.values())})
    row = result.as_json()
    figures = pd.DataFrame(
        [
            {
                "workload": row["workload"],
                "queries": row["queries"],
                "distinct queries": row["distinct_queries"],
                "alpha": row["alpha"],
                "cascade image MACs": row["cascade_image_macs"],
                "last level alone image MACs": row["baseline_image_macs"],
                "reduction (x)": row["reduction"],
            }
        ]
    )
    break_even = pd.DataFrame(
        [{"encoder alone": k, "break-even query (0 = build)": v} for k, v in result.break_even().items()]
    )
    return [
        Section(
            "Measured cost",
            figures=(plots.cumulative_cost_figure(curve, baselines),),
            tables=(("Measured", figures), ("Break-even with each encoder alone", break_even)),
        )
    ]


def evaluation_sections(rows: Sequence[EvalResult]) -> list[Section]:
    """Recall against lifetime cost of evaluated configurations, and the table of them."""
    frame = pd.DataFrame(
        [
            {
                "config_key": ">".join(r.levels) + "|" + ",".join(map(str, r.ks)),
                **{f"r{k}": value for k, value in r.recall.items()},
                "image_macs": r.image_macs,
                "alpha": r.alpha,
                "images": r.n_images,
                "queries": r.n_queries,
            }
            for r in rows
        ]
    )
    table = frame.assign(config_key=[plots.short_config(k) for k in frame["config_key"]]).rename(
        columns={
            "config_key": "configuration",
            "r1": "R@1 (%)",
            "r5": "R@5 (%)",
            "r10": "R@10 (%)",
            "image_macs": "lifetime image MACs",
        }
    )
    return [
        Section(
            "Recall against lifetime cost",
            figures=(recall_plots.pareto_figure(frame, "r10"),),
            tables=(("Evaluations", table),),
        )
    ]


def sweep_sections(sweep: K1Sweep) -> list[Section]:
    """The k_1 sweep's chart (the smallest k_1 within 1 point marked) and its rows."""
    frame = sweep.frame()
    text = (
        f"Smallest k_1 within 1 point of the last level alone on R@1, R@5 and R@10: **{sweep.smallest_k1}**."
        if sweep.smallest_k1 is not None
        else "No k_1 of the sweep is within 1 point of the last level alone."
    )
    return [
        Section(
            "The k_1 sweep",
            text,
            figures=(recall_plots.sweep_figure(frame, sweep.smallest_k1),),
            tables=(("Rows (recall in percent)", frame),),
        )
    ]


def side_by_side_sections(result: SideBySide) -> list[Section]:
    """Measured and modelled cumulative cost of each configuration, the first queries' cost, and the ratios."""
    text = (
        "Every configuration replayed the same queries from a fresh start. Table 1 (the paper) claims the deep "
        "cascades' early-query saving against [first, last] at 1.75x (ViT [B/16, L/14, g/14]) and 1.97x "
        "(ConvNeXt [B, L, XXL]); the Eq. 1 column is the cost model's prediction for these ks."
    )
    return [
        Section(
            "Cascades side by side",
            text,
            figures=(
                plots.side_by_side_cumulative_figure(result.curves(), result.baselines_frame()),
                plots.side_by_side_per_query_figure(result.per_query()),
            ),
            tables=(("Per configuration", result.table()),),
        )
    ]
