"""A Space serves its page at once and prepares its preset behind it; preloaded weights are read where they lie.

The preparation (``analysis.front_door.Preparation``) is checked twice: on a test engine with a
preparation step the test holds and releases (no clock), and as a visitor meets it, ``app.main``
started with ``SPACE_ID`` on a simulated hub (tests/hubsim.py) in a real browser. There the
injected ``prepare`` (``app.main``'s documented argument) runs the real one, then waits for a file
the test writes: the page is checked while the preset is not ready, with no timing involved.
The cache is split as on a Space with persistent storage: the models in the default cache (where
``preload_from_hub`` puts them at build time), the dataset in the storage's (an earlier start's download).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from analysis import front_door
from analysis.presets import PAPER_TAGS
from analysis.progress import Step, Unit
from analysis.switch import NotReady
from cascade.errors import WeightsUnavailable
from tests import hubsim
from tests.conftest import ROOT

FLICKR = "clip-benchmark/wds_flickr30k"
N_FLICKR, N_SHARDS = 32, 2  # flickr30k-cpu's k_1 = 20 fits the gallery
SPACE_MODELS = ("ViT-B-32", "ViT-B-16", "ViT-L-14")  # flickr30k-cpu's levels


# -- the preparation, on a test engine -----------------------------------------------------------------------


class HeldStep:
    """A ``prepare`` that reports a shard, then waits until the test releases it (counting its calls)."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.calls: list[str] = []
        self.reached, self.release = threading.Event(), threading.Event()
        self.fail = fail

    def __call__(self, name: str, progress) -> None:
        self.calls.append(name)
        progress(Step("dataset shards downloaded and materialised", Unit.SHARDS), 1, 4)
        self.reached.set()
        assert self.release.wait(60), "the test never released the preparation"
        if self.fail is not None:
            raise self.fail


def test_one_preparation_serves_every_caller_and_holds_their_work_back_until_ready(engine):
    held = HeldStep()
    preparation = front_door.Preparation(engine, engine.preset.name, ready=held)
    callers = [threading.Thread(target=preparation.start) for _ in range(4)]  # visitors and main alike
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert held.reached.wait(60)
    report = preparation.report()
    assert (report.phase, report.preset) == (front_door.Phase.PREPARING, "test")
    assert report.steps == ("dataset shards downloaded and materialised: 1 of 4 shards",)
    with pytest.raises(NotReady, match="test is still being prepared"):
        engine.search(engine.default_choice(), "a red circle")  # no second preparation through a search
    assert engine.cost_view(engine.default_choice()) is None  # the log's views read on: nothing built yet
    held.release.set()
    preparation.join(60)
    report = preparation.report()
    assert report.phase is front_door.Phase.READY and report.notice == ""
    assert f"embedding: {40:,} of {40:,} images" in report.steps  # tests/app_engine.py's world, by level 1
    assert engine.cascades.peek(engine.default_choice()) is not None  # built by the preparation
    assert len(engine.search(engine.default_choice(), "a red circle").result.levels[-1].ids) == 5
    assert held.calls == ["test"]


def test_a_failed_preparation_switches_the_engine_to_the_fallback_with_one_line(engine):
    held = HeldStep(fail=WeightsUnavailable("dataset clip-benchmark/wds_flickr30k is not in the cache"))
    warmed = []
    preparation = front_door.Preparation(engine, "test", ready=held, then=lambda: warmed.append(engine.preset.name))
    preparation.start()
    held.release.set()
    preparation.join(60)
    report = preparation.report()
    assert (report.phase, report.preset, engine.preset.name) == (front_door.Phase.SWITCHED, "shapes", "shapes")
    assert report.notice == (
        "Switched to the offline shapes preset: test is unavailable "
        "(dataset clip-benchmark/wds_flickr30k is not in the cache)"
    )
    assert "\n" not in report.notice
    assert warmed == ["shapes"]  # the warm-up ran on the fallback
    assert engine.default_choice().levels == ("shapes:small", "shapes:large")
    engine.cascades  # noqa: B018  (the gate is open again: no NotReady)


# -- weights found where they were preloaded -----------------------------------------------------------------


@pytest.fixture(scope="module")
def split_hub(tmp_path_factory) -> dict:
    """A Space's two caches: the default one (``XDG_CACHE_HOME``) with the models ``preload_from_hub`` put there
    at build time, and the persistent storage's with the Flickr30k shards an earlier start downloaded."""
    return make_split_hub(tmp_path_factory.mktemp("split-hub"))


def make_split_hub(root: Path) -> dict:
    xdg, storage = root / "xdg", root / "data"
    preloaded, persistent = xdg / "huggingface" / "hub", storage / ".huggingface" / "hub"
    for seed, arch in enumerate(SPACE_MODELS):
        hubsim.put_openclip(preloaded, arch, PAPER_TAGS[arch], seed=seed)
    hubsim.put_wds_dataset(persistent, FLICKR, N_FLICKR, n_shards=N_SHARDS, seed=1)
    return {"root": root, "xdg": xdg, "storage": storage, "preloaded": preloaded, "persistent": persistent}


def space_env(split: dict, cache_dir: Path) -> dict[str, str]:
    """A Space's environment: no HF_HOME of its own, the default cache under ``split``'s XDG_CACHE_HOME, offline."""
    unset = ("HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")
    env = {key: value for key, value in os.environ.items() if key not in unset}
    env.update(XDG_CACHE_HOME=str(split["xdg"]), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.update(SPACE_ID="someone/cascade-search", CASCADE_CACHE_DIR=str(cache_dir))
    return env


@pytest.mark.slow  # the split hub: two full-size ViT-B checkpoints to write
def test_preloaded_models_are_read_in_place_and_the_rest_goes_to_the_storage(split_hub, tmp_path):
    """After ``use_space_storage``, huggingface_hub (imported afterwards, as ``main`` does) resolves the models
    to the default cache's files and everything else, downloads included, to the storage."""
    code = (
        "import pathlib, sys, app; app.use_space_storage(storage=pathlib.Path(sys.argv[1])); "
        "from cascade._torchvision_compat import ensure_torchvision_compat; ensure_torchvision_compat(); "
        "import json, open_clip; from huggingface_hub import constants, try_to_load_from_cache; "
        "from cascade import datasets; "
        "models = {a: try_to_load_from_cache(open_clip.get_pretrained_cfg(a, t)['hf_hub'].rstrip('/'), "
        "'open_clip_model.safetensors') for a, t in json.loads(sys.argv[2]).items()}; "
        "shards = datasets.materialise('flickr30k')[0]; "
        "print(json.dumps({'home': constants.HF_HOME, 'hub': constants.HF_HUB_CACHE, 'models': models}))"
    )
    tags = {arch: PAPER_TAGS[arch] for arch in SPACE_MODELS}
    env = space_env(split_hub, tmp_path / "cascade")
    command = [sys.executable, "-c", code, str(split_hub["storage"]), json.dumps(tags)]
    out = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["home"] == str(split_hub["storage"] / ".huggingface")
    assert found["hub"] == str(split_hub["persistent"])  # where huggingface_hub downloads what is missing
    for arch, path in found["models"].items():
        assert path is not None, arch
        assert Path(path).resolve().is_relative_to(split_hub["preloaded"].resolve()), path  # read where it lies
    copied = [p for p in split_hub["persistent"].rglob("*") if p.is_file() and not p.is_symlink()]
    assert copied and all("datasets--" in str(p.relative_to(split_hub["persistent"])) for p in copied)  # no weights
    assert (tmp_path / "cascade" / "datasets" / "flickr30k" / "COMPLETE.json").is_file()


def test_a_repository_already_in_the_storage_wins_and_dangling_links_go(tmp_path):
    preloaded, storage = tmp_path / "xdg" / "huggingface" / "hub", tmp_path / "data"
    persistent = storage / ".huggingface" / "hub"
    hubsim.put_file(preloaded, "model", "org/both", "w.bin", b"preloaded")
    hubsim.put_file(preloaded, "model", "org/preloaded", "w.bin", b"preloaded")
    hubsim.put_file(persistent, "model", "org/both", "w.bin", b"downloaded")
    persistent.joinpath("models--org--gone").symlink_to(tmp_path / "no-such-folder")  # an older image's preload
    environ = {"SPACE_ID": "someone/cascade", "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    front_door.use_persistent_hub(environ, storage)
    assert environ["HF_HOME"] == str(storage / ".huggingface")
    assert not (persistent / "models--org--both").is_symlink()  # the storage's own copy wins
    assert (persistent / "models--org--preloaded").resolve() == (preloaded / "models--org--preloaded").resolve()
    assert not (persistent / "models--org--gone").is_symlink()
    linked = persistent / "models--org--preloaded" / "snapshots" / hubsim.commit_of("org/preloaded") / "w.bin"
    assert linked.read_bytes() == b"preloaded"


# -- as a visitor meets it: app.main with SPACE_ID, a real browser -------------------------------------------

HARNESS = """
import pathlib, sys, time
import app
from analysis import front_door

port, db, storage, release, calls, mode = sys.argv[1:]
app.SPACE_STORAGE = pathlib.Path(storage)

def held(name, progress):
    # The real preparation, then held until the test writes ``release``; "fail": then fails.
    with open(calls, "a") as log:
        log.write(name + "\\n")
    from tests import hubsim  # after main() has set HF_HOME: open_clip imports huggingface_hub
    hubsim.register_shrunk()
    front_door.prepare(name, progress)
    while not pathlib.Path(release).exists():
        time.sleep(0.1)
    if mode == "fail":
        from cascade.errors import WeightsUnavailable
        raise WeightsUnavailable("the hub went away (simulated)")

sys.exit(app.main(["--host", "127.0.0.1", "--port", port, "--db", db], prepare=held))
"""


class SpaceApp:
    """``app.main`` with SPACE_ID on ``split_hub``, its preparation held until ``release()``."""

    def __init__(self, split: dict, tmp_path: Path, mode: str = "ok") -> None:
        from tests.app_engine import free_port

        self.url = f"http://127.0.0.1:{free_port()}/"
        self.release_file, self.calls = tmp_path / "release", tmp_path / "calls"
        self.log = tmp_path / "app.log"
        port = self.url.rsplit(":", 1)[1].strip("/")
        args = [port, str(tmp_path / "db.duckdb"), str(split["storage"]), str(self.release_file), str(self.calls), mode]
        env = space_env(split, tmp_path / "cascade")
        with open(self.log, "w") as log:  # the child keeps its own descriptor
            command = [sys.executable, "-c", HARNESS, *args]
            self.server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)

    def release(self) -> None:
        self.release_file.write_text("go")

    def close(self) -> None:
        self.release()
        self.server.terminate()
        self.server.wait(timeout=30)


@pytest.fixture
def space_app(split_hub, tmp_path, request):
    started = SpaceApp(split_hub, tmp_path, getattr(request, "param", "ok"))
    yield started
    started.close()


def _open(browser, url: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(240_000)  # ViT-B-16 embeds 30 photos on a shared CPU: minutes at worst
    page.goto(url)
    return page


def _search(page) -> None:
    page.locator("#query textarea").fill("a red dog on a green background")
    page.locator("#search-button").click()
    page.wait_for_function("document.querySelectorAll('#stage-3 img').length === 10")
    assert [page.locator(f"#stage-{n} img").count() for n in (1, 2, 3)] == [20, 10, 10]


@pytest.mark.slow
@pytest.mark.browser
def test_the_page_answers_while_the_space_prepares_and_every_page_searches_once_ready(space_app):
    from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, _sync_playwright
    from tests.test_hub_datasets import _wait_until_served

    _wait_until_served(space_app.url, space_app.server, space_app.log)
    with _sync_playwright()() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            first, second = _open(browser, space_app.url), _open(browser, space_app.url)
            for page in (first, second):  # both see the one preparation, its real steps done, Search off
                panel = page.locator("#preparing")
                panel.get_by_text(f"dataset shards downloaded and materialised: {N_SHARDS} of {N_SHARDS}").wait_for()
                panel.get_by_text("models loaded: 3 of 3 models").wait_for()
                assert f"images materialised: {N_FLICKR} of {N_FLICKR} images" in panel.inner_text()
                assert "flickr30k-cpu" in page.locator("#preset-line").inner_text()
                assert " on Flickr30k test split, " in page.locator("#search-status").inner_text()  # never "built-in"
                assert page.locator("#search-button").is_disabled()
            assert not space_app.release_file.exists()  # all of this while the preset was not ready
            space_app.release()
            for page in (first, second):
                page.locator("#preparing").wait_for(state="hidden")
                page.wait_for_function("!document.querySelector('#search-button').disabled")
                _search(page)
                status = page.locator("#search-status").inner_text()
                assert status.endswith(f" on Flickr30k test split, {N_FLICKR} images"), status  # counted, loaded
            assert "ViT-L-14" in second.locator("#cost-card").inner_text()
        finally:
            browser.close()
    assert space_app.calls.read_text().splitlines() == ["flickr30k-cpu"]  # one preparation for every page


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.parametrize("space_app", ["fail"], indirect=True)
def test_a_failed_preparation_switches_the_open_page_to_shapes_with_one_line(space_app):
    from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, _sync_playwright
    from tests.test_hub_datasets import _wait_until_served

    _wait_until_served(space_app.url, space_app.server, space_app.log)
    with _sync_playwright()() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = _open(browser, space_app.url)
            page.locator("#preparing").get_by_text("models loaded: 3 of 3 models").wait_for()
            space_app.release()
            line = page.locator("#preset-line")
            line.get_by_text("Switched to the offline shapes preset").wait_for()
            assert (
                line.inner_text()
                .splitlines()[-1]
                .endswith("flickr30k-cpu is unavailable (the hub went away (simulated))")
            )
            assert "Preset: shapes" in line.inner_text()
            page.wait_for_function("!document.querySelector('#search-button').disabled")
            assert "shapes:small" in page.locator("#search-status").inner_text()  # the builder follows the switch
            page.locator("#query textarea").fill("a red circle")
            page.locator("#search-button").click()
            page.wait_for_function("document.querySelectorAll('#stage-2 img').length === 10")  # shapes' ks: 15, 10
            assert page.locator("#stage-1 img").count() == 15
            # The Evaluate tab, built for flickr30k-cpu, offers shapes' own comparisons once opened.
            page.get_by_role("tab", name="Evaluate").click()
            configs = page.locator("#eval-configs")
            configs.get_by_text("shapes:small > shapes:large (k 15,10)").wait_for()
            assert "ViT-L-14" not in configs.inner_text()
        finally:
            browser.close()
