"""The shapes world: deterministic, truthful captions, a held-out gallery with no repeated caption."""

from __future__ import annotations

import hashlib
import json
import os
import random

import numpy as np
import pytest
from PIL import Image

from cascade import world
from cascade.corpus import Corpus
from cascade.paths import cache_dir
from cascade.pixel_array import PIXEL_ARRAY_NAME, open_pixel_array


@pytest.fixture(scope="module")
def test_gallery() -> list[world.GalleryItem]:
    return world.gallery(world.TEST_GALLERY_IMAGES)


def test_test_gallery_is_large_and_never_repeats_a_caption(test_gallery):
    assert len(test_gallery) == world.TEST_GALLERY_IMAGES >= 5000
    all_captions = [text for item in test_gallery for text in item.captions]
    assert len(all_captions) == 2 * len(test_gallery)
    assert len(set(all_captions)) == len(all_captions)
    assert len({item.scene for item in test_gallery}) == len(test_gallery)


def test_test_gallery_is_held_out_from_training(test_gallery):
    assert {world.split_of(item.scene) for item in test_gallery} == {"test"}
    rng = random.Random(0)
    train_scenes = [scene for _ in range(50) for scene in world.cluster(rng, 4, "train")]
    assert {world.split_of(scene) for scene in train_scenes} == {"train"}
    # about a quarter of all scenes is reserved for testing
    everything = [world.random_scene(rng) for _ in range(2000)]
    assert 0.2 < sum(world.split_of(scene) == "test" for scene in everything) / 2000 < 0.3


def test_gallery_is_made_of_clusters_of_near_misses(test_gallery):
    # Each cluster: a base and variants that change exactly one thing about it (a swap changes two attributes).
    clusters: dict[int, list[world.Scene]] = {}
    for item in test_gallery:
        clusters.setdefault(item.cluster, []).append(item.scene)
    sizes = np.array([len(scenes) for scenes in clusters.values()])
    assert sizes.max() == world.CLUSTER_SIZE and sizes.mean() > 4.0
    for base, *variants in clusters.values():
        assert all(1 <= _changes(base, scene) <= 2 for scene in variants)
    assert [item.cluster for item in test_gallery] == sorted(item.cluster for item in test_gallery)


def _changes(a: world.Scene, b: world.Scene) -> int:
    """Attributes that differ between two scenes; exchanging the two groups counts as one."""
    if len(a.groups) != len(b.groups):
        return 99
    swapped = world.Scene(b.background, b.groups[::-1], b.relation)
    return min(_differences(a, b), _differences(a, swapped) + 1)


def _differences(a: world.Scene, b: world.Scene) -> int:
    attributes = [(a.background, b.background), (a.relation, b.relation)]
    for ga, gb in zip(a.groups, b.groups):
        attributes += [(getattr(ga, f), getattr(gb, f)) for f in ("count", "size", "texture", "colour", "shape")]
    return sum(x != y for x, y in attributes)


def test_gallery_is_deterministic_and_prefix_stable():
    first, again = world.gallery(60, seed=3), world.gallery(60, seed=3)
    assert [item.captions for item in first] == [item.captions for item in again]
    assert np.array_equal(first[7].image(), again[7].image())
    assert [item.captions for item in world.gallery(30, seed=3)] == [item.captions for item in first[:30]]
    assert [item.captions for item in world.gallery(30, seed=4)] != [item.captions for item in first[:30]]


def test_captions_describe_the_scene():
    scene = world.Scene(
        "gray",
        (world.Group(2, "small", "striped", "red", "star"), world.Group(1, "large", "outlined", "blue", "hexagon")),
        "to the left of",
    )
    assert world.captions(scene) == (
        "two small striped red stars to the left of a large outlined blue hexagon on a gray background",
        "a large outlined blue hexagon to the right of two small striped red stars on a gray background",
    )
    single = world.Scene("white", (world.Group(1, "large", "outlined", "cyan", "cross"),))
    assert world.captions(single)[0] == "a large outlined cyan cross on a white background"
    words = {word for item in world.gallery(200) for text in item.captions for word in text.split()}
    assert words <= set(world.vocabulary())


@pytest.mark.parametrize("index", range(0, 600, 7))
def test_images_show_what_their_caption_says(test_gallery, index):
    item = test_gallery[index]
    image, centres = world.draw(item.scene, item.seed)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert np.array_equal(image, item.image())
    background = np.array(world.BACKGROUNDS[item.scene.background])
    assert np.abs(image[0, 0].astype(int) - background).max() <= 9  # corners are always empty
    for group, points in zip(item.scene.groups, centres):
        assert len(points) == group.count
        colour = np.array(world.COLOURS[group.colour])
        for cx, cy in points:
            radius = world.SIZE_RADIUS_PX[group.size]
            closest = np.abs(_disc(image, cx, cy, radius).astype(int) - colour).max(axis=1).min()
            assert closest <= 20, f"no {group.colour} pixel in {group.phrase()}"
            if group.texture == "striped":
                assert _dark_pixels(image, cx, cy, group) >= 2, f"{group.phrase()} shows no stripe"
            if group.texture == "outlined":
                assert np.abs(image[cy, cx].astype(int) - background).max() <= 12, "an outlined object is hollow"
    if item.scene.relation is not None:
        first, second = centres
        axis = 0 if item.scene.relation == "to the left of" else 1
        assert max(p[axis] for p in first) < min(p[axis] for p in second)


def test_patterned_objects_show_dark_pixels_and_plain_ones_do_not(test_gallery):
    dark: dict[str, list[int]] = {texture: [] for texture in world.TEXTURES}
    for item in test_gallery[:600]:
        image, centres = world.draw(item.scene, item.seed)
        for group, points in zip(item.scene.groups, centres):
            dark[group.texture] += [_dark_pixels(image, cx, cy, group) for cx, cy in points]
    mean = {texture: np.mean(counts) for texture, counts in dark.items()}
    assert min(mean["striped"], mean["dotted"]) > 5 * max(mean["solid"], mean["outlined"]), mean
    assert np.mean(np.array(dark["dotted"]) > 0) > 0.95


def _dark_pixels(image: np.ndarray, cx: int, cy: int, group: world.Group) -> int:
    """Pixels in the object's core within 8 levels of its dark shade (stripes and dots use it)."""
    pixels = _disc(image, cx, cy, world.SIZE_RADIUS_PX[group.size] * 0.6).astype(int)
    return int((np.abs(pixels - np.array(world.COLOURS[group.colour]) * 0.3).max(axis=1) <= 8).sum())


def _disc(image: np.ndarray, cx: float, cy: float, radius: float) -> np.ndarray:
    """The ``(m, 3)`` pixels whose centres lie within ``radius`` of ``(cx, cy)``."""
    ys, xs = np.mgrid[0:64, 0:64]
    return image[(xs + 0.5 - cx) ** 2 + (ys + 0.5 - cy) ** 2 <= radius**2]


def test_sizes_differ_in_area():
    small = world.Scene("black", (world.Group(1, "small", "solid", "yellow", "circle"),))
    large = world.Scene("black", (world.Group(1, "large", "solid", "yellow", "circle"),))
    area = {name: (world.render(scene, 0).max(axis=2) > 100).sum() for name, scene in (("s", small), ("l", large))}
    assert 2.5 < area["l"] / area["s"] < 3.5  # radii 9.5 vs 5.5 px


def test_training_batches_hold_clusters_and_vary():
    batch = world.training_batch(random.Random(1), 3, 4)
    images, texts, labels = batch.images, batch.captions, batch.labels
    assert images.shape[1:] == (64, 64, 3) and len(texts) == len(images) == len(labels) >= 9
    assert labels.shape[1] == len(world.ATTRIBUTES)
    assert len(set(texts)) == len(texts)
    again = world.training_batch(random.Random(1), 3, 4)
    assert np.array_equal(images, again.images) and texts == again.captions


def test_attribute_labels_name_the_left_or_top_group_first():
    star = world.Group(2, "small", "striped", "red", "star")
    hexagon = world.Group(1, "large", "outlined", "blue", "hexagon")
    labels = dict(zip(world.ATTRIBUTES, world.attribute_labels(world.Scene("gray", (star, hexagon), "above"))))
    assert labels["relation"] == world.ATTRIBUTES["relation"].index("above")
    assert labels["0.count"] == 2 and labels["1.count"] == 1
    assert world.ATTRIBUTES["0.shape"][labels["0.shape"]] == "star"
    assert world.ATTRIBUTES["1.texture"][labels["1.texture"]] == "outlined"
    single = dict(zip(world.ATTRIBUTES, world.attribute_labels(world.Scene("white", (star,)))))
    assert single["relation"] == 0 and single["1.count"] == 0 and single["1.shape"] == -1


def test_materialise_writes_karpathy_json_once(tmp_path):
    json_path, image_root = world.materialise_small(tmp_path, n_images=12, seed=5)
    records = json.loads(json_path.read_text())["images"]
    assert len(records) == 12
    items = world.gallery(12, seed=5)
    for record, item in zip(records, items):
        assert [s["raw"] for s in record["sentences"]] == list(item.captions)
        assert record["split"] == "test"
        pixels = np.asarray(Image.open(image_root / record["filepath"] / record["filename"]))
        assert np.array_equal(pixels, item.image())  # PNG is lossless
    stamp = json_path.stat().st_mtime_ns
    assert world.materialise_small(tmp_path, n_images=12, seed=5) == (json_path, image_root)
    assert json_path.stat().st_mtime_ns == stamp  # reused, not rewritten


def test_a_half_written_world_is_rebuilt(tmp_path):
    json_path, image_root = world.materialise_small(tmp_path, n_images=6, seed=1)
    (image_root / "COMPLETE.json").unlink()  # as if the writer was killed before finishing
    (image_root / "images" / "000003.png").unlink()
    world.materialise_small(tmp_path, n_images=6, seed=1)
    assert (image_root / "images" / "000003.png").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left behind


def test_materialise_test_split_goes_to_the_cache_dir(monkeypatch):
    """Every image of the split, under the cache dir (the split shrunk here: its real size is checked above)."""
    monkeypatch.setitem(world.GALLERY_SIZES, "test", 120)
    json_path, image_root = world.materialise()
    assert image_root.parent == cache_dir() / "shapes-world"
    records = json.loads(json_path.read_text())["images"]
    assert len(records) == 120
    assert len(list((image_root / "images").glob("*.png"))) == 120
    assert all((image_root / record["filepath"] / record["filename"]).is_file() for record in records)
    with pytest.raises(ValueError, match="galleries are test and lifetime"):
        world.materialise("train")


def test_the_lifetime_gallery_grows_the_test_gallery(tmp_path, monkeypatch):
    monkeypatch.setitem(world.GALLERY_SIZES, "test", 10)
    monkeypatch.setitem(world.GALLERY_SIZES, "lifetime", 25)
    test_json, test_root = world.materialise("test", root=tmp_path)
    life_json, life_root = world.materialise("lifetime", root=tmp_path)
    assert test_root != life_root
    test_records = json.loads(test_json.read_text())["images"]
    life_records = json.loads(life_json.read_text())["images"]
    assert len(test_records) == 10 and len(life_records) == 25
    assert life_records[:10] == test_records  # the test gallery is the lifetime gallery's first tenth here
    for record in test_records:
        name = f"images/{record['filename']}"
        assert (life_root / name).read_bytes() == (test_root / name).read_bytes()
    captions = [s["raw"] for r in life_records for s in r["sentences"]]
    assert len(captions) == len(set(captions))


# --- the scene grammar's rules --------------------------------------------------------------


def test_validity_rules():
    small3 = world.Group(3, "small", "solid", "red", "star")
    large3 = world.Group(3, "large", "solid", "red", "star")
    other = world.Group(1, "large", "dotted", "blue", "circle")
    assert world.is_valid(world.Scene("gray", (small3, other), "above"))
    assert not world.is_valid(world.Scene("gray", (large3, other), "above"))  # three large do not fit in half
    assert not world.is_valid(world.Scene("gray", (other, other), "above"))  # identical groups: ambiguous caption
    assert not world.is_valid(world.Scene("gray", (other,), "above"))  # one group has no relation
    assert not world.is_valid(world.Scene("gray", (small3, other), "behind"))
    assert world.Group(1, "large", "outlined", "blue", "hexagon").phrase() == "a large outlined blue hexagon"
    assert world.Group(1, "small", "outlined", "blue", "cross").phrase() == "a small outlined blue cross"
    assert world.Group(2, "small", "solid", "red", "cross").phrase() == "two small solid red crosses"


@pytest.mark.parametrize("factor", list(world.VARIANT_WEIGHTS))
def test_each_variant_changes_what_it_says(factor):
    rng = random.Random(factor)
    changed = 0
    for _ in range(200):
        scene = world.random_scene(rng)
        other = world.variant(scene, factor, rng)
        if other is None:
            continue
        changed += 1
        assert world.is_valid(other) and other != scene
        if factor == "background":
            assert other.groups == scene.groups and other.background != scene.background
        elif factor == "swap_groups":
            assert other.groups == scene.groups[::-1] and other.relation == scene.relation
        elif factor == "axis":
            assert other.groups == scene.groups and other.relation != scene.relation
        elif factor in ("swap_colour", "swap_texture"):
            attribute = "colour" if factor == "swap_colour" else "texture"
            before = [getattr(group, attribute) for group in scene.groups]
            assert [getattr(group, attribute) for group in other.groups] == before[::-1]
        else:  # one attribute of one group
            diffs = [(a, b) for a, b in zip(scene.groups, other.groups) if a != b]
            assert len(diffs) == 1 and other.background == scene.background
            a, b = diffs[0]
            assert [f for f in ("count", "size", "texture", "colour", "shape") if getattr(a, f) != getattr(b, f)] == [
                factor
            ]
    assert changed >= 50


# --- the pixel array beside the PNGs --------------------------------------------------------

# Written by the world as it was before the pixel array existed (cascade/world.py at 6535d6f):
# materialise_small(n_images=12, seed=5). The ids are what every feature cache is keyed by.
OLD_JSON_SHA256 = "27c4434a635690eee21bae3d59bc986450fe54667402f47950db0990c7352e76"
OLD_IDS = [
    "675dcccf9a39b5db9fac", "f8305ec2b581d8a00ac1", "6442cd9c1d62e233bd2a", "356da3e3772b3b8a954a",
    "f496c636d569196f8dfd", "3327f2eb1376465185ce", "b3f675f5fcfbe7a9af82", "f3836421f134dba8655d",
    "b5773b93669465dfe403", "705c308eb02718e33d00", "fb4f5e855d9c36bdf552", "fed0458b87f41a4e0774",
]  # fmt: skip


def _file_id(path) -> str:
    """An image id as documented: the first 20 hex digits of the BLAKE2b-128 digest of the file's bytes."""
    return hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()[:20]


def _pngs(image_root):
    return sorted((image_root / "images").glob("*.png"))


def test_the_gallery_files_and_ids_are_those_of_the_world_before_the_array(tmp_path):
    json_path, image_root = world.materialise_small(tmp_path, n_images=12, seed=5)
    assert hashlib.sha256(json_path.read_bytes()).hexdigest() == OLD_JSON_SHA256
    assert [_file_id(path) for path in _pngs(image_root)] == OLD_IDS
    assert Corpus.from_karpathy(json_path, image_root).ids == OLD_IDS
    assert json.loads((image_root / "COMPLETE.json").read_text()) == {"world_version": 1, "n_images": 12, "seed": 5}


def test_the_pixel_array_holds_each_pngs_decoded_pixels_under_its_id(tmp_path):
    _, image_root = world.materialise_small(tmp_path, n_images=12, seed=5)
    array = open_pixel_array(image_root / "images" / PIXEL_ARRAY_NAME)
    assert array is not None and array.pixels.shape == (12, 64, 64, 3) and array.pixels.dtype == np.uint8
    assert list(array.ids) == OLD_IDS
    for row, path in enumerate(_pngs(image_root)):
        with Image.open(path) as png:
            assert np.array_equal(array.pixels[row], np.asarray(png.convert("RGB")))
    corpus = Corpus.from_folder(image_root / "images")
    assert corpus.skipped == [] and len(corpus) == 12  # the hidden array is not taken for an unreadable image


def _old_gallery(tmp_path, n_images=12, seed=5):
    """A gallery as users' disks hold it from before the array: the same files, no array."""
    json_path, image_root = world.materialise_small(tmp_path, n_images=n_images, seed=seed)
    (image_root / "images" / PIXEL_ARRAY_NAME).unlink()
    return json_path, image_root


def test_a_gallery_without_the_array_gets_it_on_next_use_and_keeps_its_files(tmp_path):
    json_path, image_root = _old_gallery(tmp_path)
    assert Corpus.from_karpathy(json_path, image_root).pixel_rows == {}  # nothing to serve from: PNGs decoded
    stamps = {path: path.stat().st_mtime_ns for path in [json_path, *_pngs(image_root)]}
    assert world.materialise_small(tmp_path, n_images=12, seed=5) == (json_path, image_root)
    assert {path: path.stat().st_mtime_ns for path in stamps} == stamps  # only the array was written
    array = open_pixel_array(image_root / "images" / PIXEL_ARRAY_NAME)
    assert array is not None and list(array.ids) == OLD_IDS
    for row, path in enumerate(_pngs(image_root)):
        assert np.array_equal(array.pixels[row], np.asarray(Image.open(path)))
    corpus = Corpus.from_karpathy(json_path, image_root)
    assert corpus.ids == OLD_IDS and set(corpus.pixel_rows) == set(OLD_IDS)
    assert not [p for p in (image_root / "images").iterdir() if p.name.startswith(f"{PIXEL_ARRAY_NAME}.tmp")]


def _truncate(path):
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size - 5000)


def _flip_a_pixel(path):
    with open(path, "r+b") as handle:
        handle.seek(4096 + 3 * 64 * 64 * 3 + 100)  # inside row 3
        value = handle.read(1)[0]
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([value ^ 0x40]))


@pytest.mark.parametrize("damage", [_truncate, _flip_a_pixel], ids=["truncated", "corrupt"])
def test_a_damaged_array_is_not_served_and_is_rebuilt(tmp_path, damage):
    json_path, image_root = world.materialise_small(tmp_path, n_images=6, seed=2)
    path = image_root / "images" / PIXEL_ARRAY_NAME
    good = path.read_bytes()
    damage(path)
    assert open_pixel_array(path) is None
    corpus = Corpus.from_karpathy(json_path, image_root)
    assert corpus.pixel_rows == {}  # decoded from the PNGs instead
    assert np.array_equal(np.asarray(corpus.load(corpus.ids[3])), np.asarray(Image.open(_pngs(image_root)[3])))
    world.materialise_small(tmp_path, n_images=6, seed=2)
    assert path.read_bytes() == good  # rebuilt from the PNGs: the same array as first written
    assert set(Corpus.from_karpathy(json_path, image_root).pixel_rows) == set(corpus.ids)
