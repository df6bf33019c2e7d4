"""One way in: an evaluation made by ``cascade eval`` is the row the app's Evaluate tab shows, in a real browser.

Before, the command line stored the built-in gallery's rows under ``world:test`` and the page read
``shapes:test``: a new user's evaluation vanished between the two faces. The recall the page shows is
checked against the figure ``cascade eval --json`` printed, and the stored label against the dataset's.
"""

from __future__ import annotations

import json

import pytest

from analysis import presets
from analysis.engine import Engine
from analysis.store import Store
from cascade_cli import main
from tests.app_engine import free_port
from tests.test_browser import browser_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_an_evaluation_from_the_command_line_shows_in_the_evaluate_tab(tmp_path, capsys):
    import app

    db = tmp_path / "x.duckdb"
    assert main(["eval", "--preset", "shapes", "--limit", "40", "--db", str(db), "--json", "--quiet"]) == 0
    printed = json.loads(capsys.readouterr().out)
    with Store(db, read_only=True) as store:
        stored = store.evaluations()
    assert stored["dataset"].tolist() == ["world:test"] and stored["n_queries"].tolist() == [40]

    engine = Engine(Store(db), preset=presets.PRESETS["shapes"])
    demo = app.launch(engine, port=free_port(), block=False)
    try:
        with browser_page() as page:
            page.goto(demo.local_url)
            page.get_by_role("tab", name="Evaluate").click()
            row = page.locator("#eval-table [role=row]", has_text="small > large (k 15,10)").first
            row.wait_for()  # the tab reads the stored evaluations when it is selected
            texts = [cell.inner_text().strip() for cell in row.locator("[role=gridcell]").all()]
    finally:
        demo.close()
        engine.store.close()
    # configuration, images, queries, R@1 %, R@5 %, R@10 %, lifetime image MACs, alpha: as `cascade eval` printed
    assert texts[1:3] == ["5000", "40"]
    shown = [float(text) for text in texts[3:6]]
    assert shown == pytest.approx([round(printed[f"r{k}"], 1) for k in (1, 5, 10)])
