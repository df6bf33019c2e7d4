"""The app's charts: a frame in, a plotly figure out; no database, no file, no Gradio.

Every figure plots MACs as plain counts so plotly's SI ticks read naturally
(``40M``, ``1.2G``, ``3T``): the shapes family costs millions per image, the
paper's encoders tens of billions, and one axis style serves both.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

CASCADE_COLOUR = "#d62728"
BASELINE_COLOURS = ("#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#17becf")
# Baselines of equal cost draw on top of each other (a cross-encoder built on the large tower costs what it
# costs per image); a dash pattern each keeps both visible.
BASELINE_DASHES = ("dash", "dot", "dashdot", "longdash", "longdashdot")
LEVEL_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b")
_HEIGHT_PX = 380
_WEIGHTS_SUFFIX = re.compile(r"@[0-9a-f]{8,}$")  # content digests of weights: noise in a legend


def short_encoder(encoder_id: str) -> str:
    """``shapes:small@3fa2...`` -> ``shapes:small``: weight digests are for the log, not for legends."""
    return _WEIGHTS_SUFFIX.sub("", encoder_id)


def short_config(config_key: str, drop_backend: bool = False) -> str:
    """``a@d1>b@d2|100,10`` -> ``a > b (k 100,10)``; ``drop_backend``: ``shapes:small`` -> ``small`` (dense plots)."""
    levels, _, ks = config_key.partition("|")
    names = [short_encoder(level) for level in levels.split(">")]
    if drop_backend:
        names = [name.partition(":")[2] or name for name in names]
    return f"{' > '.join(names)} (k {ks})" if ks else " > ".join(names)


def _empty(title: str, message: str) -> go.Figure:
    figure = go.Figure()
    figure.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    figure.update_layout(title=title, height=_HEIGHT_PX, xaxis_visible=False, yaxis_visible=False)
    return figure


# ---------------------------------------------------------------- measured cost (the query log)


def break_even_index(cumulative_macs: Sequence[float], baseline_macs: float) -> int | None:
    """First query index (0 = build) at which the cascade has spent at least ``baseline_macs``; None if never."""
    reached = np.flatnonzero(np.asarray(cumulative_macs, dtype=np.float64) >= baseline_macs)
    return int(reached[0]) if len(reached) else None


def cumulative_cost_figure(
    cumulative: pd.DataFrame, baselines: pd.DataFrame, title: str = "", paid: pd.DataFrame | None = None
) -> go.Figure:
    """Cumulative image MACs of a cascade against query count, with each level alone as a flat baseline.

    Args:
        cumulative: columns ``query_index`` (0 = build), ``cumulative_image_macs``; one row per query.
        baselines: columns ``encoder_id``, ``image_macs`` (corpus size x MACs per image: a single encoder
            embeds everything at build and nothing after); cheapest first.
        paid: what the searches actually paid in a shared feature cache (same columns), drawn dashed when it
            differs from the cascade's own cost (an evaluation or another cascade had embedded images first).
    """
    title = title or "Cumulative image-encoding cost"
    if cumulative.empty:
        return _empty(title, "No queries logged for this cascade yet: search or replay to start the log.")
    x = cumulative["query_index"].to_numpy()
    y = cumulative["cumulative_image_macs"].to_numpy(dtype=np.float64)
    figure = go.Figure()
    figure.add_trace(
        go.Scatter(
            x=x,
            y=y,
            mode="lines+markers" if len(x) < 60 else "lines",
            name="cascade",
            line={"color": CASCADE_COLOUR, "width": 3},
        )
    )
    if paid is not None and not paid.empty and not np.array_equal(paid["cumulative_image_macs"].to_numpy(), y):
        figure.add_trace(
            go.Scatter(
                x=paid["query_index"],
                y=paid["cumulative_image_macs"],
                mode="lines",
                name="paid in the shared cache",
                line={"color": CASCADE_COLOUR, "dash": "dot", "width": 1.5},
            )
        )
    _add_baselines(figure, x, y, baselines)
    figure.update_layout(
        title=title,
        height=_HEIGHT_PX,
        xaxis_title="queries (0 = build)",
        yaxis_title="cumulative image MACs",
        yaxis_exponentformat="SI",
        legend={"orientation": "h", "y": -0.25},
    )
    return figure


def _add_baselines(figure: go.Figure, x: np.ndarray, y: np.ndarray, baselines: pd.DataFrame) -> None:
    """Each level alone as a flat line, its break-even with the cascade marked, and the saving against the top."""
    for i, row in enumerate(baselines.itertuples()):
        colour, dash = BASELINE_COLOURS[i % len(BASELINE_COLOURS)], BASELINE_DASHES[i % len(BASELINE_DASHES)]
        figure.add_trace(
            go.Scatter(
                x=[x[0], max(x[-1], 1)],
                y=[row.image_macs] * 2,
                mode="lines",
                name=f"{short_encoder(row.encoder_id)} alone",
                line={"color": colour, "dash": dash},
            )
        )
        crossing = break_even_index(y, row.image_macs)
        if 0 < (crossing or 0):  # a crossing at build (0) is the cheap level itself: nothing to mark
            figure.add_trace(
                go.Scatter(
                    x=[x[crossing]],
                    y=[y[crossing]],
                    mode="markers",
                    showlegend=False,
                    marker={"symbol": "x", "size": 12, "color": colour},
                    hovertext=f"break-even with {short_encoder(row.encoder_id)}: query {x[crossing]}",
                )
            )
    if not baselines.empty:
        top = float(baselines["image_macs"].iloc[-1])
        saving = top - y[-1]
        figure.add_annotation(
            x=x[-1],
            y=y[-1],
            ax=-60,
            ay=-40,
            showarrow=True,
            text=f"{'saving' if saving >= 0 else 'extra'} vs top: {format_si(abs(saving))}MACs ({top / y[-1]:.2f}x)",
        )


NOTHING_HANDED_ON = (
    "Every query so far cost 0 image MACs: level 1 embedded the gallery at build, and no query handed a later "
    "level an image it had not been handed before."
)


def per_query_figure(per_level: pd.DataFrame, title: str = "") -> go.Figure:
    """Image MACs each of the first queries paid, stacked by level: the early-query penalty.

    Args:
        per_level: columns ``query_index`` (from 1), ``level`` (1-based), ``encoder_id``, ``image_macs``.
    """
    title = title or "Per-query image MACs (first queries)"
    if per_level.empty:
        return _empty(title, "No queries yet.")
    if not per_level["image_macs"].any():  # an empty axis would say nothing; the reason does
        return _empty(title, NOTHING_HANDED_ON)
    figure = go.Figure()
    for level, rows in per_level.groupby("level", sort=True):
        figure.add_trace(
            go.Bar(
                x=rows["query_index"],
                y=rows["image_macs"],
                name=f"level {level}: {short_encoder(rows['encoder_id'].iloc[0])}",
                marker_color=LEVEL_COLOURS[(int(level) - 1) % len(LEVEL_COLOURS)],
            )
        )
    figure.update_layout(
        title=title,
        barmode="stack",
        height=_HEIGHT_PX,
        xaxis_title="query",
        yaxis_title="image MACs (images new to the level)",
        yaxis_exponentformat="SI",
        legend={"orientation": "h", "y": -0.25, "traceorder": "normal"},
    )
    return figure


# ---------------------------------------------------------------- cost model (what-if)


def whatif_figure(curves: pd.DataFrame, break_evens: dict[str, int | None] | None = None, title: str = "") -> go.Figure:
    """Modelled lifetime image MACs against query count, one line per series.

    Args:
        curves: columns ``queries`` (from 1: the x axis is logarithmic), ``series``, ``image_macs``; the
            series named ``cascade`` is drawn solid.
        break_evens: series name -> query count where the cascade reaches it (marked), or None.
    """
    figure = go.Figure()
    baseline_index = 0
    for name, rows in curves.groupby("series", sort=False):
        if name == "cascade":
            line = {"color": CASCADE_COLOUR, "width": 3}
        else:
            line = {
                "color": BASELINE_COLOURS[baseline_index % len(BASELINE_COLOURS)],
                "dash": BASELINE_DASHES[baseline_index % len(BASELINE_DASHES)],
            }
            baseline_index += 1
        figure.add_trace(go.Scatter(x=rows["queries"], y=rows["image_macs"], mode="lines", name=name, line=line))
    cascade = curves[curves["series"] == "cascade"]
    for name, q in (break_evens or {}).items():
        if q and not cascade.empty and q <= cascade["queries"].max():
            y = float(np.interp(q, cascade["queries"], cascade["image_macs"]))
            figure.add_trace(
                go.Scatter(
                    x=[q],
                    y=[y],
                    mode="markers+text",
                    text=[f"break-even {name}: {q:,}"],
                    textposition="top left",
                    showlegend=False,
                    marker={"symbol": "x", "size": 12, "color": "black"},
                )
            )
    # A log axis shows both regimes: the first queries (misses pile up) and the lifetime (the pool is spent).
    figure.update_layout(
        title=title or "Lifetime image cost (cost model)",
        height=_HEIGHT_PX,
        xaxis_type="log",
        xaxis_title="queries Q (log scale)",
        yaxis_title="cumulative image MACs",
        legend={"orientation": "h", "y": -0.25},
    )
    return figure


# ---------------------------------------------------------------- quality against cost


def side_by_side_cumulative_figure(curves: pd.DataFrame, baselines: pd.DataFrame, title: str = "") -> go.Figure:
    """Cumulative image MACs of several configurations over the same queries, measured (solid) and modelled (dotted).

    Args:
        curves: columns ``config`` (a label), ``kind`` (``measured`` or ``model``), ``query_index`` (0 = build),
            ``cumulative_image_macs``.
        baselines: columns ``encoder_id``, ``image_macs``: each single encoder over the gallery (flat).
    """
    title = title or "Cumulative image MACs, same queries (measured; dotted: cost model)"
    if curves.empty:
        return _empty(title, "Pick two or more configurations and press Replay side by side.")
    figure = go.Figure()
    names = list(dict.fromkeys(curves["config"]))
    top = int(curves["query_index"].max())
    for i, name in enumerate(names):
        colour = LEVEL_COLOURS[i % len(LEVEL_COLOURS)]
        for kind, rows in curves[curves["config"] == name].groupby("kind", sort=False):
            measured = kind == "measured"
            figure.add_trace(
                go.Scatter(
                    x=rows["query_index"],
                    y=rows["cumulative_image_macs"],
                    mode="lines",
                    name=name if measured else f"{name} (model)",
                    line={"color": colour, "width": 3 if measured else 1.5, "dash": "solid" if measured else "dot"},
                )
            )
    for i, row in enumerate(baselines.itertuples()):
        figure.add_trace(
            go.Scatter(
                x=[0, max(top, 1)],
                y=[row.image_macs] * 2,
                mode="lines",
                name=f"{short_encoder(row.encoder_id)} alone",
                line={
                    "color": BASELINE_COLOURS[i % len(BASELINE_COLOURS)],
                    "dash": BASELINE_DASHES[i % len(BASELINE_DASHES)],
                    "width": 1,
                },
            )
        )
    figure.update_layout(
        title=title,
        height=_HEIGHT_PX + 40,
        xaxis_title="queries (0 = build)",
        yaxis_title="cumulative image MACs",
        yaxis_exponentformat="SI",
        legend={"orientation": "h", "y": -0.3},
    )
    return figure


def side_by_side_per_query_figure(per_query: pd.DataFrame, title: str = "") -> go.Figure:
    """Image MACs each configuration paid for each of the first queries (its cache misses above level 1).

    Args:
        per_query: columns ``config``, ``query_index`` (from 1), ``image_macs``.
    """
    title = title or "Per-query image MACs of the first queries"
    if per_query.empty:
        return _empty(title, "No side-by-side replay yet.")
    figure = go.Figure()
    for i, (name, rows) in enumerate(per_query.groupby("config", sort=False)):
        figure.add_trace(
            go.Bar(
                x=rows["query_index"],
                y=rows["image_macs"],
                name=name,
                marker_color=LEVEL_COLOURS[i % len(LEVEL_COLOURS)],
            )
        )
    figure.update_layout(
        title=title,
        barmode="group",
        height=_HEIGHT_PX + 40,
        xaxis_title="query",
        yaxis_title="image MACs (misses above level 1)",
        yaxis_exponentformat="SI",
        legend={"orientation": "h", "y": -0.3},
    )
    return figure


def format_si(value: float) -> str:
    """``1.5e9`` -> ``1.50 G`` (the unit follows)."""
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.2f} {prefix}"
    return f"{value:.0f} "
