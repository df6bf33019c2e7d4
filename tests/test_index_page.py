"""The page says what ``--index auto`` picked, as the command line does: one line under the cascade's status."""

from __future__ import annotations

import re

import pytest

from tests.test_browser import WAIT_MS, browser_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

STATUS = "document.querySelector('#search-status').innerText"


def test_auto_names_its_pick_and_measured_recall_after_a_build_and_a_search(served):
    engine, demo = served
    with browser_page() as page:
        page.goto(demo.local_url, timeout=WAIT_MS)
        page.get_by_role("button", name="Build (embed gallery)").click()
        page.wait_for_function(f"{STATUS}.startsWith('Built:')", timeout=WAIT_MS)
        assert "level 1 auto" not in page.locator("#search-status").inner_text()  # exact: nothing to say

        page.locator("#level1-index input").click()  # chosen from the list, as a visitor does: a typed value
        page.get_by_role("option", name="auto", exact=True).click()  # raced the Build click on a loaded CI job
        page.wait_for_function("document.querySelector('#level1-index input').value === 'auto'", timeout=WAIT_MS)
        page.get_by_role("button", name="Build (embed gallery)").click()
        page.wait_for_function(f"{STATUS}.includes('level 1 auto')", timeout=WAIT_MS)
        built = page.locator("#search-status").inner_text()

        page.locator("#query textarea").fill("two small red circles")
        page.locator("#search-button").click()
        page.wait_for_function(f"{STATUS}.startsWith('Cascade:') && {STATUS}.includes('level 1 auto')", timeout=WAIT_MS)
        searched = page.locator("#search-status").inner_text()
    # tests/app_engine.py's preset: k_1 = 20 over 40 images; a gallery this small tries exact float16 alone
    line = re.search(r"level 1 auto: .*", built).group(0)
    assert "recall@20 against exact" in line and line in searched
    # its one candidate ranks exactly (recall 1.000), and the faster of it and exact float32 is picked
    assert re.match(r"level 1 auto: exact(:float16)?, recall@20 against exact 1\.000 on 80 captions queries", line)
    assert "1 of 1 candidates passed" in line
