"""``--index`` and ``--engine`` on the command line: the recall printed, the gate, bad input as one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cascade_cli import main
from tests.fakes import make_gallery
from tests.ray_fixtures import ray_group

pytest.importorskip("faiss")
SMALL = "openclip:tiny-vit-s@random"


@pytest.fixture(scope="module")
def gallery(tmp_path_factory) -> Path:
    return make_gallery(tmp_path_factory.mktemp("index-cli") / "gallery", 40, seed=2)[0].parent


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_index_builds_measures_and_reuses_a_faiss_index(tmp_path, gallery, capsys):
    db = str(tmp_path / "db.duckdb")
    argv = ["index", "--images", str(gallery), "--levels", SMALL, "--index", "faiss:HNSW32", "--index-k", "5",
            "--db", db, "--json", "--quiet"]  # fmt: skip
    code, out, _ = cli(capsys, *argv)
    payload = json.loads(out)
    assert code == 0 and payload["index"] == "faiss:HNSW32@efSearch=128"
    assert payload["index_recall"] == {"k": 5, "recall": 1.0, "queries": 40, "source": "gallery", "min_recall": 0.95}
    files = sorted((tmp_path / "db.duckdb.indexes").iterdir())
    assert [f.suffix for f in files] == [".faiss", ".json"]
    stamp = files[0].stat().st_mtime_ns
    assert cli(capsys, *argv)[0] == 0 and files[0].stat().st_mtime_ns == stamp  # loaded, not rebuilt

    code, out, _ = cli(capsys, "search", "a red circle", "--images", str(gallery), "--levels", SMALL, "--ks", "5",
                       "--index", "faiss:HNSW32", "--db", db, "--json", "--quiet")  # fmt: skip
    exact = json.loads(cli(capsys, "search", "a red circle", "--images", str(gallery), "--levels", SMALL, "--ks", "5",
                           "--db", db, "--json", "--quiet")[1])  # fmt: skip
    got, want = json.loads(out)["levels"][0]["results"], exact["levels"][0]["results"]
    assert code == 0 and [r["path"] for r in got] == [r["path"] for r in want]  # 40 images: HNSW is exact here
    assert [r["score"] for r in got] == pytest.approx([r["score"] for r in want], abs=1e-6)  # FAISS's own kernel


def test_an_index_below_the_gate_is_refused_after_printing_its_recall(tmp_path, gallery, capsys):
    code, out, err = cli(capsys, "index", "--images", str(gallery), "--levels", SMALL, "--index-k", "10",
                         "--index", "faiss:IVF8,Flat@nprobe=1", "--min-index-recall", "0.999",
                         "--db", str(tmp_path / "db.duckdb"), "--quiet")  # fmt: skip
    assert code == 1 and "recall@10 against exact" in out
    assert err.startswith("error: faiss:IVF8,Flat@nprobe=1: level-1 recall@10 against exact is 0.")
    assert "below the required 1.00" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        (["--index", "annoy:12"], 2, "unknown index 'annoy:12'"),
        (["--index", "faiss:HNSW 32"], 2, "malformed FAISS factory"),
        (["--index", "faiss:HNSWxx"], 1, "FAISS cannot build 'HNSWxx' for d = "),
        (["--engine", "ray", "--ray-address", "127.0.0.1:9"], 1, "no Ray cluster answers at 127.0.0.1:9"),
        (["--engine", "ray", "--ray-address", "nowhere"], 1, "a Ray address is HOST:PORT"),
    ],
)
def test_bad_index_or_engine_is_one_line(tmp_path, gallery, capsys, extra, code, message):
    got, _, err = cli(capsys, "index", "--images", str(gallery), "--levels", SMALL, "--db",
                      str(tmp_path / "db.duckdb"), "--quiet", *extra)  # fmt: skip
    assert got == code and message in err and err.count("\n") == 1, err


def test_a_corrupt_index_file_is_one_line(tmp_path, gallery, capsys):
    argv = ["index", "--images", str(gallery), "--levels", SMALL, "--index", "faiss:HNSW32", "--index-k", "5",
            "--db", str(tmp_path / "db.duckdb"), "--quiet"]  # fmt: skip
    assert cli(capsys, *argv)[0] == 0
    next((tmp_path / "db.duckdb.indexes").glob("*.faiss")).write_bytes(b"\x00" * 64)
    code, _, err = cli(capsys, *argv)
    assert code == 1 and "is corrupt" in err and "delete it to rebuild" in err and err.count("\n") == 1


@pytest.mark.slow
@ray_group  # on the Ray the Ray tests share (tests/ray_fixtures.py): ray.init is seconds
def test_index_on_ray_fills_the_cache_with_the_local_build(local_ray, tmp_path, gallery, capsys):
    from analysis.store import Store
    from cascade.encoders import create_encoder

    ray_db, local_db = str(tmp_path / "ray.duckdb"), str(tmp_path / "local.duckdb")
    # shapes:small, built by name in the actor like any encoder, imports in a second where open_clip takes
    # several; one actor: that two give the local build is test_ray_build's. Here: the CLI's path to the cache.
    common = ["index", "--images", str(gallery), "--levels", "shapes:small", "--json", "--quiet"]
    code, out, err = cli(capsys, *common, "--db", ray_db, "--engine", "ray", "--ray-workers", "1")
    assert code == 0, err
    assert json.loads(out)["reused"] == 40  # the ray engine filled the cache; the local pass found every row
    assert cli(capsys, *common, "--db", local_db)[0] == 0
    encoder_id = create_encoder("shapes:small").id
    with Store(ray_db) as ray_store, Store(local_db) as local_store:
        ids = [row[0] for row in local_store.frame("SELECT image_id FROM features").itertuples(index=False)]
        on_ray, local = ray_store.get(encoder_id, ids), local_store.get(encoder_id, ids)
    assert sorted(on_ray) == sorted(local) and len(local) == 40
    for image_id in ids:
        assert on_ray[image_id] == pytest.approx(local[image_id], abs=1e-6)  # batches of other sizes: float noise
