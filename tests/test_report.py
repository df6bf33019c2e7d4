"""The report to hand on: one HTML file holding the inputs, each chart's data and the tables, offline and escaped."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pandas as pd
import plotly.graph_objects as go
import pytest

from analysis.report import Section, build_report
from cascade import world
from cascade_cli import main

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


class _Scan(HTMLParser):
    """Every tag's attributes and every script's text, as a browser's tokenizer sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.attrs: list[tuple[str, str, str]] = []
        self.tags: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [(tag, name, value or "") for name, value in attrs]
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts.append(data)


def _scan(document: str) -> _Scan:
    scan = _Scan()
    scan.feed(document)
    return scan


def chart_payloads(document: str) -> list[list]:
    """Each ``Plotly.newPlot(id, data, layout, config)`` call's data, decoded as JSON."""
    decoder, found, marker = json.JSONDecoder(), [], "Plotly.newPlot("
    for script in _scan(document).scripts:
        if script.startswith(marker):
            rest = script[len(marker) :].split(", ", 1)[1]
            found.append(decoder.raw_decode(rest)[0])
    return found


def _document() -> str:
    first = go.Figure(go.Scatter(x=[1, 2, 3], y=[123.25, 456.5, 789.75], name=HOSTILE))
    second = go.Figure(go.Bar(x=["a", "b"], y=[31_415_926, 27_182_818]))
    table = pd.DataFrame({"configuration": [HOSTILE, "small > large"], "R@1 (%)": [42.125, 55.5]})
    sections = [Section("Costs", "The **measured** cost.\n" + HOSTILE, (first, second), (("Rows", table),))]
    return build_report("Report of " + HOSTILE, {"query file": HOSTILE, "k_1": 15}, sections)


def test_the_report_holds_each_charts_data_and_the_inputs():
    document = _document()
    payloads = chart_payloads(document)
    assert [trace["y"] for data in payloads for trace in data] == [[123.25, 456.5, 789.75], [31415926, 27182818]]
    assert payloads[0][0]["name"] == HOSTILE  # the legend text intact, as data (plotly draws it as SVG text)
    assert "<th>k_1</th><td>15</td>" in document and "<b>measured</b>" in document
    assert "42.12" in document and "55.5" in document


def test_every_user_string_is_escaped_and_nothing_is_fetched():
    document = _document()
    scan = _scan(document)
    assert "onerror" not in {name for _, name, _ in scan.attrs}
    assert scan.tags.count("img") == 0
    assert scan.tags.count("script") == 1 + 2  # plotly.js inlined once, one call per chart, no user script
    assert document.count("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;") >= 4  # title x2, input, text, cell
    external = [(tag, name, value) for tag, name, value in scan.attrs
                if name in ("src", "href") and value.startswith(("http:", "https:", "//"))]  # fmt: skip
    assert external == []
    assert not any(name == "src" for tag, name, _ in scan.attrs if tag == "script")  # no CDN: plotly.js is inline
    assert "Plotly" in scan.scripts[0] and len(scan.scripts[0]) > 1_000_000


@pytest.fixture
def tiny_world(monkeypatch):
    monkeypatch.setitem(world.GALLERY_SIZES, "test", 60)
    monkeypatch.setitem(world.GALLERY_SIZES, "lifetime", 120)


def test_cascade_replay_writes_its_report(tiny_world, tmp_path, capsys):
    path = tmp_path / "replay.html"
    assert main(["replay", "--queries", "20", "--json", "--quiet", "--report", str(path)]) == 0
    row = json.loads(capsys.readouterr().out)
    curve = chart_payloads(path.read_text(encoding="utf-8"))[0]
    cascade = next(trace for trace in curve if trace["name"] == "cascade")
    assert cascade["y"][-1] == row["cascade_image_macs"] and len(cascade["y"]) == 21  # build + 20 queries
    assert {trace["name"] for trace in curve} >= {"shapes:small alone", "shapes:large alone"}
    assert "<th>workload</th><td>zipf</td>" in path.read_text(encoding="utf-8")


def test_cascade_compare_sweep_writes_its_report(tiny_world, tmp_path, capsys):
    path = tmp_path / "sweep.html"
    assert main(["compare", "--sweep-k1", "10,30", "--limit", "20", "--json", "--quiet", "--report", str(path)]) == 0
    payload = json.loads(capsys.readouterr().out)
    traces = chart_payloads(path.read_text(encoding="utf-8"))[0]
    r1 = next(trace for trace in traces if trace["name"] == "R@1 cascade")
    assert r1["x"] == [10, 30] and r1["y"] == pytest.approx([row["r1"] for row in payload["rows"]], abs=1e-3)


@pytest.mark.parametrize(("path", "says"), [("out.txt", "name it .html"), ("no/such/dir/r.html", "no such folder")])
def test_a_bad_report_path_is_refused_before_anything_runs(tmp_path, capsys, monkeypatch, path, says):
    monkeypatch.chdir(tmp_path)
    assert main(["replay", "--queries", "5", "--quiet", "--report", path]) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1
