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


def cumulative_cost_figure(cumulative: pd.DataFrame, baselines: pd.DataFrame, title: str = "") -> go.Figure:
    """Cumulative image MACs of a cascade against query count, with each level alone as a flat baseline.

    Args:
        cumulative: columns ``query_index`` (0 = build), ``cumulative_image_macs``; one row per query.
        baselines: columns ``encoder_id``, ``image_macs`` (corpus size x MACs per image: a single encoder
            embeds everything at build and nothing after); cheapest first.
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
    figure.update_layout(
        title=title,
        height=_HEIGHT_PX,
        xaxis_title="queries (0 = build)",
        yaxis_title="cumulative image MACs",
        yaxis_exponentformat="SI",
        legend={"orientation": "h", "y": -0.25},
    )
    return figure


def per_query_figure(per_level: pd.DataFrame, title: str = "") -> go.Figure:
    """Image MACs each of the first queries paid, stacked by level: the early-query penalty.

    Args:
        per_level: columns ``query_index`` (from 1), ``level`` (1-based), ``encoder_id``, ``image_macs``.
    """
    title = title or "Per-query image MACs (first queries)"
    if per_level.empty:
        return _empty(title, "No queries yet.")
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
        yaxis_title="image MACs (cache misses)",
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


def pareto_front(cost: Sequence[float], quality: Sequence[float]) -> np.ndarray:
    """Boolean mask of the points no other point beats: cheaper-or-equal and better-or-equal, one strictly.

    Args:
        cost: ``(n,)`` lower is better (lifetime MACs).
        quality: ``(n,)`` higher is better (recall).
    """
    cost, quality = np.asarray(cost, dtype=np.float64), np.asarray(quality, dtype=np.float64)
    no_worse = (cost[None, :] <= cost[:, None]) & (quality[None, :] >= quality[:, None])  # [i, j]: j no worse than i
    better = (cost[None, :] < cost[:, None]) | (quality[None, :] > quality[:, None])
    return ~(no_worse & better).any(axis=1)


def pareto_figure(evaluations: pd.DataFrame, recall: str = "r10", title: str = "") -> go.Figure:
    """Recall against lifetime image MACs, one point per configuration, the Pareto front joined.

    Args:
        evaluations: columns ``config_key``, ``image_macs`` and the ``recall`` column (percent);
            several rows of one configuration: the latest counts.
        recall: ``r1``, ``r5`` or ``r10``.
    """
    label = {"r1": "Recall@1", "r5": "Recall@5", "r10": "Recall@10"}[recall]
    title = title or f"{label} against lifetime image MACs"
    if evaluations.empty:
        return _empty(title, "No evaluations yet: pick configurations and press Evaluate.")
    latest = evaluations.groupby("config_key", sort=False).tail(1).reset_index(drop=True)
    front = pareto_front(latest["image_macs"], latest[recall])
    names = [short_config(key, drop_backend=True) for key in latest["config_key"]]
    # Alternate label sides along the cost axis: neighbours with equal recall would print over each other.
    sides = np.where(latest["image_macs"].rank(method="first").to_numpy() % 2 == 0, "bottom center", "top center")
    figure = go.Figure()
    figure.add_trace(
        go.Scatter(
            x=latest["image_macs"],
            y=latest[recall],
            mode="markers+text",
            text=names,
            textposition=sides.tolist(),
            name="configuration",
            cliponaxis=False,
            marker={"size": 11, "color": "#7f7f7f"},
            hovertemplate="%{text}<br>%{y:.1f}%% at %{x:.3s}MACs<extra></extra>",
        )
    )
    on_front = latest[front].sort_values("image_macs")
    figure.add_trace(
        go.Scatter(
            x=on_front["image_macs"],
            y=on_front[recall],
            mode="lines+markers",
            name="Pareto front",
            line={"color": CASCADE_COLOUR},
            hoverinfo="skip",
            marker={"size": 15, "symbol": "star", "color": CASCADE_COLOUR},
        )
    )
    figure.update_layout(
        title=title,
        height=_HEIGHT_PX + 60,
        xaxis_type="log",
        xaxis_title="lifetime image MACs",
        xaxis_exponentformat="SI",
        yaxis_title=f"{label} (%)",
        legend={"orientation": "h", "y": -0.25},
    )
    return figure


# ---------------------------------------------------------------- the k_1 knob


RECALL_DASHES = {"r1": "solid", "r5": "dash", "r10": "dot"}


def sweep_figure(sweep: pd.DataFrame, smallest_k1: int | None, title: str = "") -> go.Figure:
    """R@1/5/10 (left axis) and lifetime image MACs (right axis) of ``[first, last]`` against k_1.

    Args:
        sweep: columns ``series`` (``cascade`` rows, one ``last level alone`` row), ``k1``, ``r1``, ``r5``,
            ``r10`` (percent), ``image_macs``; as ``analysis.sweep.K1Sweep.frame`` gives them.
        smallest_k1: the k_1 marked as the smallest within 1 point of the last level alone; None: none is.
    """
    from plotly.subplots import make_subplots

    title = title or "Recall and lifetime image cost against k_1"
    rows = sweep[sweep["series"] == "cascade"].sort_values("k1")
    if rows.empty:
        return _empty(title, "No sweep yet: pick two encoders and the k_1 values, then press Sweep.")
    alone = sweep[sweep["series"] != "cascade"]
    figure = make_subplots(specs=[[{"secondary_y": True}]])
    k1 = rows["k1"].astype(int).to_numpy()
    for i, recall in enumerate(("r1", "r5", "r10")):
        colour = LEVEL_COLOURS[i]
        figure.add_trace(
            go.Scatter(
                x=k1, y=rows[recall], mode="lines+markers", name=f"R@{recall[1:]} cascade", line={"color": colour}
            ),
            secondary_y=False,
        )
        if not alone.empty:
            figure.add_trace(
                go.Scatter(
                    x=[k1[0], k1[-1]],
                    y=[float(alone[recall].iloc[0])] * 2,
                    mode="lines",
                    name=f"R@{recall[1:]} last alone",
                    line={"color": colour, "dash": "dot"},
                    opacity=0.7,
                ),
                secondary_y=False,
            )
    figure.add_trace(
        go.Scatter(
            x=k1,
            y=rows["image_macs"],
            mode="lines+markers",
            name="lifetime image MACs",
            line={"color": CASCADE_COLOUR, "width": 3},
            marker={"symbol": "square"},
        ),
        secondary_y=True,
    )
    if smallest_k1 is not None and smallest_k1 in set(k1):
        at = rows[rows["k1"] == smallest_k1].iloc[0]
        figure.add_vline(x=smallest_k1, line={"color": "black", "dash": "dash"})
        figure.add_trace(
            go.Scatter(
                x=[smallest_k1],
                y=[at["r10"]],
                mode="markers+text",
                showlegend=False,
                text=[f"k_1 = {smallest_k1}: within 1 point"],
                textposition="bottom right",
                marker={"symbol": "star", "size": 16, "color": "black"},
            ),
            secondary_y=False,
        )
    figure.update_layout(
        title=title,
        height=_HEIGHT_PX + 40,
        xaxis_title="k_1 (candidates handed to the last level)",
        legend={"orientation": "h", "y": -0.3},
    )
    figure.update_yaxes(title_text="recall (%)", secondary_y=False)
    figure.update_yaxes(title_text="lifetime image MACs", exponentformat="SI", secondary_y=True)
    return figure


# ---------------------------------------------------------------- cascades side by side


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
