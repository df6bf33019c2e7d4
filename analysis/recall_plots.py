"""The recall figures: recall against lifetime cost (the Pareto front) and the k_1 sweep. Frame in, figure out."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analysis.plots import _HEIGHT_PX, CASCADE_COLOUR, LEVEL_COLOURS, _empty, short_config


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
    _add_recalls(figure, k1, rows, alone)
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


def _add_recalls(figure: go.Figure, k1: np.ndarray, rows: pd.DataFrame, alone: pd.DataFrame) -> None:
    """R@1/5/10 of the cascade against k_1 and, dotted, of the last level alone."""
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
