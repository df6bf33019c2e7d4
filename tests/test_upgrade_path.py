"""The upgrade path, end to end on the simulated hub: from an existing ViT-B-32 index to ViT-L-14, without
re-embedding.

A team's clip-retrieval index was made by ``openclip:ViT-B-32@laion2b_s34b_b79k`` (here: the simulated hub's
random weights under that real tag, the images a generated gallery). The README's walk-through runs as a user
types it, each command a process of its own (``python -m cascade``, ViT-L-14 shrunk as everywhere on the
simulated hub): import the index, estimate the upgrade's alpha from a query log, then search through
ViT-B-32 > ViT-L-14, which embeds only the few images level 1 hands on and never one image with ViT-B-32.
Expected figures come from the index the test wrote and the searches' own level-1 rankings, not from the code
under test.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis.presets import PAPER_TAGS
from cascade.encoders import create_encoder
from tests import hubsim
from tests.conftest import ROOT
from tests.index_layouts import embedded_gallery

OLD = f"openclip:ViT-B-32@{PAPER_TAGS['ViT-B-32']}"
NEW = f"openclip:ViT-L-14@{PAPER_TAGS['ViT-L-14']}"
N_IMAGES, K1, K2 = 24, 8, 3
STORED_UNDER = "/srv/photos/"  # where the index's author kept the images
QUERIES = ("a red dog on the grass", "a blue boat", "a red dog on the grass", "two yellow kites")  # a log


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """The simulated hub with both models, a photo folder, and its ViT-B-32 index in clip-retrieval's layout."""
    from huggingface_hub import constants

    root = tmp_path_factory.mktemp("upgrade")
    hf_home = root / "hf"
    hubsim.put_openclip(hf_home / "hub", "ViT-B-32", PAPER_TAGS["ViT-B-32"], seed=0)
    hubsim.put_openclip(hf_home / "hub", "ViT-L-14", PAPER_TAGS["ViT-L-14"], seed=1)
    with pytest.MonkeyPatch.context() as patch:  # this process embeds the "existing" index with the hub's ViT-B-32
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setattr(constants, "HF_HUB_CACHE", str(hf_home / "hub"))
        create_encoder.cache_clear()
        gallery = embedded_gallery(root / "photos", OLD, N_IMAGES)
    create_encoder.cache_clear()
    index = root / "index"
    (index / "img_emb").mkdir(parents=True)
    (index / "metadata").mkdir()
    np.save(index / "img_emb" / "img_emb_0.npy", gallery.embeddings.astype(np.float16))
    paths = [STORED_UNDER + gallery.corpus.paths[image_id].name for image_id in gallery.corpus.ids]
    pq.write_table(pa.table({"image_path": paths}), index / "metadata" / "metadata_0.parquet")
    log = root / "queries.txt"
    log.write_text("".join(query + "\n" for query in QUERIES))
    return {"hf_home": hf_home, "gallery": gallery, "index": index, "log": log, "db": root / "photos.duckdb"}


def cascade(world: dict, *args: str) -> dict:
    """``cascade ARGS --json`` as a user runs it on the simulated hub; its JSON answer."""
    env = {**hubsim.hub_env(world["hf_home"]), "CASCADE_CACHE_DIR": str(world["hf_home"].parent / "cache")}
    command = [
        sys.executable,
        "-c",
        "import sys; from tests import hubsim; hubsim.register_shrunk(); "
        "from cascade_cli import main; sys.exit(main(sys.argv[1:]))",
    ]
    done = subprocess.run([*command, *args, "--json", "--quiet"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def search(world: dict, query: str) -> list[dict]:
    levels = f"{OLD},{NEW}"
    answer = cascade(
        world, "search", query, "--embeddings", OLD, "--levels", levels, "--ks", f"{K1},{K2}", "--db", str(world["db"])
    )
    return answer["levels"]


@pytest.fixture(scope="module")
def imported(world) -> dict:
    images = str(world["gallery"].folder)
    return cascade(
        world,
        "import-embeddings",
        str(world["index"]),
        "--encoder",
        OLD,
        "--images",
        images,
        "--strip-prefix",
        STORED_UNDER,
        "--db",
        str(world["db"]),
    )


def test_the_index_imports_under_the_hub_revision_of_its_model(world, imported):
    assert imported == {
        "images": N_IMAGES,
        "imported": N_IMAGES,
        "normalised": 0,
        "missing": 0,
        "dim": 512,
        "dtype": "float16",
        "encoder": world["gallery"].encoder_id,  # the hub snapshot's revision is part of the id
    }
    assert "#rev-" in imported["encoder"]


@pytest.fixture(scope="module")
def searched(world, imported) -> list[list[dict]]:
    """Each of the log's queries searched in its order (the repeat too), on one database: each answer's levels."""
    return [search(world, query) for query in QUERIES]


def test_searches_embed_only_what_level_1_hands_on_and_never_re_embed_level_1(imported, searched):
    first, second, repeat = searched[0], searched[1], searched[2]
    for levels in searched:
        old, new = levels
        assert (old["encoder"], old["misses"], old["image_macs"]) == (imported["encoder"], 0, 0)
        assert old["k"] == K1 and len(old["results"]) == K1
        assert new["k"] == K2 and {r["path"] for r in new["results"]} <= {r["path"] for r in old["results"]}
        assert new["encoder"].startswith("openclip:ViT-L-14@")
    handed_first = {r["path"] for r in first[0]["results"]}
    handed_second = {r["path"] for r in second[0]["results"]}
    assert (first[1]["candidates"], first[1]["misses"], first[1]["hits"]) == (K1, K1, 0)
    fresh = len(handed_second - handed_first)  # the second query pays only for images the first did not hand on
    assert (second[1]["misses"], second[1]["hits"]) == (fresh, K1 - fresh)
    assert second[1]["image_macs"] * K1 == first[1]["image_macs"] * fresh
    assert (repeat[1]["misses"], repeat[1]["image_macs"]) == (0, 0)  # a query asked before: every image cached
    assert [r["path"] for r in repeat[1]["results"]] == [r["path"] for r in first[1]["results"]]


def test_the_estimate_s_alpha_is_the_union_of_the_log_s_level_1_top_k1(world, searched):
    estimate = cascade(
        world,
        "replay",
        "--estimate",
        "--embeddings",
        str(world["index"]),
        "--levels",
        f"{OLD},{NEW}",
        "--ks",
        f"{K1},{K2}",
        "--queries-file",
        str(world["log"]),
    )
    handed = set().union(*({r["path"] for r in levels[0]["results"]} for levels in searched))
    assert (estimate["images"], estimate["queries"], estimate["distinct_queries"]) == (N_IMAGES, 4, 3)
    assert estimate["alpha"] == pytest.approx(len(handed) / N_IMAGES)


def test_a_later_folder_build_finds_every_imported_image_cached(world, imported):
    answer = cascade(
        world, "index", "--images", str(world["gallery"].folder), "--levels", OLD, "--db", str(world["db"])
    )
    assert answer == {"images": N_IMAGES, "embedded": 0, "reused": N_IMAGES, "skipped": 0}
