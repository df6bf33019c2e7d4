"""The real page in headless Chromium: search, one gallery per stage, the cost chart, a short replay.

Needs Debian's ``chromium`` (the CI test command installs it) and Playwright. In CI
(``CI`` set) a missing browser is a failure, never a skip: this is the test that
proves the page works.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--headless"]  # fmt: skip
WAIT_MS = 30_000  # every wait is bounded: a broken page fails in seconds, not at the CI job's time limit
REPLAY_WAIT_MS = 90_000

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@contextlib.contextmanager
def browser_page(viewport: dict | None = None):
    """A page of headless Debian Chromium, every wait bounded; closed whatever the test does."""
    sync_playwright = _sync_playwright()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport=viewport or {"width": 1400, "height": 1000})
            page.set_default_timeout(WAIT_MS)
            yield page
        finally:
            browser.close()


def _sync_playwright():
    """Playwright's entry point, or skip (locally) / fail (in CI) when it or the browser is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright, problem = None, "playwright is not installed"
    else:
        problem = None if CHROMIUM.exists() else f"{CHROMIUM} not found (apt-get install chromium)"
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"the browser test must run in CI: {problem}")
        pytest.skip(problem)
    return sync_playwright


def _images(page, stage: int) -> int:
    return page.locator(f"#stage-{stage} img").count()


def test_search_stages_cost_chart_and_replay(served):
    _, demo = served
    with browser_page() as page:
        page.goto(demo.local_url, timeout=WAIT_MS)
        _search_two_stages(page)
        _add_the_reranker(page)
        _live_validation(page)
        _cost_chart_and_replay(page)


def _search_two_stages(page) -> None:
    query = page.locator("#query textarea")
    query.fill("two small red circles")
    page.locator("#search-button").click()
    page.wait_for_function("document.querySelectorAll('#stage-2 img').length === 5")
    assert (_images(page, 1), _images(page, 2)) == (20, 5)  # k_1 = 20, k_2 = 5 (tests/app_engine.py's preset)
    assert not page.locator("#stage-3").is_visible()
    assert "embedded now" in page.locator("#stage-2").inner_text()
    assert "fake:large" in page.locator("#cost-card").inner_text()


def _add_the_reranker(page) -> None:
    page.locator("#rerank input").check()
    page.wait_for_function("document.querySelector('#search-status').innerText.includes('fake:cross')")
    page.locator("#query textarea").press("Enter")  # Enter searches too
    page.wait_for_function("document.querySelectorAll('#stage-3 img').length === 5")
    assert [_images(page, stage) for stage in (1, 2, 3)] == [20, 5, 5]


def _live_validation(page) -> None:
    k2 = page.locator("#k2 input")
    k2.fill("50")
    k2.press("Tab")
    page.wait_for_function("document.querySelector('#search-status').innerText.includes('must not grow')")
    page.locator("#search-button").click()  # refused with the problem, not run with the last valid cascade
    page.wait_for_function("document.querySelector('#search-status').innerText.includes('fix the cascade first')")
    k2.fill("5")
    k2.press("Tab")
    page.wait_for_function("document.querySelector('#search-status').innerText.startsWith('Cascade:')")


def _cost_chart_and_replay(page) -> None:
    page.get_by_role("tab", name="Cost").click()
    page.locator("#cost-cumulative .js-plotly-plot").wait_for()
    assert "1 query logged" in page.locator("#cost-summary").inner_text()  # the 3-stage cascade's one search
    replay_queries = page.locator("#replay-queries input[type=number]")
    replay_queries.fill("20")
    replay_queries.press("Enter")
    page.locator("#replay-button").click()
    page.wait_for_function("document.querySelector('#replay-status').innerText.includes('Replay done')",
                           timeout=REPLAY_WAIT_MS)  # fmt: skip
    assert "20 zipf queries" in page.locator("#replay-status").inner_text()
    page.wait_for_function("document.querySelector('#cost-summary').innerText.includes('21 queries logged')")
    legend = page.eval_on_selector_all("#cost-cumulative .legendtext", "texts => texts.map(t => t.textContent)")
    # The search tab's earlier cascades embedded images this one was then handed: its searches paid less in the
    # shared cache than its own lifetime cost, so both lines are drawn.
    expected = ["cascade", "fake:cross alone", "fake:large alone", "fake:small alone", "paid in the shared cache"]
    assert sorted(legend) == expected


def test_the_report_file_opens_in_the_browser_and_contains_its_charts(tmp_path):
    """Opened from disk with every network request refused: plotly.js is inline and both charts draw."""
    import plotly.graph_objects as go

    from analysis.report import Section, build_report

    figures = (go.Figure(go.Scatter(x=[0, 1, 2], y=[5, 7, 9], name="cascade")),
               go.Figure(go.Bar(x=[1, 2], y=[3, 4], name="per query")))  # fmt: skip
    path = tmp_path / "report.html"
    path.write_text(build_report("A report", {"k_1": 15}, [Section("Charts", figures=figures)]), encoding="utf-8")
    fetched: list[str] = []
    with browser_page() as page:
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
                   else (fetched.append(route.request.url), route.abort()))  # fmt: skip
        page.goto(path.as_uri(), timeout=WAIT_MS)
        page.locator("#chart-2 .main-svg").first.wait_for()
        assert page.locator(".plotly .main-svg").count() >= 2
        assert page.evaluate("document.getElementById('chart-1').data[0].y") == [5, 7, 9]
        assert page.locator("#chart-1 .scatterlayer .trace").count() == 1
        assert page.locator("#chart-2 .barlayer .point").count() == 2
    assert fetched == []


def test_an_uploaded_query_log_shows_its_measured_alpha_and_chart(served, tmp_path):
    """The Cost tab: choose a log file, Replay this log; the page shows the alpha computed by hand and the curve."""
    from tests.app_engine import N_IMAGES, expected_levels

    engine, demo = served
    lines = ["a red circle", "a blue square", "a red circle", "two green stars"]
    path = tmp_path / "mine.txt"
    path.write_text("\n".join(lines), encoding="utf-8")
    corpus = engine.corpus(engine.default_choice().gallery)
    handed = set().union(*(expected_levels(q, corpus, [("fake:small", 20)])[0][0] for q in set(lines)))
    with browser_page() as page:
        page.goto(demo.local_url, timeout=WAIT_MS)
        page.get_by_role("tab", name="Cost").click()
        page.locator("#query-log-file input[type=file]").set_input_files(str(path))
        page.locator("#replay-file-button").click()
        page.wait_for_function("document.querySelector('#replay-status').innerText.includes('Replay done')",
                               timeout=REPLAY_WAIT_MS)  # fmt: skip
        status = page.locator("#replay-status").inner_text()
        assert "4 file:mine.txt queries" in status and f"{len(handed) / N_IMAGES:.3f}" in status
        page.wait_for_function("document.querySelector('#cost-summary').innerText.includes('4 queries logged')")
        # _fullData: what plotly drew (``data`` keeps the base64 typed arrays it was sent)
        drawn = ("(() => { const g = document.querySelector('#cost-cumulative .js-plotly-plot');"
                 " const t = g && g._fullData && g._fullData.find(t => t.name === 'cascade');"
                 " return t ? Array.from(t.y) : null; })()")  # fmt: skip
        page.wait_for_function(f"({drawn} || []).length === 5")
        curve = page.evaluate(drawn)
        assert len(curve) == 5 and curve[-1] == N_IMAGES * 1_000 + len(handed) * 50_000  # build + misses
