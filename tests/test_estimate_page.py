"""Your estimate on the page: the JSON ``cascade replay --estimate --json`` printed, taken by the What-if and Cost tabs.

The estimate is made by the CLI itself on a small clip-retrieval index; the page must read it back whole, set the
What-if sliders to its alpha, N and ks, and show the CLI's own summary; anything that is not an estimate is one
line in the page.
"""

from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pytest

from analysis.estimate_report import MAX_ESTIMATE_BYTES, read_estimate, summary
from cascade.errors import ConfigError
from cascade_cli import main
from cascade_ui import estimate_input
from tests.index_layouts import write_clip_retrieval
from tests.test_browser import WAIT_MS, browser_page

ENC, UPPER = "openclip:tiny-vit-s@random", "openclip:tiny-vit-m@random"
ROWS = 40  # per shard; three shards


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> tuple[str, str]:
    """(the JSON, the text) ``cascade replay --estimate`` printed for a 4-query log on a 120-row index."""
    root = tmp_path_factory.mktemp("estimate")
    write_clip_retrieval(root / "index", rows=ROWS, dtype=np.float32)
    (root / "log.txt").write_text("a red circle\na blue square\na red circle\ntwo green stars\n")
    args = ["replay", "--estimate", "--embeddings", str(root / "index"), "--levels", f"{ENC},{UPPER}", "--ks", "10"]
    printed = []
    for extra in (["--json"], []):
        with contextlib.redirect_stdout(io.StringIO()) as out:
            assert main([*args, "--queries-file", str(root / "log.txt"), "--quiet", *extra]) == 0
        printed.append(out.getvalue().rstrip("\n"))
    return printed[0], printed[1]


def test_the_json_reads_back_as_the_estimate_the_cli_printed(made):
    printed_json, printed_text = made
    row = json.loads(printed_json)
    again = read_estimate(printed_json)
    assert json.loads(json.dumps(again.as_json())) == row  # every field, the costs and the derived ones included
    timed = 1  # the line of wall times: the text was printed by a second run
    shown, printed = summary(again).splitlines(), printed_text.splitlines()
    assert shown[:timed] + shown[timed + 1 :] == printed[:timed] + printed[timed + 1 :]  # one account, both faces


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda row: "{not json", "not an estimate"),
        (lambda row: json.dumps({k: v for k, v in row.items() if k != "alpha"}), "alpha"),
        (lambda row: json.dumps(row | {"alpha": 1.5}), "alpha"),
        (lambda row: json.dumps(row | {"ks": [10, 3]}), "ks"),
        (lambda row: json.dumps(row | {"top_alone": {"macs": 1}}), "seconds"),
        (lambda row: " " * (MAX_ESTIMATE_BYTES + 1), "small JSON file"),
    ],
)
def test_what_is_not_an_estimate_is_one_line(made, change, says):
    with pytest.raises(ConfigError) as caught:
        read_estimate(change(json.loads(made[0])))
    assert says in str(caught.value) and "\n" not in str(caught.value)


def test_the_whatif_sliders_take_the_estimate_and_say_what_they_could_not_show(made):
    result = read_estimate(made[0])
    ranges = (
        estimate_input.SliderRange(0.001, 1),
        estimate_input.SliderRange(3, 9),
        estimate_input.SliderRange(1, 1000),
    )
    values, note = estimate_input.whatif_values(result, *ranges)
    assert values["alpha"] == pytest.approx(result.alpha) and (values["k1"], values["k2"]) == (10, 10)
    assert values["log_n"] == 3 and math.log10(result.images) < 3  # 120 images: below the slider's 10^3
    assert note == f"Outside the sliders' ranges: log_n {math.log10(120):.4g} shown as 3."


def test_both_tabs_take_an_estimate_in_the_browser(served, made, tmp_path):
    _, demo = served
    result = read_estimate(made[0])
    path = tmp_path / "estimate.json"
    path.write_text(made[0])
    bad = tmp_path / "bad.json"
    bad.write_text('{"alpha": 2}')
    open_whatif = "Your own index: take the alpha your log measured"
    with browser_page() as page:
        page.goto(demo.local_url, timeout=WAIT_MS)
        page.get_by_role("tab", name="What-if").click()
        page.get_by_text(open_whatif).click()
        page.locator("#whatif-estimate-file input[type=file]").set_input_files(str(bad))
        page.wait_for_function("document.querySelector('#whatif-estimate-card').innerText.includes('Error')")
        assert "not an estimate" in page.locator("#whatif-estimate-card").inner_text()

        page.goto(demo.local_url, timeout=WAIT_MS)  # a fresh page: a file box holds one file until cleared
        page.get_by_role("tab", name="What-if").click()
        page.get_by_text(open_whatif).click()
        page.locator("#whatif-estimate-file input[type=file]").set_input_files(str(path))
        page.wait_for_function("document.querySelector('#whatif-estimate-card').innerText.includes('Your estimate')")
        assert f"alpha {result.alpha:.4f}" in page.locator("#whatif-estimate-card").inner_text()
        shown = "Number(document.querySelector('#whatif-alpha input[type=number]').value)"
        page.wait_for_function(f"Math.abs({shown} - {result.alpha}) < 1e-9")
        assert page.evaluate("Number(document.querySelector('#whatif-n input[type=number]').value)") == 3

        page.get_by_role("tab", name="Cost").click()
        page.get_by_text("Your own index: the estimate's alpha").click()
        page.locator("#cost-estimate-file input[type=file]").set_input_files(str(path))
        page.wait_for_function("document.querySelector('#cost-estimate-card').innerText.includes('Your estimate')")
        bars = "document.querySelector('#cost-estimate-plot .js-plotly-plot')?._fullData?.[0]?.x"
        page.wait_for_function(f"({bars} || []).length === 4")
        drawn = page.evaluate(f"Array.from({bars})")
    costs = (result.first_query, result.lifetime_level1_paid, result.lifetime_from_scratch, result.top_alone)
    expected = [cost.macs / 1e9 for cost in costs]
    assert drawn == pytest.approx(expected)
