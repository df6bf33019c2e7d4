"""An estimate as people read it: its text (the CLI's summary, the page's card), its chart, and its JSON read back.

``cascade replay --estimate --json`` writes ``LogEstimate.as_json()``; a stakeholder who ran it on the machine
that holds the index brings that file to the page, whose What-if and Cost tabs take its measured alpha
(``read_estimate``). Both faces print the same ``summary``.
"""

from __future__ import annotations

import json
import math
from dataclasses import fields

import plotly.graph_objects as go

from analysis.estimate import Cost, LevelImages, LogEstimate
from analysis.plots import _HEIGHT_PX, CASCADE_COLOUR, LEVEL_COLOURS
from cascade import units
from cascade.errors import ConfigError

MAX_ESTIMATE_BYTES = 1 << 20  # an estimate's JSON is a few kilobytes; anything near this is not one
_COSTS = ("build", "first_query", "lifetime_level1_paid", "lifetime_from_scratch", "top_alone")


def _cost(cost: Cost) -> str:
    gmacs = units.gmacs(cost.macs)
    shown = f"{gmacs:,.1f}" if gmacs >= 10 else f"{gmacs:.3g}"
    return f"{shown} GMACs, {cost.seconds:,.3g} s, ${cost.dollars:,.3g}, {cost.kwh:,.3g} kWh"


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _alpha(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def summary(result: LogEstimate) -> str:
    """A short readable account of an estimate (``--json`` prints every field), one fact a line."""
    bound = " (levels 3+: an upper bound)" if result.upper_bound else ""
    break_even = [_alpha(result.break_even_alpha(paid)) for paid in (True, False)]
    lines = [
        f"alpha {result.alpha:.4f}: {result.queries:,} queries ({result.distinct_queries:,} distinct) hand "
        f"{result.handed:,} of {result.images:,} images to level 2 (ks {list(result.ks)})",
        f"level 1 {result.levels[0]}: text encoding {result.text_encoding_s:.1f} s, ranking {result.level1_s:.1f} s",
        f"on {result.hardware}, {result.hardware_label}:",
        f"  lifetime, level 1 already paid: {_cost(result.lifetime_level1_paid)}{bound}",
        f"  lifetime, from scratch:         {_cost(result.lifetime_from_scratch)}{bound}",
        f"  first query:                    {_cost(result.first_query)}",
        f"  {result.levels[-1]} alone over every image: {_cost(result.top_alone)}",
        f"  saving {_times(result.reduction(True))} with level 1 paid, {_times(result.reduction(False))} from "
        f"scratch; break-even alpha {break_even[0]} and {break_even[1]}",
    ]
    return "\n".join(lines)


def read_estimate(data: bytes | str) -> LogEstimate:
    """The estimate ``cascade replay --estimate --json`` wrote, read back.

    Raises:
        ConfigError: one line: too large, not JSON, or not an estimate (a field missing or of the wrong kind).
    """
    if len(data) > MAX_ESTIMATE_BYTES:
        raise ConfigError(f"an estimate is a small JSON file; this one is over {MAX_ESTIMATE_BYTES:,} bytes")
    try:
        row = json.loads(data)
    except (ValueError, UnicodeDecodeError) as err:
        raise ConfigError(f"not an estimate (cascade replay --estimate --json writes one): {err}") from None
    try:
        return _from_row(row)
    except (KeyError, TypeError, ValueError) as err:
        raise ConfigError(f"not an estimate (cascade replay --estimate --json writes one): bad or no {err}") from None


_COUNTS = ("queries", "distinct_queries", "images", "handed")
_FLOATS = ("alpha", "text_encoding_s", "level1_s")


def _from_row(row: dict) -> LogEstimate:
    """The estimate a JSON object holds, each field as the estimate holds it (JSON gives lists for tuples, and
    ints that may be floats). Raises KeyError, TypeError or ValueError naming what is wrong."""
    values = {f.name: row[f.name] for f in fields(LogEstimate) if f.name not in (*_COSTS, "level_images")}
    values |= {"levels": tuple(map(str, values["levels"])), "ks": tuple(int(k) for k in values["ks"])}
    values |= {name: int(values[name]) for name in _COUNTS} | {name: float(values[name]) for name in _FLOATS}
    if not all(math.isfinite(values[name]) for name in _FLOATS):
        raise ValueError("alpha")
    if not (0 <= values["alpha"] <= 1 and 0 < values["images"] and len(values["ks"]) == len(values["levels"]) - 1):
        raise ValueError("alpha, images or ks")
    costs = {
        name: Cost(**{key: float(row[name][key]) for key in ("macs", "seconds", "dollars", "kwh")}) for name in _COSTS
    }
    levels = tuple(LevelImages(**level) for level in row["level_images"])
    return LogEstimate(**values, **costs, level_images=levels)


def estimate_figure(result: LogEstimate) -> go.Figure:
    """What the cascade costs at the measured alpha against re-embedding every image with the top model, in GMACs
    (log scale: a first query and a lifetime differ by orders of magnitude)."""
    bound = " (upper bound)" if result.upper_bound else ""
    bars = [
        ("first query", result.first_query, LEVEL_COLOURS[1 % len(LEVEL_COLOURS)]),
        (f"lifetime, level 1 paid{bound}", result.lifetime_level1_paid, CASCADE_COLOUR),
        (f"lifetime, from scratch{bound}", result.lifetime_from_scratch, CASCADE_COLOUR),
        (f"{result.levels[-1]} alone, every image", result.top_alone, LEVEL_COLOURS[0]),
    ]
    figure = go.Figure(
        go.Bar(
            x=[units.gmacs(cost.macs) for _, cost, _ in bars],
            y=[name for name, _, _ in bars],
            orientation="h",
            marker_color=[colour for _, _, colour in bars],
            text=[f"{units.gmacs(cost.macs):,.3g} GMACs, ${cost.dollars:,.3g}" for _, cost, _ in bars],
            textposition="auto",
        )
    )
    figure.update_layout(
        title=f"Your log: alpha {result.alpha:.4f} over {result.images:,} images",
        xaxis={"title": "image GMACs", "type": "log"},
        yaxis={"autorange": "reversed"},
        height=_HEIGHT_PX,
    )
    return figure
