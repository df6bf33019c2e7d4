"""An imported index is a gallery: ``--embeddings ENC`` on search, eval and replay, and a radio entry on the page.

The index is the generated gallery's own, embedded by a tiny random OpenCLIP model and written as a
clip-retrieval folder, so what level 1 ranks from the import can be compared with a fresh build from the files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis import presets
from analysis.cascades import Cascades
from analysis.engine import Engine
from analysis.galleries import GalleryKind, GallerySource
from analysis.imported import imported_folder
from analysis.store import Store, index_folder
from cascade.encoders import create_encoder
from cascade_cli import main
from cascade_ui.controls import CascadeValues, choice_of, gallery_table
from tests.index_layouts import FLOAT16_ROUNDING, N_IMAGES, PREFIX, Gallery, embedded_gallery

TINY, UPPER = "openclip:tiny-vit-s@random", "openclip:tiny-vit-m@random"


@pytest.fixture(scope="module")
def gallery(tmp_path_factory) -> Gallery:
    return embedded_gallery(tmp_path_factory.mktemp("gallery") / "photos", TINY)


@pytest.fixture
def embedded(monkeypatch) -> list[int]:
    """Images each ``encode_pixels`` call of the tiny models embedded, in call order."""
    calls: list[int] = []
    tower = type(create_encoder(TINY))
    original = tower.encode_pixels

    def counted(self, pixels):
        calls.append(len(pixels))
        return original(self, pixels)

    monkeypatch.setattr(tower, "encode_pixels", counted)
    return calls


@pytest.fixture
def cache_reads(monkeypatch) -> list[str]:
    """The encoder id of each ``Store.get`` (the feature cache, which also serves imported rows one by one)."""
    reads: list[str] = []
    original = Store.get

    def counted(self, encoder_id, image_ids):
        reads.append(encoder_id)
        return original(self, encoder_id, image_ids)

    monkeypatch.setattr(Store, "get", counted)
    return reads


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main([*args, "--quiet"])
    out, err = capsys.readouterr()
    return code, out, err


def imported_db(
    capsys, tmp_path: Path, gallery: Gallery, files: bool = True, captions: bool = True, reverse: bool = False
) -> Path:
    """A database holding the gallery's index, imported as a clip-retrieval folder (float16, as clip-retrieval
    writes it); ``files``: imported with ``--images`` (the rows have files), else the stored paths lead nowhere;
    ``reverse``: the rows in reverse order (imported again into the same database: a newer version)."""
    root, db = tmp_path / ("reversed" if reverse else "index"), tmp_path / "imported.duckdb"
    (root / "img_emb").mkdir(parents=True)
    (root / "metadata").mkdir()
    order = slice(None, None, -1 if reverse else 1)
    np.save(root / "img_emb" / "img_emb_0.npy", gallery.embeddings[order].astype(np.float16))
    names = [gallery.corpus.paths[image_id].name for image_id in gallery.corpus.ids][order]
    columns = {"image_path": [PREFIX + name for name in names]}
    if captions:
        columns["caption"] = [f"picture {name}" for name in names]
    pq.write_table(pa.table(columns), root / "metadata" / "metadata_0.parquet")
    where = ["--images", str(gallery.folder), "--strip-prefix", PREFIX] if files else []
    code, _, err = cli(capsys, "import-embeddings", str(root), "--encoder", TINY, *where, "--db", str(db))
    assert code == 0, err
    return db


def search(capsys, *args: str) -> dict:
    code, out, err = cli(capsys, "search", *args, "--json")
    assert code == 0, err
    return json.loads(out)


def one_line_exit_1(capsys, *args: str) -> str:
    code, out, err = cli(capsys, *args)
    assert code == 1 and out == "" and err.startswith("error: ")
    assert len(err.strip().splitlines()) == 1, err
    return err


def logged(db: Path) -> int:
    with Store(db) as store:
        return int(store.frame("SELECT count(*) AS n FROM queries")["n"][0])


def ranked(payload: dict, level: int = 0) -> list[tuple[str, float]]:
    return [(result["path"], result["score"]) for result in payload["levels"][level]["results"]]


@pytest.mark.parametrize("query", ["a red square", "two blue circles"])
def test_level_1_ranks_the_mapped_import_as_a_build_from_the_files_and_embeds_nothing(
    tmp_path, gallery, capsys, embedded, cache_reads, query
):
    db, k = imported_db(capsys, tmp_path, gallery), 5
    embedded.clear()
    payload = search(capsys, query, "--embeddings", TINY, "--levels", TINY, "--ks", str(k), "--db", str(db))
    assert embedded == [] and payload["levels"][0]["misses"] == 0  # no image embedded: the import is level 1
    assert cache_reads == []  # its mapped matrix, not its rows one by one through the cache
    alone = search(capsys, query, "--embeddings", gallery.encoder_id, "--ks", str(k), "--db", str(db))
    assert ranked(alone) == ranked(payload)  # named by its id, and --levels defaults to the import's encoder alone
    imported = [(str(Path(path).resolve()), score) for path, score in ranked(payload)]

    fresh_args = ["--images", str(gallery.folder), "--levels", TINY, "--ks", str(N_IMAGES)]
    fresh_payload = search(capsys, query, *fresh_args, "--db", str(tmp_path / "fresh.duckdb"))
    fresh = {str(Path(path).resolve()): score for path, score in ranked(fresh_payload)}  # every image, best first
    assert len(imported) == k and {path for path, _ in imported} == set(list(fresh)[:k])
    for path, score in imported:
        assert abs(score - fresh[path]) < FLOAT16_ROUNDING


def test_a_two_level_cascade_embeds_only_what_level_1_hands_on(tmp_path, gallery, capsys, embedded):
    db = imported_db(capsys, tmp_path, gallery)
    embedded.clear()
    payload = search(
        capsys, "a red square", "--embeddings", TINY, "--levels", f"{TINY},{UPPER}", "--ks", "6,3", "--db", str(db)
    )
    first, second = payload["levels"]
    assert first["misses"] == 0 and second["candidates"] == 6 and second["misses"] == 6
    assert sum(embedded) == 6  # level 2's k_1 images, from their files; level 1 embedded none
    assert {path for path, _ in ranked(payload, 1)} <= {path for path, _ in ranked(payload, 0)}
    assert all(Path(path).is_file() for path, _ in ranked(payload, 1))
    assert logged(db) == 1


def test_without_files_level_1_searches_and_a_later_level_is_one_line(tmp_path, gallery, capsys, embedded):
    db = imported_db(capsys, tmp_path, gallery, files=False)
    embedded.clear()
    payload = search(capsys, "a red square", "--embeddings", TINY, "--ks", "5", "--db", str(db))
    assert embedded == [] and [path for path, _ in ranked(payload)] == [
        path for path, _ in ranked(payload) if path.startswith("path:" + PREFIX)
    ]  # the rows' ids: their stored paths
    assert len(ranked(payload)) == 5 and logged(db) == 1

    two = ["search", "q", "--embeddings", TINY, "--levels", f"{TINY},{UPPER}", "--ks", "6,3", "--db", str(db)]
    err = one_line_exit_1(capsys, *two)
    assert "--images" in err and f"level 2 ({UPPER})" in err and f"{N_IMAGES} imported row(s) have no file" in err
    assert logged(db) == 1 and embedded == []  # nothing logged, nothing embedded


def test_level_1_must_be_the_encoder_that_made_the_rows(tmp_path, gallery, capsys):
    db = imported_db(capsys, tmp_path, gallery)
    err = one_line_exit_1(
        capsys, "search", "q", "--embeddings", TINY, "--levels", f"{UPPER},{TINY}", "--ks", "6,3", "--db", str(db)
    )
    assert f"level 1 must be the encoder that made the imported rows, {TINY}; got {UPPER}" in err
    err = one_line_exit_1(capsys, "search", "q", "--embeddings", UPPER, "--db", str(db))
    assert f"no index imported for {UPPER!r}; imported: {TINY}" in err
    err = one_line_exit_1(capsys, "search", "q", "--embeddings", TINY, "--images", str(gallery.folder), "--db", str(db))
    assert "not both" in err
    assert logged(db) == 0


def test_an_index_over_an_import_is_built_from_its_rows_and_kept_per_version(tmp_path, gallery, capsys, embedded):
    db, query = imported_db(capsys, tmp_path, gallery), "a red square"
    embedded.clear()
    exact = search(capsys, query, "--embeddings", TINY, "--ks", "5", "--db", str(db))
    with_index = search(capsys, query, "--embeddings", TINY, "--ks", "5", "--index", "faiss:HNSW32", "--db", str(db))
    assert embedded == [] and with_index["levels"][0]["misses"] == 0  # built from the mapped rows, nothing embedded
    assert same_ranking(with_index, exact)  # 12 rows: the graph reaches them all
    saved = sorted(index_folder(db).glob("*.faiss"))
    assert len(saved) == 1

    # The same images imported again, rows reversed: the first version's index (same images, same encoder, same
    # factory) would hand back the old row positions; the new version gets its own.
    imported_db(capsys, tmp_path, gallery, reverse=True)
    again = search(capsys, query, "--embeddings", TINY, "--ks", "5", "--index", "faiss:HNSW32", "--db", str(db))
    assert len(sorted(index_folder(db).glob("*.faiss"))) == 2
    assert same_ranking(again, search(capsys, query, "--embeddings", TINY, "--ks", "5", "--db", str(db)))
    auto = search(capsys, query, "--embeddings", TINY, "--ks", "5", "--index", "auto", "--db", str(db))
    assert same_ranking(auto, again) and embedded == []


def same_ranking(payload: dict, other: dict) -> bool:
    """The same images in the same order, scores equal up to float32 rounding (FAISS scores float32 copies)."""
    (paths, scores), (other_paths, other_scores) = (zip(*ranked(p)) for p in (payload, other))
    return paths == other_paths and np.allclose(scores, other_scores, atol=1e-5)


def test_the_gallery_of_an_import_reads_its_rows_file_schema_once(tmp_path, gallery, capsys, monkeypatch):
    from analysis import galleries

    db = imported_db(capsys, tmp_path, gallery)
    (version,) = galleries.imports_in(imported_folder(db))
    reads, original = [], pq.read_schema
    monkeypatch.setattr(galleries.pq, "read_schema", lambda path: reads.append(path) or original(path))
    corpus = version.corpus()
    assert len(reads) == 1  # not once a row: at 10M rows that was 20 minutes of schema reads
    assert len(corpus) == N_IMAGES and all(len(corpus.captions[image_id]) == 1 for image_id in corpus.ids)


def test_eval_on_a_captioned_import_is_stored_under_its_label(tmp_path, gallery, capsys):
    db = imported_db(capsys, tmp_path, gallery)
    code, out, err = cli(capsys, "eval", "--embeddings", TINY, "--db", str(db), "--json")
    assert code == 0, err
    assert json.loads(out)["levels"] == [gallery.encoder_id]
    label = f"imported:{gallery.encoder_id}:all"
    with Store(db) as store:
        rows = store.evaluations()
    assert list(rows["dataset"]) == [label]
    assert (rows["n_images"][0], rows["n_queries"][0]) == (N_IMAGES, N_IMAGES)  # one caption a row
    with Store(db) as store:  # either name of the import is one gallery, one label
        cascades = Cascades.on_store(store, presets.get("shapes"))
        assert {
            cascades.label(GallerySource(GalleryKind.IMPORTED, path=name)) for name in (TINY, gallery.encoder_id)
        } == {label}


def test_eval_on_an_import_without_captions_is_one_line(tmp_path, gallery, capsys):
    db = imported_db(capsys, tmp_path, gallery, captions=False)
    err = one_line_exit_1(capsys, "eval", "--embeddings", TINY, "--db", str(db))
    assert "evaluation needs captions" in err


def test_replay_on_an_import_without_estimate(tmp_path, gallery, capsys, embedded):
    db = imported_db(capsys, tmp_path, gallery)
    embedded.clear()
    args = ["replay", "--embeddings", TINY, "--levels", f"{TINY},{UPPER}", "--ks", "4,2", "--queries", "20"]
    code, out, err = cli(capsys, *args, "--db", str(db), "--json")
    assert code == 0, err
    row = json.loads(out)
    assert row["images"] == N_IMAGES and row["queries"] == 20 and row["gallery"] == f"imported:{TINY}"
    assert sum(embedded) == round(row["alpha"] * N_IMAGES)  # level 2 only, each image once
    assert logged(db) == 0  # a replay runs in memory: the database is read, never written


def test_the_page_offers_each_import_as_a_gallery(tmp_path, gallery, capsys):
    db = imported_db(capsys, tmp_path, gallery)
    with Store(db) as store:
        table = gallery_table(Engine(store))
    label = f"imported index ({TINY})"
    assert list(table)[-1] == label and table[label] == GallerySource(GalleryKind.IMPORTED, path=TINY)
    values = CascadeValues(label, None, None, 1, (TINY,), (5,), False, None, None, "exact")
    assert choice_of(values, table).gallery == table[label]
