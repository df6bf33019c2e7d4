"""Real galleries and encoders by name, proven on a simulated hub (tests/hubsim.py), offline.

One simulated cache per module: ViT-B-32 and ViT-B-16 at full size with random weights under
their real repo ids, ViT-L-14 and ViT-g-14 shrunk (see hubsim), and both datasets as a few
dozen generated photos in CLIP_benchmark's webdataset format. The commands run as a user
runs them, with ``HF_HOME`` pointing at that cache and ``HF_HUB_OFFLINE=1``.

Time goes into the full-size models (~10 s to write them, ~0.5 s a ViT-B-16 image on one core),
so the tests that need them form one xdist group of their own (conftest), whose worker writes them
once. Of those, the Flickr30k evaluation, ``reproduce`` and the Space share a database as a Space
shares its cache between queries (each embeds only what the ones before it did not). The rest,
which need no model, stay in the module's group.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from analysis.presets import PAPER_TAGS
from analysis.replay import workload
from analysis.store import Store
from cascade.corpus import Corpus
from tests import hubsim
from tests.conftest import ROOT
from tests.fakes import count_features

B32, B16 = "openclip:ViT-B-32@laion2b_s34b_b79k", "openclip:ViT-B-16@laion2b_s34b_b88k"
FLICKR, COCO = "clip-benchmark/wds_flickr30k", "clip-benchmark/wds_mscoco_captions"
N_FLICKR, N_COCO = 32, 22  # flickr30k-cpu's k_1 = 20 fits the gallery
K1 = 10  # the evaluations' level-1 k: the ViT-B-16 images one query costs (the last k is 10, for R@10)
QUERIES = 5  # captions reproduce evaluates: the first image's five (ViT-B text towers cost ~0.1 s a caption each)
EVAL_QUERIES = 2  # the Flickr30k evaluation's: each costs level 2 up to K1 full-size ViT-B-16 images (~0.5 s each)
pytestmark = pytest.mark.slow
MODELS_GROUP = pytest.mark.xdist_group("tests.test_hub_datasets.models")  # one worker writes the models once


@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> dict:
    """``{"hf_home", "cache_dir", "db"}`` of a simulated hub with both datasets (no model yet: see ``models``).

    ``db`` is the database the Flickr30k evaluation and ``reproduce`` fill and the Space then reads; every
    other test has its own.
    """
    root = tmp_path_factory.mktemp("hubsim")
    hub = root / "hf" / "hub"
    hubsim.put_wds_dataset(hub, FLICKR, N_FLICKR, n_shards=2, seed=1, extension="jpg")
    hubsim.put_wds_dataset(hub, COCO, N_COCO, n_shards=3, seed=2, extension="webp")
    return {"hf_home": root / "hf", "cache_dir": root / "cascade", "db": root / "cascade.duckdb"}


@pytest.fixture(scope="module")
def models(simulated) -> dict:
    """``simulated`` with the four models in its hub (~10 s: two full-size ViT-B checkpoints to generate and write)."""
    hub = simulated["hf_home"] / "hub"
    for seed, arch in enumerate(("ViT-B-32", "ViT-B-16", "ViT-L-14", "ViT-g-14")):
        hubsim.put_openclip(hub, arch, PAPER_TAGS[arch], seed=seed)
    return simulated


def cascade(sim: dict, *args: str, shrunk: bool = False, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m cascade ARGS`` on the simulated hub (``shrunk``: with hubsim's shrunken configs registered)."""
    env = {**hubsim.hub_env(sim["hf_home"]), "CASCADE_CACHE_DIR": str(sim["cache_dir"])}
    command = ([sys.executable, "-c", "import sys; from tests import hubsim; hubsim.register_shrunk(); "
                "from cascade_cli import main; sys.exit(main(sys.argv[1:]))"] if shrunk
               else [sys.executable, "-m", "cascade"])  # fmt: skip
    return subprocess.run([*command, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def karpathy_of(sim: dict, name: str) -> dict:
    return json.loads((sim["cache_dir"] / "datasets" / name / "captions.json").read_text())


# Flickr30k: EVAL_QUERIES captions, whose level-1 top k_1 may overlap (level 2 pays for their union); COCO: one
# caption, whose k_1 images are exactly what level 2 embeds.
@MODELS_GROUP  # first of its group: what it embeds, reproduce and the Space then find cached
def test_eval_on_flickr30k(models, tmp_path):
    # The module's database while nothing has written it yet (then every embedding in it is one this
    # evaluation computed, as the checks need), else a fresh one.
    db = models["db"] if not models["db"].exists() else tmp_path / "eval.duckdb"
    _check_eval(models, db, "flickr30k", N_FLICKR, EVAL_QUERIES)


@MODELS_GROUP
def test_eval_on_coco(models, tmp_path):
    _check_eval(models, tmp_path / "eval.duckdb", "coco", N_COCO, 1)


def _check_eval(models: dict, db: Path, name: str, n_images: int, queries: int) -> None:
    """``cascade eval --dataset NAME`` with ViT-B-32 then ViT-B-16 into ``db``, which nothing else has written."""
    done = cascade(models, "eval", "--dataset", name, "--levels", f"{B32},{B16}", "--ks", f"{K1},10", "--json",
                   "--limit", str(queries), "--db", str(db), "--quiet")  # fmt: skip
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout)
    assert row["levels"][0].startswith(B32 + "#rev-" + hubsim.commit_of("laion/CLIP-ViT-B-32-laion2B-s34B-b79K")[:12])
    assert row["levels"][1].startswith(B16 + "#rev-" + hubsim.commit_of("laion/CLIP-ViT-B-16-laion2B-s34B-b88K")[:12])
    assert row["ks"] == [K1, 10]
    # Every generated sample is materialised with its five captions; the first ``queries`` are the queries.
    karpathy = karpathy_of(models, name)
    assert len(karpathy["images"]) == n_images
    assert {len(image["sentences"]) for image in karpathy["images"]} == {5}
    # Fresh-system cost: level 1 embeds the gallery once, level 2 each image some query handed it, once. The
    # store holds what was embedded: the whole gallery by ViT-B-32, and by ViT-B-16 at least one query's k_1
    # images and at most every query's.
    with Store(db, read_only=True) as store:
        level1_images, level2_images = (count_features(store, level) for level in row["levels"])
    assert level1_images == n_images
    assert K1 <= level2_images <= min(n_images, queries * K1)
    assert row["image_macs"] == n_images * _image_macs("ViT-B-32") + level2_images * _image_macs("ViT-B-16")
    assert row["alpha"] == pytest.approx(level2_images / n_images)


def _image_macs(arch: str) -> int:
    from cascade import cost

    return cost.openclip_image_macs(arch, mode="full")


def test_a_second_start_reads_the_materialised_folder_only(simulated, tmp_path):
    """Materialised once: with the dataset gone from the hub cache it still loads, and no image is rewritten.

    The level is the built-in ``shapes:small``: what is under test is the gallery, and a hub model
    would add seconds of loading to each start.
    """
    index = ("index", "--dataset", "flickr30k", "--levels", "shapes:small", "--db", str(tmp_path / "index.duckdb"))
    first = cascade(simulated, *index)
    assert first.returncode == 0, first.stderr
    images = sorted((simulated["cache_dir"] / "datasets" / "flickr30k" / "images").iterdir())
    stamps = {p.name: p.stat().st_mtime_ns for p in images}
    repo = simulated["hf_home"] / "hub" / f"datasets--{FLICKR.replace('/', '--')}"
    repo.rename(repo.with_name(repo.name + ".away"))
    try:
        again = cascade(simulated, *index, "--json")
    finally:
        repo.with_name(repo.name + ".away").rename(repo)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {"images": N_FLICKR, "embedded": 0, "reused": N_FLICKR, "skipped": 0}
    assert {p.name: p.stat().st_mtime_ns for p in images} == stamps


def test_replay_runs_on_a_named_dataset(simulated):
    """The shapes preset's cascade over the simulated Flickr30k photos: the gallery, and a workload of its captions."""
    done = cascade(simulated, "replay", "--dataset", "flickr30k", "--workload", "uniform", "--queries", "12",
                   "--json", "--quiet")  # fmt: skip
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout)
    assert (row["gallery"], row["images"], row["queries"]) == ("flickr30k", N_FLICKR, 12)
    root = simulated["cache_dir"] / "datasets" / "flickr30k"
    queries = workload(Corpus.from_karpathy(root / "captions.json", root), "uniform", 12, seed=0)  # the input
    assert row["distinct_queries"] == len(set(queries)) and 0 < row["alpha"] <= 1


@pytest.mark.parametrize(
    ("args", "missing"),
    [
        (("eval", "--dataset", "flickr30k", "--levels", f"{B32},{B16}", "--ks", "20,10", "--json"), FLICKR),
        (("eval", "--dataset", "coco", "--levels", f"{B32},{B16}", "--ks", "20,10", "--json"), COCO),
        (("reproduce", "--dataset", "flickr30k", "--family", "vit", "--limit", "20", "--json"), FLICKR),
    ],
)
def test_without_the_cache_each_command_names_what_is_missing(tmp_path, args, missing):
    sim = {"hf_home": tmp_path / "hf", "cache_dir": tmp_path / "cascade"}
    done = cascade(sim, *args, "--db", str(tmp_path / "db.duckdb"), timeout=60)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and missing in lines[0], done.stderr
    assert "HF_HOME" in lines[0] or "hub is reachable" in lines[0]


def test_weights_missing_offline_name_their_repo(tmp_path):
    """The dataset is there, a model is not: the line names the model's repository."""
    sim = {"hf_home": tmp_path / "hf", "cache_dir": tmp_path / "cascade"}
    hubsim.put_wds_dataset(sim["hf_home"] / "hub", FLICKR, N_FLICKR, n_shards=2, seed=1)
    done = cascade(sim, "eval", "--dataset", "flickr30k", "--levels", f"{B32},{B16}", "--ks", "20,10",
                   "--db", str(tmp_path / "db.duckdb"), timeout=60)  # fmt: skip
    assert done.returncode == 1 and "laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in done.stderr, done.stderr


def test_presets_name_the_datasets_and_tags():
    from analysis import presets

    cpu = presets.get("flickr30k-cpu")
    assert cpu.dataset == "flickr30k" and cpu.levels[0] == B32
    vit = presets.get("coco-vit")
    assert vit.dataset == "coco"
    assert [levels for levels, _ in vit.comparisons][:3] == [
        ("openclip:ViT-B-16@laion2b_s34b_b88k",), ("openclip:ViT-L-14@laion2b_s32b_b82k",),
        ("openclip:ViT-g-14@laion2b_s34b_b88k",)]  # fmt: skip
    assert dict(presets.get("flickr30k-blip").comparisons)[("blip:base", "blip:large")] == (50, 10)
    assert presets.get("flickr30k-blip").reranker == "blip:large+itm"


@MODELS_GROUP
def test_reproduce_runs_every_row_of_the_vit_family(models):
    done = cascade(models, "reproduce", "--dataset", "flickr30k", "--family", "vit", "--limit", str(QUERIES),
                   "--json", "--db", str(models["db"]), "--quiet", shrunk=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    table = json.loads(done.stdout)
    assert (table["n_images"], table["n_queries"]) == (N_FLICKR, QUERIES)
    rows = table["rows"]
    assert [row["cascade"] for row in rows] == [["g/14"], ["B/16"], ["L/14"], ["L/14", "g/14"], ["B/16", "g/14"],
                                                ["B/16", "L/14", "g/14"]]  # fmt: skip
    # Table 1's ks, each clamped to the 32-image gallery: k_1 = 50 -> 32, k_2 = 14, 10 results.
    assert [row["ks"] for row in rows] == [[10], [10], [10], [32, 10], [32, 10], [32, 14, 10]]
    assert rows[1]["levels"][0].startswith("openclip:ViT-B-16@laion2b_s34b_b88k#rev-")
    # The paper's figures beside ours, and ours minus theirs per cell.
    assert rows[0]["paper"] == {"r1": 75.6, "r5": 92.6, "r10": 95.8, "lifetime": 1.0, "early_latency": None}
    for row in rows:
        for column in ("r1", "r5", "r10"):
            assert row["diff"][column] == pytest.approx(row[column] - row["paper"][column])
    assert rows[5]["paper"]["early_latency"] == 1.75 and rows[5]["early_latency_reduction"] is not None


@MODELS_GROUP
def test_the_space_starts_on_flickr30k_cpu_and_serves_a_search(models, tmp_path):
    """``python app.py`` with ``SPACE_ID`` set on the simulated cache: the Space preset, a search in a real browser.

    Its database is the module's: after the Flickr30k evaluation (the gallery by ViT-B-32, the Space's
    level 1) and ``reproduce`` (by ViT-B-16, its level 2) the search finds its images cached, as on a
    Space after its first queries. Run alone, it embeds them itself.
    """
    from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, _sync_playwright

    sync_playwright = _sync_playwright()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**hubsim.hub_env(models["hf_home"]), "CASCADE_CACHE_DIR": str(models["cache_dir"]),
           "SPACE_ID": "someone/cascade-search"}  # fmt: skip
    code = (
        "import sys; from tests import hubsim; hubsim.register_shrunk(); import app; "
        f"sys.exit(app.main(['--host', '127.0.0.1', '--port', '{port}', '--db', '{models['db']}']))"
    )
    server = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=open(tmp_path / "app.log", "w"))  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_until_served(url, server, tmp_path / "app.log")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.set_default_timeout(240_000)  # ViT-B-16 embeds 30 photos on a shared CPU: minutes at worst
                page.goto(url)
                assert "flickr30k-cpu" in page.locator("#preset-line").inner_text()
                page.locator("#query textarea").fill("a red dog on a green background")
                page.locator("#search-button").click()
                page.wait_for_function("document.querySelectorAll('#stage-3 img').length === 10")
                assert [page.locator(f"#stage-{n} img").count() for n in (1, 2, 3)] == [20, 10, 10]
                assert "ViT-L-14" in page.locator("#cost-card").inner_text()
            finally:
                browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


def _wait_until_served(url: str, server: subprocess.Popen, log: Path, seconds: float = 300) -> None:
    import urllib.request

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"the app exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"the app did not serve {url}: {log.read_text()[-2000:]}")
