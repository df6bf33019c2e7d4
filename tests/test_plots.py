"""The app's charts: pure functions of frames, checked on the numbers they draw."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import plots, recall_plots


def test_short_names_drop_weight_digests_only():
    assert plots.short_encoder("shapes:small@0123456789abcdef") == "shapes:small"
    assert plots.short_encoder("openclip:ViT-B-16@laion2b_s34b_b88k") == "openclip:ViT-B-16@laion2b_s34b_b88k"
    assert plots.short_config("shapes:small@deadbeef00>shapes:large@cafebabe11|100,10") == (
        "shapes:small > shapes:large (k 100,10)"
    )
    assert plots.short_config("shapes:small@deadbeef00|10", drop_backend=True) == "small (k 10)"


@pytest.mark.parametrize(
    ("curve", "baseline", "expected"),
    [([10, 12, 15, 30], 15, 2), ([10, 12, 15, 30], 9, 0), ([10, 12, 15, 30], 31, None)],
)
def test_break_even_index_is_the_first_query_reaching_the_baseline(curve, baseline, expected):
    assert plots.break_even_index(curve, baseline) == expected


def test_pareto_front_keeps_exactly_the_undominated_points():
    cost = [1.0, 2.0, 3.0, 2.5, 5.0, 1.0]
    quality = [50.0, 60.0, 70.0, 55.0, 70.0, 40.0]
    # (2.5, 55) loses to (2, 60); (5, 70) loses to (3, 70); (1, 40) loses to (1, 50).
    assert recall_plots.pareto_front(cost, quality).tolist() == [True, True, True, False, False, False]


def _cumulative(build: int, per_query: list[int]) -> pd.DataFrame:
    values = np.cumsum([build, *per_query])
    return pd.DataFrame({"query_index": range(len(values)), "image_macs": [build, *per_query],
                         "cumulative_image_macs": values})  # fmt: skip


def test_cumulative_figure_draws_the_log_and_flat_baselines_with_break_even_marks():
    cumulative = _cumulative(100, [50, 30, 20, 0, 0])  # 100, 150, 180, 200, 200, 200
    baselines = pd.DataFrame({"encoder_id": ["s@00000000aa", "m@00000000bb", "l@00000000cc"],
                              "image_macs": [100, 175, 1000]})  # fmt: skip
    figure = plots.cumulative_cost_figure(cumulative, baselines)
    lines = {trace.name: trace for trace in figure.data if trace.name}
    assert list(lines["cascade"].y) == [100, 150, 180, 200, 200, 200]
    assert list(lines["m alone"].y) == [175, 175] and list(lines["l alone"].y) == [1000, 1000]
    marks = [trace for trace in figure.data if not trace.showlegend and trace.mode == "markers"]
    # Only "m alone" is crossed after the build (at query 2, 180 >= 175); "s" is level 1 itself, "l" never.
    assert [(list(m.x), list(m.y)) for m in marks] == [([2], [180])]
    assert "saving vs top: 800 MACs (5.00x)" in figure.layout.annotations[0].text


def test_what_searches_paid_in_a_shared_cache_is_drawn_beside_the_cascades_own_cost():
    own = _cumulative(100, [50, 30, 20])  # 100, 150, 180, 200
    baselines = pd.DataFrame({"encoder_id": ["s"], "image_macs": [100]})
    paid = _cumulative(100, [0, 30, 0])  # an evaluation had embedded the first query's images: 100, 100, 130, 130
    lines = {t.name: t for t in plots.cumulative_cost_figure(own, baselines, paid=paid).data if t.name}
    assert list(lines["paid in the shared cache"].y) == [100, 100, 130, 130]
    assert list(lines["cascade"].y) == [100, 150, 180, 200]
    same = {t.name for t in plots.cumulative_cost_figure(own, baselines, paid=own).data}
    assert "paid in the shared cache" not in same  # nothing to tell apart: one line


def test_cost_figures_say_when_there_is_nothing_logged():
    figure = plots.cumulative_cost_figure(pd.DataFrame(), pd.DataFrame())
    assert not figure.data and "No queries logged" in figure.layout.annotations[0].text
    assert "No queries" in plots.per_query_figure(pd.DataFrame()).layout.annotations[0].text


def test_per_query_figure_stacks_one_bar_series_per_level():
    frame = pd.DataFrame({"query_index": [1, 1, 2, 2], "level": [1, 2, 1, 2], "encoder_id": ["a", "b", "a", "b"],
                          "image_macs": [0, 500, 0, 120]})  # fmt: skip
    figure = plots.per_query_figure(frame)
    assert figure.layout.barmode == "stack"
    assert [(t.name, list(t.y)) for t in figure.data] == [("level 1: a", [0, 0]), ("level 2: b", [500, 120])]


def test_whatif_figure_marks_break_even_on_the_cascade_curve():
    queries = np.array([1, 10, 20])
    curves = pd.concat([
        pd.DataFrame({"queries": queries, "series": "cascade", "image_macs": [100.0, 200.0, 300.0]}),
        pd.DataFrame({"queries": queries, "series": "L alone", "image_macs": [250.0] * 3}),
    ])  # fmt: skip
    figure = plots.whatif_figure(curves, {"L alone": 15, "S alone": 0, "XL alone": None})
    mark = [t for t in figure.data if t.mode == "markers+text"]
    assert len(mark) == 1 and list(mark[0].x) == [15] and mark[0].y[0] == pytest.approx(250.0)


def test_pareto_figure_uses_each_configs_latest_evaluation():
    frame = pd.DataFrame({"config_key": ["a|10", "b|10", "a|10", "c|10"], "image_macs": [1e9, 2e9, 1e9, 3e9],
                          "r1": [10.0, 30.0, 20.0, 25.0], "r5": [0.0] * 4, "r10": [0.0] * 4})  # fmt: skip
    figure = recall_plots.pareto_figure(frame, "r1")
    everything, front = figure.data
    assert list(everything.y) == [30.0, 20.0, 25.0]  # b, then a's latest (20, not 10), then c
    assert list(front.x) == [1e9, 2e9] and list(front.y) == [20.0, 30.0]  # c is dominated by b


def test_format_si():
    assert plots.format_si(1.5e9) == "1.50 G" and plots.format_si(999) == "999 " and plots.format_si(2e12) == "2.00 T"
