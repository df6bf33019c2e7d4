"""Retake the README's screenshots: one per tab, from a real browser driving the real app.

    .venv/bin/python docs/screenshots.py            # the shapes preset, into docs/
    .venv/bin/python docs/screenshots.py --replay 300 --limit 300 --out /tmp/shots

Starts the app on a fresh cache directory (so the log holds only this run), drives
Debian's Chromium with Playwright, and saves docs/screenshot-{search,cost,whatif,evaluate}.png.
Takes a few minutes on 2 cores (the first start embeds the 5,000-image gallery).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--headless"]  # fmt: skip
QUERIES = (
    "two small striped red stars to the left of a large blue circle on a gray background",
    "a large dotted green hexagon above two small yellow squares on a white background",
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "docs"))
    parser.add_argument("--port", type=int, default=7940)
    parser.add_argument("--replay", type=int, default=300, help="queries in the Cost tab's replay")
    parser.add_argument("--limit", type=int, default=300, help="captions per configuration in the Evaluate tab")
    parser.add_argument(
        "--only", default="", help="comma-separated shots to take (default: all), e.g. trace,whatif-units"
    )
    args = parser.parse_args()
    os.environ["CASCADE_CACHE_DIR"] = tempfile.mkdtemp(prefix="cascade-shots-")
    sys.path.insert(0, str(ROOT))

    from playwright.sync_api import sync_playwright

    import app
    from analysis.engine import Engine
    from analysis.presets import PRESETS
    from analysis.store import Store
    from cascade.paths import default_db_path

    engine = Engine(Store(default_db_path()), preset=PRESETS["shapes"])
    demo = app.launch(engine, port=args.port, block=False)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(600_000)
            page.goto(demo.local_url)
            shots = {"search": lambda: search_tab(page, out), "trace": lambda: trace_shot(page, out),
                     "cost": lambda: cost_tab(page, out, args.replay), "whatif": lambda: whatif_tab(page, out),
                     "whatif-units": lambda: whatif_units(page, out),
                     "evaluate": lambda: evaluate_tab(page, out, args.limit)}  # fmt: skip
            wanted = [name for name in args.only.split(",") if name] or list(shots)
            for name in shots:
                if name in wanted:
                    shot_tab = shots[name]
                    shot_tab()
            browser.close()
    finally:
        demo.close()
    return 0


def shot(page, out: Path, name: str) -> None:
    time.sleep(1.5)  # let plotly finish its transitions
    page.screenshot(path=str(out / f"screenshot-{name}.png"), full_page=True)
    print("saved", out / f"screenshot-{name}.png", flush=True)


def search_tab(page, out: Path) -> None:
    page.locator("#rerank input").check()
    page.wait_for_function("document.querySelector('#search-status').innerText.includes(':cross')")
    query, card = page.locator("#query textarea"), page.locator("#cost-card")
    for text in QUERIES:
        before = card.inner_text()
        query.fill(text)
        page.locator("#search-button").click()
        # the card names no query; a new search shows as a new card (wall times always differ)
        page.wait_for_function(
            "before => { const t = document.querySelector('#cost-card').innerText; "
            "return t !== before && t.includes('total'); }",
            arg=before,
        )
    page.wait_for_function("document.querySelectorAll('#stage-3 img').length > 0")
    shot(page, out, "search")


def trace_shot(page, out: Path) -> None:
    """The Search tab's stage trace for a gallery caption (an example), cropped to the trace and the first stages."""
    page.get_by_role("tab", name="Search").click()
    page.locator("#query textarea").fill(QUERIES[0])
    page.locator("#search-button").click()
    page.wait_for_function("document.querySelector('#stage-trace').innerText.length > 0")
    page.locator("#query-examples button, #query-examples td").first.click()  # a caption: the trace follows its image
    time.sleep(1.0)
    page.locator("#search-button").click()
    page.wait_for_function("document.querySelector('#stage-trace').innerText.includes('stage')")
    time.sleep(1.5)
    page.locator("#stage-trace").screenshot(path=str(out / "screenshot-trace.png"))
    print("saved", out / "screenshot-trace.png", flush=True)


def whatif_units(page, out: Path) -> None:
    """The What-if tab in real units: seconds, money and energy of the modelled cascade on a named accelerator."""
    page.get_by_role("tab", name="What-if").click()
    page.locator("#whatif-plot .js-plotly-plot").wait_for()
    page.wait_for_function("document.querySelector('#whatif-real-units').innerText.length > 0")
    time.sleep(1.5)
    box = page.locator("#whatif-summary").bounding_box()
    plot = page.locator("#whatif-plot").bounding_box()
    clip = {"x": 0, "y": max(0, box["y"] - 320), "width": 1400, "height": plot["y"] + plot["height"] - box["y"] + 330}
    page.screenshot(path=str(out / "screenshot-whatif-units.png"), clip=clip, full_page=True)
    print("saved", out / "screenshot-whatif-units.png", flush=True)


def cost_tab(page, out: Path, replay_queries: int) -> None:
    page.get_by_role("tab", name="Cost").click()
    page.locator("#cost-cumulative .js-plotly-plot").wait_for()
    box = page.locator("#replay-queries input[type=number]")
    box.fill(str(replay_queries))
    box.press("Enter")
    page.locator("#replay-button").click()
    page.wait_for_function("document.querySelector('#replay-status').innerText.includes('Replay done')")
    shot(page, out, "cost")


def whatif_tab(page, out: Path) -> None:
    page.get_by_role("tab", name="What-if").click()
    page.locator("#whatif-plot .js-plotly-plot").wait_for()
    page.get_by_role("button", name="Show Table 1 (both MAC modes)").click()
    page.wait_for_function("document.body.innerText.includes('Why the two modes differ')")
    shot(page, out, "whatif")


def evaluate_tab(page, out: Path, limit: int) -> None:
    page.get_by_role("tab", name="Evaluate").click()
    for label in page.locator("#eval-configs label").all():
        box = label.locator("input")
        if not box.is_checked() and "your cascade" not in label.inner_text():
            box.check()
    box = page.locator("#eval-limit input[type=number]")
    box.fill(str(limit))
    box.press("Enter")
    page.get_by_role("button", name="Evaluate", exact=True).click()
    page.wait_for_function("document.body.innerText.includes('Evaluated')")
    shot(page, out, "evaluate")


if __name__ == "__main__":
    sys.exit(main())
