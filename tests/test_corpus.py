"""The corpus and the pixel array: rows served only for the exact file bytes they came from, never half written."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch
from PIL import Image

from cascade.corpus import Corpus, load_image
from cascade.encoders import create_encoder
from cascade.pixel_array import PIXEL_ARRAY_NAME, PixelArrayWriter, open_pixel_array


def _write_pngs(folder, n, seed=0, size=64):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:03d}.png")
    return images


def _with_array(folder, n, seed=0, size=64):
    """PNGs and their pixel array, rows keyed by the ids the corpus computes from the files."""
    images = _write_pngs(folder, n, seed, size)
    ids = Corpus.from_folder(folder).ids
    with PixelArrayWriter(folder / PIXEL_ARRAY_NAME) as writer:
        for image_id, image in zip(ids, images):
            writer.add(image_id, image)
    return images, ids


def test_a_pixel_array_round_trips(tmp_path):
    rng = np.random.default_rng(1)
    rows = rng.integers(0, 256, size=(5, 8, 6, 3), dtype=np.uint8)
    with PixelArrayWriter(tmp_path / "a") as writer:
        for i, row in enumerate(rows):
            writer.add(f"id{i}", row)
    array = open_pixel_array(tmp_path / "a")
    assert array.ids == ("id0", "id1", "id2", "id3", "id4") and array.rows["id3"] == 3
    assert np.array_equal(array.pixels, rows) and not array.pixels.flags.writeable
    assert (tmp_path / "a").read_bytes()[4096 : 4096 + rows.nbytes] == rows.tobytes()  # the documented layout
    assert open_pixel_array(tmp_path / "missing") is None


def test_rows_of_another_shape_or_type_are_refused(tmp_path):
    with pytest.raises(ValueError, match="share one shape"):
        with PixelArrayWriter(tmp_path / "a") as writer:
            writer.add("x", np.zeros((4, 4, 3), np.uint8))
            writer.add("y", np.zeros((4, 5, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        with PixelArrayWriter(tmp_path / "a") as writer:
            writer.add("x", np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="at least one"):
        with PixelArrayWriter(tmp_path / "a"):
            pass
    assert list(tmp_path.iterdir()) == []  # no array, no temp file


def test_a_killed_write_leaves_the_previous_array_and_no_half_one(tmp_path):
    path = tmp_path / PIXEL_ARRAY_NAME
    with PixelArrayWriter(path) as writer:
        writer.add("old", np.full((4, 4, 3), 7, np.uint8))
    before = path.read_bytes()
    with pytest.raises(KeyboardInterrupt):
        with PixelArrayWriter(path) as writer:
            writer.add("new", np.full((4, 4, 3), 9, np.uint8))
            raise KeyboardInterrupt  # Ctrl-C in the middle of a write
    assert path.read_bytes() == before and open_pixel_array(path).ids == ("old",)
    assert [p.name for p in tmp_path.iterdir()] == [PIXEL_ARRAY_NAME]
    # A process killed outright leaves its temp file: never read, removed by a later writer once stale.
    stale = tmp_path / f"{PIXEL_ARRAY_NAME}.tmp-killed"
    stale.write_bytes(before[:5000])
    fresh = tmp_path / f"{PIXEL_ARRAY_NAME}.tmp-running"
    fresh.write_bytes(b"")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    with PixelArrayWriter(path) as writer:
        writer.add("newer", np.zeros((4, 4, 3), np.uint8))
    assert not stale.exists() and fresh.exists()  # another writer may still be busy with a fresh one


def test_bad_headers_are_not_served(tmp_path):
    path = tmp_path / "a"
    with PixelArrayWriter(path) as writer:
        writer.add("x", np.zeros((4, 4, 3), np.uint8))
    good = path.read_bytes()
    for bad in (b"NOTPIXEL" + good[8:], good + b"\n", good[:-1], good[:4096]):
        path.write_bytes(bad)
        assert open_pixel_array(path) is None, bad[:8]


def test_the_corpus_serves_rows_equal_to_the_decoded_files(tmp_path):
    images, ids = _with_array(tmp_path / "images", 10)
    corpus = Corpus.from_folder(tmp_path / "images")
    assert corpus.ids == ids and set(corpus.pixel_rows) == set(ids) and corpus.skipped == []
    for image_id, image in zip(ids, images):
        served = corpus.load(image_id)
        decoded = load_image(corpus.paths[image_id])
        assert served.mode == "RGB" and np.array_equal(np.asarray(served), np.asarray(decoded))
        assert np.array_equal(np.asarray(served), image)
    batch = corpus.pixels(ids[2:7])
    assert batch.shape == (5, 64, 64, 3) and np.array_equal(batch, images[2:7]) and batch.flags.writeable


def test_a_file_changed_after_the_array_is_decoded_not_served_stale(tmp_path):
    images, ids = _with_array(tmp_path / "images", 4)
    changed = images[1].copy()
    changed[0, 0] = 255 - changed[0, 0]
    Image.fromarray(changed).save(tmp_path / "images" / "001.png")
    _write_pngs(tmp_path / "extra", 1, seed=9)
    (tmp_path / "extra" / "000.png").rename(tmp_path / "images" / "new.png")  # added after the array
    corpus = Corpus.from_folder(tmp_path / "images")
    assert len(corpus) == 5 and corpus.ids[1] != ids[1]  # a new file content, a new id
    assert set(corpus.pixel_rows) == {ids[0], ids[2], ids[3]}
    assert np.array_equal(np.asarray(corpus.load(corpus.ids[1])), changed)
    assert corpus.pixels(corpus.ids[:2]) is None  # one of them has no row: the batch is decoded
    assert corpus.pixels([]) is None


@pytest.mark.parametrize("name", ["shapes:small", "shapes:medium", "shapes:large", "shapes:cross"])
def test_preprocessed_batches_equal_preprocessing_decoded_files(tmp_path, name):
    _with_array(tmp_path / "array", 9, seed=3)
    _write_pngs(tmp_path / "files", 9, seed=3)  # the same files, no array: decoded one by one
    encoder = create_encoder(name)
    with_array, files = Corpus.from_folder(tmp_path / "array"), Corpus.from_folder(tmp_path / "files")
    assert with_array.ids == files.ids and files.pixel_rows == {}
    fast, slow = with_array.preprocessed(encoder, with_array.ids), files.preprocessed(encoder, files.ids)
    reference = torch.stack([encoder.preprocess(load_image(files.paths[i])) for i in files.ids])
    assert fast.shape == (9, 3, encoder.image_size, encoder.image_size)
    assert torch.equal(fast, reference) and torch.equal(slow, reference)
    assert np.array_equal(encoder.encode_pixels(fast), encoder.encode_pixels(reference))


def test_preprocessed_handles_rows_of_another_size(tmp_path):
    _with_array(tmp_path / "images", 3, size=40)  # not the world's 64 px: squashed like any image
    corpus = Corpus.from_folder(tmp_path / "images")
    encoder = create_encoder("shapes:small")
    reference = torch.stack([encoder.preprocess(load_image(corpus.paths[i])) for i in corpus.ids])
    assert len(corpus.pixel_rows) == 3 and torch.equal(corpus.preprocessed(encoder, corpus.ids), reference)


def test_the_fingerprint_names_the_set_of_images_not_their_order(tmp_path):
    _write_pngs(tmp_path / "images", 6)
    paths = sorted((tmp_path / "images").iterdir())
    forward, backward = Corpus.from_paths(paths), Corpus.from_paths(paths[::-1])
    assert forward.ids == backward.ids[::-1] and forward.ids != backward.ids
    assert forward.fingerprint == backward.fingerprint
    shuffled = [forward.ids[i] for i in (3, 0, 5, 1, 4, 2)]
    assert Corpus(ids=shuffled).fingerprint == forward.fingerprint
    assert Corpus(ids=forward.ids[:-1]).fingerprint != forward.fingerprint  # one image fewer
    _write_pngs(tmp_path / "other", 6, seed=1)
    other = Corpus.from_folder(tmp_path / "other")
    assert set(other.ids).isdisjoint(forward.ids) and other.fingerprint != forward.fingerprint
