"""The app's reports and the Cost tab's side by side, through the served page's API."""

from __future__ import annotations

from pathlib import Path

from analysis.replay import replay, workload
from cascade.search import CascadeSearcher
from tests.app_engine import LARGE_MACS, N_IMAGES, SMALL_MACS, fake_encoders
from tests.test_report import chart_payloads

WHATIF_INPUTS = ("CLIP, ViT", ["B/16", "L/14", "g/14"], "paper", 4.0, 0.01, 3.0, 50, 14, "NVIDIA T4", 40, 0.35, 70)


def test_the_whatif_report_holds_its_inputs_and_chart(client):
    summary, report = client.predict(*WHATIF_INPUTS, api_name="/whatif_report")
    document = Path(report["value"] if isinstance(report, dict) else report).read_text(encoding="utf-8")
    traces = chart_payloads(document)[0]
    cascade = next(t for t in traces if t["name"] == "cascade")
    # N = 10^4 images, the lifetime bound C_1 N + alpha N (C_2 + C_3) at the test engine's paper GMACs (10, 50, 180)
    assert max(cascade["y"]) <= (10 + 0.01 * (50 + 180)) * 10_000 * 1e9 * (1 + 1e-9)
    assert "<th>gallery N</th><td>10000</td>" in document and "NVIDIA T4" in document


def test_side_by_side_costs_equal_separate_replays_and_land_in_the_cost_report(client, served):
    engine, _ = served
    picked = ["fake:small > fake:large (k 20,10)"]
    status, *_ = client.predict(picked, 2.0, "zipf", 12, 3, api_name="/side_by_side")
    assert "pick two or more" in status  # one configuration is refused with one line
    small_large = ["fake:small > fake:large (k 20,10)", "fake:small > fake:large (k 20,10)"]
    status, _, _, table = client.predict(small_large, 2.0, "zipf", 12, 3, api_name="/side_by_side")
    assert "Side by side done: 12 zipf queries" in status
    corpus = engine.corpus(engine.default_choice().gallery)
    encoders = fake_encoders()
    alone = replay(CascadeSearcher([encoders["fake:small"], encoders["fake:large"]], corpus),
                   workload(corpus, "zipf", 12, 3), (20, 10))  # fmt: skip
    rows = table["value"]["data"] if "value" in table else table["data"]
    lifetimes = [row[2] for row in rows]
    assert lifetimes == [alone.cascade_image_macs] * 2
    assert alone.curve_image_macs[1] - alone.curve_image_macs[0] == 20 * LARGE_MACS  # the first query, by hand
    assert alone.curve_image_macs[0] == N_IMAGES * SMALL_MACS
    assert int(engine.store.frame("SELECT count(*) AS n FROM queries")["n"].iloc[0]) == 0  # a comparison logs nothing


def test_the_evaluate_tab_sweeps_k1_as_the_library_does(client, served):
    from analysis.sweep import sweep_k1

    engine, _ = served
    status, _, table = client.predict("fake:small", "fake:large", "10, 40", "built-in test gallery", "", "", 40,
                                      api_name="/sweep_k1")  # fmt: skip
    encoders = fake_encoders()
    corpus = engine.corpus(engine.default_choice().gallery)
    alone = sweep_k1(encoders["fake:small"], encoders["fake:large"], corpus, [10, 40], limit=40)
    rows = table["value"]["data"] if "value" in table else table["data"]
    assert [row[2] for row in rows] == [
        round(r, 3) for r in (alone.rows[0].recall[1], alone.rows[1].recall[1], alone.reference.recall[1])
    ]
    assert f"**{alone.smallest_k1}**" in status
    status, *_ = client.predict("fake:small", "fake:large", "ten", "built-in test gallery", "", "", 40,
                                api_name="/sweep_k1")  # fmt: skip
    assert "whole numbers" in str(status)
