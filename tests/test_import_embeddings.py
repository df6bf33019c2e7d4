"""``cascade import-embeddings``: an existing CLIP index becomes level 1, checked first, written atomically.

The index is built here from a generated gallery embedded by OpenCLIP's ViT-B-32 (its real architecture,
random weights: the model most existing indexes were made with), so the ids, the rows and the rankings an
import gives can be compared with those a fresh build computes. The layouts' own options use a tiny model.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis import imported
from analysis.imported import CURRENT, PATH_ID_PREFIX, TEMPORARY, encoder_folder, imported_folder
from analysis.store import Store
from cascade.encoders import create_encoder
from cascade_cli import main
from tests.conftest import ROOT
from tests.index_layouts import (
    FLOAT16_ROUNDING,
    N_IMAGES,
    PREFIX,
    Gallery,
    embedded_gallery,
    truncate,
    unit_rows,
    write_npy,
    write_parquet,
)

ENCODER = "openclip:ViT-B-32@random"
TINY = "openclip:tiny-vit-s@random"  # the layouts written by tests.index_layouts have its 32 dimensions


@pytest.fixture(scope="module")
def gallery(tmp_path_factory) -> Gallery:
    return embedded_gallery(tmp_path_factory.mktemp("import") / "photos", ENCODER)


def write_index(root: Path, matrix: np.ndarray, paths: list[str]) -> Path:
    """A clip-retrieval output folder of one shard: ``img_emb/img_emb_0.npy`` and ``metadata/metadata_0.parquet``."""
    (root / "img_emb").mkdir(parents=True)
    (root / "metadata").mkdir()
    np.save(root / "img_emb" / "img_emb_0.npy", matrix)
    pq.write_table(pa.table({"image_path": paths}), root / "metadata" / "metadata_0.parquet")
    return root


def gallery_index(root: Path, gallery: Gallery, dtype: type = np.float16) -> Path:
    """The gallery's own index, its paths as its author stored them (``PREFIX`` + file name)."""
    paths = [PREFIX + gallery.corpus.paths[image_id].name for image_id in gallery.corpus.ids]
    return write_index(root, gallery.embeddings.astype(dtype), paths)


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main([*args, "--quiet"])
    out, err = capsys.readouterr()
    return code, out, err


def import_gallery(capsys, src: Path, db: Path, gallery: Gallery, *extra: str) -> dict:
    args = ["import-embeddings", str(src), "--encoder", ENCODER, "--images", str(gallery.folder)]
    code, out, err = cli(capsys, *args, "--strip-prefix", PREFIX, "--db", str(db), "--json", *extra)
    assert code == 0, err
    return json.loads(out)


def current(db: Path, encoder_id: str) -> Path:
    folder = encoder_folder(imported_folder(db), encoder_id)
    return folder / (folder / CURRENT).read_text().strip()


def test_an_import_is_every_image_a_later_build_needs(tmp_path, gallery, capsys):
    matrix = gallery.embeddings.copy()
    matrix[:3] *= 2.5  # an index that stored unnormalised rows: the import renormalises them
    paths = [PREFIX + gallery.corpus.paths[image_id].name for image_id in gallery.corpus.ids]
    src, db = write_index(tmp_path / "index", matrix.astype(np.float16), paths), tmp_path / "db.duckdb"
    payload = import_gallery(capsys, src, db, gallery)
    assert payload == {
        "images": N_IMAGES,
        "imported": N_IMAGES,
        "normalised": 3,
        "missing": 0,
        "dim": 512,
        "dtype": "float16",
        "encoder": gallery.encoder_id,
    }
    rows = pq.read_table(current(db, gallery.encoder_id) / "rows.parquet").to_pydict()
    assert rows["id"] == gallery.corpus.ids  # the digests a folder scan computes, row for row
    files = [gallery.corpus.paths[image_id].resolve() for image_id in gallery.corpus.ids]
    keys = [(str(path), path.stat().st_size, path.stat().st_mtime_ns) for path in files]
    with Store(db) as store:
        served = store.get(gallery.encoder_id, gallery.corpus.ids)
        remembered = store.lookup(keys)  # as a scan remembers them: the folder is not hashed again
    assert [remembered[key] for key in keys] == gallery.corpus.ids
    np.testing.assert_allclose(np.stack([served[i] for i in gallery.corpus.ids]), gallery.embeddings, atol=1e-3)

    code, out, err = cli(
        capsys, "index", "--images", str(gallery.folder), "--levels", ENCODER, "--db", str(db), "--json"
    )
    assert code == 0, err
    assert json.loads(out) == {"images": N_IMAGES, "embedded": 0, "reused": N_IMAGES, "skipped": 0}
    assert "scanning" not in err and "note:" not in err


def top(capsys, db: Path, gallery: Gallery, query: str, k: int) -> list[tuple[str, float]]:
    args = ["search", query, "--images", str(gallery.folder), "--levels", ENCODER, "--ks", str(k), "--db", str(db)]
    code, out, err = cli(capsys, *args, "--json")
    assert code == 0, err
    return [(result["path"], result["score"]) for result in json.loads(out)["levels"][0]["results"]]


@pytest.mark.parametrize("query", ["a red square", "two blue circles"])
def test_imported_level_1_ranks_as_a_level_1_built_from_the_images(tmp_path, gallery, capsys, query):
    imported_db, fresh_db, k = tmp_path / "imported.duckdb", tmp_path / "fresh.duckdb", 5
    import_gallery(capsys, gallery_index(tmp_path / "index", gallery), imported_db, gallery)
    imported = top(capsys, imported_db, gallery, query, k)
    fresh = dict(top(capsys, fresh_db, gallery, query, N_IMAGES))  # every image's score, best first
    kth = list(fresh.values())[k - 1]
    for path, score in imported:  # the same top k and scores, but for images float16 rounding cannot tell apart
        assert abs(score - fresh[path]) < FLOAT16_ROUNDING
        assert fresh[path] >= kth - FLOAT16_ROUNDING
    for (better, _), (worse, _) in zip(imported, imported[1:]):
        assert fresh[worse] <= fresh[better] + FLOAT16_ROUNDING
    assert {path for path, _ in imported} == set(list(fresh)[:k])  # no near tie at the k-th place here


def test_rows_without_files_are_missing_and_keep_path_ids(tmp_path, gallery, capsys):
    gone = [f"/elsewhere/gone_{i}.jpg" for i in range(3)]
    paths = [str(gallery.corpus.paths[i]) for i in gallery.corpus.ids] + gone  # as written: absolute, reachable
    extra = unit_rows(3, dim=gallery.embeddings.shape[1], dtype=np.float32, seed=7)
    src = write_index(tmp_path / "index", np.concatenate([gallery.embeddings, extra]), paths)
    db = tmp_path / "db.duckdb"
    code, out, err = cli(capsys, "import-embeddings", str(src), "--encoder", ENCODER, "--db", str(db), "--json")
    assert code == 0, err
    payload = json.loads(out)
    assert (payload["images"], payload["imported"], payload["missing"], payload["dtype"]) == (15, 15, 3, "float32")
    rows = pq.read_table(current(db, gallery.encoder_id) / "rows.parquet").to_pydict()
    assert rows["id"] == gallery.corpus.ids + [PATH_ID_PREFIX + path for path in gone]
    assert rows["missing"] == [False] * N_IMAGES + [True] * 3
    with Store(db) as store:
        served = store.get(gallery.encoder_id, [PATH_ID_PREFIX + gone[1], "no-such-id"])
    assert list(served) == [PATH_ID_PREFIX + gone[1]]
    np.testing.assert_allclose(served[PATH_ID_PREFIX + gone[1]], extra[1], atol=1e-6)


def test_npy_and_parquet_layouts_import_with_their_options(tmp_path, capsys):
    matrix, paths_file, written = write_npy(tmp_path / "npy")
    db = tmp_path / "db.duckdb"
    args = ["import-embeddings", str(matrix), "--encoder", TINY, "--db", str(db), "--json"]
    code, out, err = cli(capsys, *args, "--paths", str(paths_file))
    assert code == 0, err
    assert json.loads(out)["missing"] == len(written.paths) == 150
    write_parquet(tmp_path / "parquet", value_type="float16")
    args = ["import-embeddings", str(tmp_path / "parquet"), "--encoder", TINY, "--db", str(db), "--json"]
    columns = ["--id-column", "id", "--embedding-column", "embedding", "--caption-column", "caption"]
    code, out, err = cli(capsys, *args, *columns)
    assert code == 0, err
    assert (json.loads(out)["images"], json.loads(out)["dtype"]) == (150, "float16")
    rows = pq.read_table(current(db, create_encoder(TINY).id) / "rows.parquet").to_pydict()
    assert rows["id"][:2] == ["path:asset-0-0", "path:asset-0-1"] and rows["caption"][1] == "caption 0 1"


def _break(kind: str, src: Path) -> list[str]:
    """Spoil the gallery index at ``src`` one way; returns extra arguments the case needs."""
    emb, meta = src / "img_emb" / "img_emb_0.npy", src / "metadata" / "metadata_0.parquet"
    matrix, paths = np.load(emb), pq.read_table(meta).column("image_path").to_pylist()
    if kind in ("nan", "inf", "zero"):
        matrix[4] = {"nan": np.nan, "inf": np.inf, "zero": 0.0}[kind]
        np.save(emb, matrix)
    elif kind == "dimension":
        np.save(emb, unit_rows(len(matrix), dim=16))
    elif kind == "duplicate":
        pq.write_table(pa.table({"image_path": paths[:-1] + paths[:1]}), meta)
    elif kind == "rows":
        pq.write_table(pa.table({"image_path": paths[:-1]}), meta)
    elif kind == "metadata":
        meta.unlink()
    elif kind == "empty":
        np.save(emb, matrix[:0])
        pq.write_table(pa.table({"image_path": pa.array([], pa.string())}), meta)
    elif kind == "truncated":
        truncate(emb)
    elif kind == "column":
        pq.write_table(pa.table({"url": paths}), meta)
    elif kind == "parquet":
        pq.write_table(pa.table({"id": paths, "vector": [row.tolist() for row in matrix]}), src.with_suffix(".parquet"))
        return [str(src.with_suffix(".parquet")), "--id-column", "id", "--embedding-column", "embedding"]
    elif kind == "encoder":
        return [str(src), "--encoder", "openclip:no-such-model@random"]
    return [str(src)]


FAULTS = {
    "dimension": "16 dimensions, the encoder's 512",
    "nan": "not finite",
    "inf": "not finite",
    "zero": "all zeros",
    "duplicate": "appears twice",
    "rows": "has 12 rows but metadata/metadata_0.parquet has 11",
    "metadata": "has no matching metadata/metadata_0.parquet",
    "empty": "holds no embeddings",
    "truncated": "truncated",
    "column": "no column 'image_path'",
    "parquet": "no column 'embedding'",
    "encoder": "no-such-model",
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_each_bad_input_is_one_line_and_writes_nothing(tmp_path, gallery, capsys, fault):
    args = _break(fault, gallery_index(tmp_path / "index", gallery))
    db = tmp_path / "db.duckdb"
    encoder = [] if "--encoder" in args else ["--encoder", ENCODER]
    code, out, err = cli(capsys, "import-embeddings", *args, *encoder, "--db", str(db))
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and FAULTS[fault] in err, err
    assert not db.exists() and not imported_folder(db).exists()


def test_a_bad_import_leaves_the_earlier_one_and_the_database_as_they_were(tmp_path, gallery, capsys):
    db = tmp_path / "db.duckdb"
    import_gallery(capsys, gallery_index(tmp_path / "good", gallery), db, gallery)
    before, version = db.read_bytes(), current(db, gallery.encoder_id)
    bad = _break("nan", gallery_index(tmp_path / "bad", gallery))
    code, _, err = cli(capsys, "import-embeddings", *bad, "--encoder", ENCODER, "--db", str(db))
    assert code == 1 and "not finite" in err
    assert db.read_bytes() == before and current(db, gallery.encoder_id) == version
    assert {p.name for p in version.parent.iterdir()} == {CURRENT, version.name}


@pytest.mark.parametrize("args", [["--strip-prefix", "/data/"], ["--encoder"], []])
def test_a_wrong_command_line_exits_2(tmp_path, capsys, args):
    encoder = [] if args == ["--encoder"] else ["--encoder", TINY]
    code, _, err = cli(capsys, "import-embeddings", *([str(tmp_path)] if args else []), *encoder, *args)
    assert code == 2 and err.count("\n") == 1


KILLER = """
import sys, time
from analysis import imported
from cascade_cli import main

def pause(rows):
    print("at", rows, flush=True)
    time.sleep(600)

imported._after_block = pause
main(sys.argv[1:])
"""


def test_a_killed_import_leaves_the_previous_one_and_the_next_cleans_up(tmp_path, gallery, capsys, monkeypatch):
    db = tmp_path / "db.duckdb"
    import_gallery(capsys, gallery_index(tmp_path / "first", gallery), db, gallery)
    before = current(db, gallery.encoder_id)
    matrix = np.load(before / "embeddings.npy").copy()
    second = gallery_index(tmp_path / "second", gallery, dtype=np.float32)
    args = ["import-embeddings", str(second), "--encoder", ENCODER, "--db", str(db), "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-c", KILLER, *args]
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.split() == ["at", str(N_IMAGES)], proc.stderr.read()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    folder = before.parent
    assert current(db, gallery.encoder_id) == before  # the previous import is still the one served
    np.testing.assert_array_equal(np.load(before / "embeddings.npy"), matrix)
    (stale,) = [p for p in folder.iterdir() if p.name.startswith(TEMPORARY)]  # killed mid-write
    with Store(db) as store:
        served = store.get(gallery.encoder_id, gallery.corpus.ids)
    np.testing.assert_array_equal(np.stack([served[i] for i in gallery.corpus.ids]), matrix.astype(np.float32))

    seen = []  # whether the stale folder was there when the next import wrote its first block
    monkeypatch.setattr(imported, "_after_block", lambda rows: seen.append(stale.exists()))
    assert import_gallery(capsys, second, db, gallery)["dtype"] == "float32"
    assert seen == [False]  # removed first: a killed import's leftovers can be as large as the index
    after = current(db, gallery.encoder_id)
    assert after != before and not stale.exists() and {p.name for p in folder.iterdir()} == {CURRENT, after.name}


def test_an_import_of_new_weights_names_the_id_of_the_earlier_index(tmp_path, gallery, capsys):
    db, src = tmp_path / "db.duckdb", gallery_index(tmp_path / "index", gallery)
    import_gallery(capsys, src, db, gallery)
    manifest_path = current(db, gallery.encoder_id) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps(manifest | {"encoder": "openclip:ViT-B-32@random#rev-old"}))
    code, out, err = cli(capsys, "import-embeddings", str(src), "--encoder", ENCODER, "--db", str(db))
    assert code == 0
    (note,) = [line for line in err.splitlines() if line.startswith("note:")]
    assert "openclip:ViT-B-32@random#rev-old" in note and gallery.encoder_id in note
    assert out.startswith(f"{N_IMAGES} rows read: {N_IMAGES} images imported as level 1 of {gallery.encoder_id}")


def test_unit_rows_are_stored_as_written_and_only_the_others_renormalised(tmp_path, gallery, capsys):
    """A well-formed index is copied bit for bit; a row a little off 1 (inside the tolerance, so not counted) and
    a row far off are both stored as unit vectors to float16's rounding."""
    matrix = gallery.embeddings.astype(np.float16)
    matrix[1] = (gallery.embeddings[1] * 1.006).astype(np.float16)  # off by 0.6%: under the 1% the count reports
    matrix[2] = (gallery.embeddings[2] * 3.0).astype(np.float16)
    paths = [PREFIX + gallery.corpus.paths[image_id].name for image_id in gallery.corpus.ids]
    db = tmp_path / "db.duckdb"
    assert import_gallery(capsys, write_index(tmp_path / "index", matrix, paths), db, gallery)["normalised"] == 1
    stored = np.load(current(db, gallery.encoder_id) / "embeddings.npy")
    assert stored.dtype == np.float16
    untouched = [row for row in range(N_IMAGES) if row not in (1, 2)]
    assert stored[untouched].tobytes() == matrix[untouched].tobytes()
    norms = np.linalg.norm(stored[[1, 2]].astype(np.float32), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=2e-3)
    expected = gallery.embeddings[[1, 2]] / np.linalg.norm(gallery.embeddings[[1, 2]], axis=1, keepdims=True)
    np.testing.assert_allclose(stored[[1, 2]].astype(np.float32), expected, atol=2e-3)
