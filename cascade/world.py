"""The built-in offline world: seeded scenes of shapes, their images and their captions.

A scene is a background plus one or two *groups*; a group is 1-3 identical
objects (shape, colour, size, texture). Two groups stand in a spatial relation
("two small striped red stars to the left of a large outlined blue hexagon on a
gray background"). Every caption names every attribute of every object, so a
caption describes its own image and no other scene.

Why the world is built this way: retrieval is only hard when the gallery holds
*near misses*. The gallery is therefore made of clusters: a base scene plus
variants that change exactly one thing, often a fine one (texture of a small
object, size, count, which group is left, which group has which colour). A
cheap encoder finds the cluster; telling its members apart takes a larger one,
and binding attributes to objects is where a cross-encoder beats a single
vector. Scenes are split into train and test by a hash of their caption, so
no test caption is ever seen in training.

Images are 64x64 RGB, drawn at 2x and box-filtered (anti-aliasing), so the
whole world renders on a CPU in seconds.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import random
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from cascade.paths import cache_dir

WORLD_VERSION = 1
IMAGE_SIZE_PX = 64
TEST_GALLERY_IMAGES = 5000
TEST_GALLERY_SEED = 20240
# A search system's whole collection, for lifetime replays: the test gallery grown
# twentyfold (its first 5,000 images *are* the test gallery). The alpha-small-world
# regime needs a gallery large against k_1 x the number of distinct queries.
LIFETIME_GALLERY_IMAGES = 100_000
GALLERY_SIZES: dict[str, int] = {"test": TEST_GALLERY_IMAGES, "lifetime": LIFETIME_GALLERY_IMAGES}
CLUSTER_SIZE = 5
_SUPERSAMPLE = 2  # draw at 2x, average 2x2 blocks: smooth edges without a rasteriser
_GAP_PX = 2.0  # clear space between objects, so every object stays a separate blob

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "orange": (245, 140, 20),
    "yellow": (235, 215, 40),
    "green": (40, 165, 60),
    "cyan": (40, 200, 215),
    "blue": (45, 75, 220),
    "purple": (135, 60, 190),
    "pink": (245, 125, 185),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (20, 20, 20),
    "gray": (128, 128, 128),
    "white": (238, 238, 238),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "star", "cross", "hexagon")
PLURALS: dict[str, str] = {shape: shape + ("es" if shape.endswith("s") else "s") for shape in SHAPES}
TEXTURES: tuple[str, ...] = ("solid", "striped", "dotted", "outlined")
SIZE_RADIUS_PX: dict[str, float] = {"small": 5.5, "large": 9.5}
COUNT_WORDS: dict[int, str] = {1: "a", 2: "two", 3: "three"}
# Canonical relations read "group 0 REL group 1"; the paraphrase uses the inverse.
RELATIONS: dict[str, str] = {"to the left of": "to the right of", "above": "below"}

# How often each kind of one-change variant joins a cluster. The fine ones
# (texture, size, count, binding) dominate: they are what separates encoders.
VARIANT_WEIGHTS: dict[str, float] = {
    "texture": 3.0,
    "size": 2.0,
    "count": 2.0,
    "shape": 1.5,
    "colour": 1.0,
    "background": 0.5,
    "swap_groups": 2.0,
    "swap_colour": 2.0,
    "swap_texture": 1.5,
    "axis": 1.0,
}
_TEST_BUCKETS = 4  # a quarter of all scenes (by caption hash) are test-only
_SIZES, _COLOUR_NAMES, _BACKGROUND_NAMES = tuple(SIZE_RADIUS_PX), tuple(COLOURS), tuple(BACKGROUNDS)
_RELATION_NAMES = tuple(RELATIONS)


@dataclass(frozen=True)
class Group:
    """``count`` identical objects. ``size`` in SIZE_RADIUS_PX, ``texture`` in TEXTURES."""

    count: int
    size: str
    texture: str
    colour: str
    shape: str

    def phrase(self) -> str:
        """E.g. ``two small striped red stars``, ``an outlined blue hexagon``."""
        noun = self.shape if self.count == 1 else PLURALS[self.shape]
        words = f"{self.size} {self.texture} {self.colour} {noun}"
        if self.count == 1:
            return ("an " if words[0] in "aeiou" else "a ") + words
        return f"{COUNT_WORDS[self.count]} {words}"


@dataclass(frozen=True)
class Scene:
    """A background and one or two groups; with two, ``groups[0] relation groups[1]``."""

    background: str
    groups: tuple[Group, ...]
    relation: str | None = None

    @functools.cached_property
    def key(self) -> str:
        """The canonical caption, which identifies the scene."""
        return captions(self)[0]


def captions(scene: Scene) -> tuple[str, str]:
    """The scene's two captions: canonical, then a paraphrase with another word order."""
    background = f"a {scene.background} background"
    if len(scene.groups) == 1:
        phrase = scene.groups[0].phrase()
        return f"{phrase} on {background}", f"{background} with {phrase}"
    first, second = (group.phrase() for group in scene.groups)
    inverse = RELATIONS[scene.relation]
    return (f"{first} {scene.relation} {second} on {background}", f"{second} {inverse} {first} on {background}")


def vocabulary() -> list[str]:
    """Every word a caption can contain, sorted (the shapes tokeniser's vocabulary)."""
    words = {"an", "on", "background", "with", *COUNT_WORDS.values()}
    words |= {*COLOURS, *BACKGROUNDS, *SHAPES, *PLURALS.values(), *TEXTURES, *SIZE_RADIUS_PX}
    for relation, inverse in RELATIONS.items():
        words |= {*relation.split(), *inverse.split()}
    return sorted(words)


def split_of(scene: Scene) -> str:
    """``"test"`` or ``"train"``, fixed by a hash of the canonical caption."""
    digest = hashlib.blake2b(scene.key.encode(), digest_size=4).digest()
    return "test" if int.from_bytes(digest, "little") % _TEST_BUCKETS == 0 else "train"


def is_valid(scene: Scene) -> bool:
    """Whether the scene can be drawn and its captions are unambiguous."""
    if len(scene.groups) == 1:
        return scene.relation is None
    first, second = scene.groups
    if scene.relation not in RELATIONS or first == second:
        return False
    # Two groups share half the canvas each: three large objects do not fit in half.
    return all(group.count < 3 or group.size == "small" for group in scene.groups)


# --- sampling scenes and clusters -------------------------------------------------------------


def _random_group(rng: random.Random) -> Group:
    return Group(
        count=rng.choice((1, 1, 2, 3)),
        size=rng.choice(_SIZES),
        texture=rng.choice(TEXTURES),
        colour=rng.choice(_COLOUR_NAMES),
        shape=rng.choice(SHAPES),
    )


def random_scene(rng: random.Random, split: str | None = None) -> Scene:
    """A valid scene drawn uniformly-ish; with ``split``, only scenes of that split."""
    while True:
        background = rng.choice(_BACKGROUND_NAMES)
        if rng.random() < 0.2:
            scene = Scene(background, (_random_group(rng),))
        else:
            relation = rng.choice(_RELATION_NAMES)
            scene = Scene(background, (_random_group(rng), _random_group(rng)), relation)
        if is_valid(scene) and (split is None or split_of(scene) == split):
            return scene


def _other(rng: random.Random, options: Sequence, current):
    return rng.choice([option for option in options if option != current])


def _change_group(rng: random.Random, group: Group, factor: str) -> Group:
    if factor == "texture":
        return replace(group, texture=_other(rng, TEXTURES, group.texture))
    if factor == "size":
        return replace(group, size=_other(rng, _SIZES, group.size))
    if factor == "count":
        return replace(group, count=_other(rng, tuple(COUNT_WORDS), group.count))
    if factor == "shape":
        return replace(group, shape=_other(rng, SHAPES, group.shape))
    return replace(group, colour=_other(rng, _COLOUR_NAMES, group.colour))


def variant(scene: Scene, factor: str, rng: random.Random) -> Scene | None:
    """``scene`` with exactly one thing changed (see VARIANT_WEIGHTS), or None if not applicable."""
    groups = list(scene.groups)
    if factor == "background":
        return replace(scene, background=_other(rng, _BACKGROUND_NAMES, scene.background))
    if factor in ("texture", "size", "count", "shape", "colour"):
        index = rng.randrange(len(groups))
        groups[index] = _change_group(rng, groups[index], factor)
        changed = replace(scene, groups=tuple(groups))
        return changed if is_valid(changed) else None
    if len(groups) != 2:
        return None
    first, second = groups
    if factor == "swap_groups":
        changed = replace(scene, groups=(second, first))
    elif factor == "axis":
        changed = replace(scene, relation=next(r for r in RELATIONS if r != scene.relation))
    else:
        attribute = "colour" if factor == "swap_colour" else "texture"
        a, b = getattr(first, attribute), getattr(second, attribute)
        if a == b:
            return None
        changed = replace(scene, groups=(replace(first, **{attribute: b}), replace(second, **{attribute: a})))
    return changed if is_valid(changed) and changed != scene else None


def cluster(rng: random.Random, size: int, split: str | None = None, taken: set[str] | None = None) -> list[Scene]:
    """A base scene and up to ``size - 1`` one-change variants, all of ``split``, keys not in ``taken``.

    ``taken`` (if given) is updated with the keys returned, so a gallery never repeats a caption.
    """
    taken = set() if taken is None else taken
    base = random_scene(rng, split)
    while base.key in taken:
        base = random_scene(rng, split)
    scenes, keys = [base], {base.key}
    factors, weights = list(VARIANT_WEIGHTS), list(VARIANT_WEIGHTS.values())
    for _ in range(40 * size):  # a few tries per variant; the split filter rejects 3 in 4
        if len(scenes) == size:
            break
        changed = variant(base, rng.choices(factors, weights)[0], rng)
        if changed is None or changed.key in keys or changed.key in taken:
            continue
        if split is not None and split_of(changed) != split:
            continue
        scenes.append(changed)
        keys.add(changed.key)
    taken |= keys
    return scenes


# --- drawing ----------------------------------------------------------------------------------


def _inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean mask of ``shape`` in coordinates normalised by the radius (v points down).

    Every shape fits in the unit circle, so the radius bounds the object for layout.
    """
    au, av = np.abs(u), np.abs(v)
    if shape == "circle":
        return u * u + v * v <= 1.0
    if shape == "square":
        return np.maximum(au, av) <= 0.71
    if shape == "diamond":
        return au + av <= 1.0
    if shape == "triangle":  # equilateral, apex up, centroid at the centre
        return (v <= 0.5) & (au <= (v + 1.0) / np.sqrt(3.0))
    if shape == "cross":
        return ((au <= 0.4) & (av <= 0.92)) | ((av <= 0.4) & (au <= 0.92))
    if shape == "hexagon":
        return (av <= 0.866) & (0.866 * au + 0.5 * av <= 0.866)
    # star: radius falls linearly from 1 at each of 5 points to 0.45 between them
    sector = np.pi * 2 / 5
    angle = np.mod(np.arctan2(v, u) + np.pi / 2 + sector / 2, sector) - sector / 2
    return np.hypot(u, v) <= 1.0 - 0.55 * np.abs(angle) / (sector / 2)


@functools.cache
def _sprite(shape: str, size: str, texture: str) -> np.ndarray:
    """One object on the supersampled grid, centred on a pixel corner: ``(2h, 2h)`` uint8 codes.

    Codes: 0 outside, 1 the object's colour, 2 its dark shade (stripes, dots),
    3 the background (the hollow inside of an outlined object). Patterns are
    aligned to whole pixels, so a stripe or a dot is a crisp dark pixel at
    64 px and a half-tone blur at the coarser inputs of cheaper encoders.
    """
    s, radius = _SUPERSAMPLE, SIZE_RADIUS_PX[size]
    half = int(np.ceil(radius + 1))
    offsets = (np.arange(2 * half * s) + 0.5) / s - half  # sub-pixel centres relative to the object centre, in px
    dy, dx = np.meshgrid(offsets, offsets, indexing="ij")
    row, column = np.floor(dy).astype(int), np.floor(dx).astype(int)  # whole-pixel cells
    codes = np.where(_inside(shape, dx / radius, dy / radius), 1, 0).astype(np.uint8)
    if texture == "striped":  # dark rows 2 px thick, every 4 px
        codes[(codes == 1) & (row % 4 < 2)] = 2
    elif texture == "dotted":  # one dark pixel every 3 px in both directions
        codes[(codes == 1) & (row % 3 == 1) & (column % 3 == 1)] = 2
    elif texture == "outlined":  # a rim about 1.5 px thick whatever the shape
        codes[_erode(codes == 1, steps=3)] = 3
    codes.setflags(write=False)
    return codes


def _erode(mask: np.ndarray, steps: int) -> np.ndarray:
    """Binary erosion by ``steps`` sub-pixels, alternating 4- and 8-neighbourhoods (a near-round element)."""
    mask = mask.copy()
    for step in range(steps):
        shrunk = mask.copy()
        shifts = [(1, 0), (-1, 0), (0, 1), (0, -1)] + ([(1, 1), (1, -1), (-1, 1), (-1, -1)] if step % 2 else [])
        for dy, dx in shifts:
            shrunk &= np.roll(mask, (dy, dx), axis=(0, 1))  # the sprite has an empty border: no wrap-around
        mask = shrunk
    return mask


def _paint(canvas: np.ndarray, centre: tuple[int, int], group: Group, rgb: np.ndarray, bg: np.ndarray) -> None:
    """Draw one object of ``group`` centred on the pixel corner ``centre`` onto the supersampled canvas, in place."""
    codes = _sprite(group.shape, group.size, group.texture)
    half = codes.shape[0] // 2
    cx, cy = (c * _SUPERSAMPLE for c in centre)
    window = canvas[cy - half : cy + half, cx - half : cx + half]
    if cy < half or cx < half or window.shape[:2] != codes.shape:
        raise ValueError(f"object at {centre} does not fit on the canvas")
    window[codes == 1] = rgb
    window[codes == 2] = rgb * 0.3
    window[codes == 3] = bg


def _layout(scene: Scene, rng: random.Random) -> list[list[tuple[int, int]]]:
    """Object centres per group (64-px units), honouring the scene's relation."""
    size = float(IMAGE_SIZE_PX)
    if scene.relation is None:
        regions = [(1.0, size - 1, 1.0, size - 1)]
    elif scene.relation == "to the left of":
        regions = [(1.0, size / 2 - 1, 1.0, size - 1), (size / 2 + 1, size - 1, 1.0, size - 1)]
    else:
        regions = [(1.0, size - 1, 1.0, size / 2 - 1), (1.0, size - 1, size / 2 + 1, size - 1)]
    for _ in range(200):
        centres = _place(scene.groups, regions, rng)
        if centres is not None and _relation_holds(scene, centres):
            return centres
    raise RuntimeError(f"could not lay out scene {scene.key!r}")


def _place(groups: Sequence[Group], regions: Sequence[tuple], rng: random.Random) -> list | None:
    placed: list[tuple[int, int, float]] = []
    centres: list[list[tuple[int, int]]] = []
    for group, (x0, x1, y0, y1) in zip(groups, regions):
        radius = SIZE_RADIUS_PX[group.size]
        centres.append([])
        for _ in range(group.count):
            for _ in range(60):
                cx = rng.randint(math.ceil(x0 + radius), math.floor(x1 - radius))
                cy = rng.randint(math.ceil(y0 + radius), math.floor(y1 - radius))
                if all(np.hypot(cx - px, cy - py) >= radius + pr + _GAP_PX for px, py, pr in placed):
                    break
            else:
                return None
            placed.append((cx, cy, radius))
            centres[-1].append((cx, cy))
    return centres


def _relation_holds(scene: Scene, centres: list[list[tuple[int, int]]]) -> bool:
    """With two groups, their extents must overlap across the relation's axis.

    Side-by-side groups whose vertical extents overlap are "left of" and never
    "above", so exactly one of the four relation words is true of the image.
    """
    if scene.relation is None:
        return True
    axis = 1 if scene.relation == "to the left of" else 0  # the axis that must overlap
    spans = []
    for group, points in zip(scene.groups, centres):
        radius = SIZE_RADIUS_PX[group.size]
        values = [point[axis] for point in points]
        spans.append((min(values) - radius, max(values) + radius))
    return spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1]


def render(scene: Scene, seed: int | str) -> np.ndarray:
    """Draw ``scene`` -> ``(64, 64, 3)`` uint8. The layout and colour jitter follow ``seed``."""
    return draw(scene, seed)[0]


def draw(scene: Scene, seed: int | str) -> tuple[np.ndarray, list[list[tuple[int, int]]]]:
    """Like ``render``, and also the object centres (64-px units), one list per group."""
    rng = random.Random(seed)
    s, size = _SUPERSAMPLE, IMAGE_SIZE_PX
    bg = np.array(BACKGROUNDS[scene.background], dtype=np.float32) + rng.randint(-8, 8)
    canvas = np.empty((size * s, size * s, 3), dtype=np.float32)
    canvas[:] = bg
    centres = _layout(scene, rng)
    for group, points in zip(scene.groups, centres):
        jitter = np.array([rng.randint(-12, 12) for _ in range(3)], dtype=np.float32)
        rgb = np.clip(np.array(COLOURS[group.colour], dtype=np.float32) + jitter, 0, 255)
        for centre in points:
            _paint(canvas, centre, group, rgb, bg)
    image = (canvas[0::2, 0::2] + canvas[1::2, 0::2] + canvas[0::2, 1::2] + canvas[1::2, 1::2]) * 0.25
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), centres


# --- galleries and training batches ------------------------------------------------------------


@dataclass(frozen=True)
class GalleryItem:
    """One gallery image: its scene, its captions, the seed that draws it, and its cluster of near misses."""

    index: int
    cluster: int
    scene: Scene
    captions: tuple[str, ...]
    seed: str

    def image(self) -> np.ndarray:
        """``(64, 64, 3)`` uint8."""
        return render(self.scene, self.seed)


def gallery(n_images: int, seed: int = TEST_GALLERY_SEED, split: str = "test") -> list[GalleryItem]:
    """``n_images`` scenes in clusters of CLUSTER_SIZE, no caption repeated; images drawn lazily.

    The first ``m`` items of ``gallery(n)`` are the same as ``gallery(m)`` for
    ``m`` a multiple of CLUSTER_SIZE, so a subset keeps its near misses.
    """
    if n_images <= 0:
        raise ValueError(f"n_images must be positive, got {n_images}")
    rng = random.Random(f"gallery:{seed}")
    taken: set[str] = set()
    items: list[GalleryItem] = []
    while len(items) < n_images:
        cluster_id = items[-1].cluster + 1 if items else 0
        for scene in cluster(rng, CLUSTER_SIZE, split, taken)[: n_images - len(items)]:
            i = len(items)
            items.append(GalleryItem(i, cluster_id, scene, captions(scene), f"image:{seed}:{i}"))
    return items


@dataclass(frozen=True)
class TrainingBatch:
    """Images, one caption each (canonical or paraphrase at random), and the scenes' attribute labels.

    Attributes:
        images: ``(n, 64, 64, 3)`` uint8; members of one cluster are adjacent.
        captions: ``n`` strings.
        labels: ``(n, len(ATTRIBUTES))`` int64 class indices, -1 where an attribute is absent.
        clusters: ``(n,)`` int64, equal for members of one cluster of near misses.
    """

    images: np.ndarray
    captions: list[str]
    labels: np.ndarray
    clusters: np.ndarray


def training_batch(rng: random.Random, n_clusters: int, cluster_size: int = 4) -> TrainingBatch:
    """A batch of train-split scenes in ``n_clusters`` clusters of near misses (``n <= n_clusters * cluster_size``)."""
    images, texts, labels, clusters = [], [], [], []
    for cluster_id in range(n_clusters):
        for scene in cluster(rng, cluster_size, "train"):
            images.append(render(scene, rng.getrandbits(64)))
            texts.append(captions(scene)[rng.randrange(2)])
            labels.append(attribute_labels(scene))
            clusters.append(cluster_id)
    return TrainingBatch(np.stack(images), texts, np.array(labels, dtype=np.int64), np.array(clusters, dtype=np.int64))


# What a scene is, as classification targets (used as auxiliary training signal):
# group 0 is the one on the left or on top, the first in the canonical caption.
ATTRIBUTES: dict[str, tuple] = {
    "background": tuple(BACKGROUNDS),
    "relation": ("none", *RELATIONS),
    **{
        f"{g}.{name}": values
        for g in (0, 1)
        for name, values in (
            ("count", (0, *COUNT_WORDS)),
            ("size", tuple(SIZE_RADIUS_PX)),
            ("texture", TEXTURES),
            ("colour", tuple(COLOURS)),
            ("shape", SHAPES),
        )
    },
}


def attribute_labels(scene: Scene) -> list[int]:
    """One class index per entry of ATTRIBUTES; -1 for the attributes of a missing second group."""
    values: dict[str, object] = {"background": scene.background, "relation": scene.relation or "none"}
    for g in (0, 1):
        group = scene.groups[g] if g < len(scene.groups) else None
        values[f"{g}.count"] = group.count if group else 0
        for name in ("size", "texture", "colour", "shape"):
            values[f"{g}.{name}"] = getattr(group, name) if group else None
    return [-1 if values[key] is None else options.index(values[key]) for key, options in ATTRIBUTES.items()]


# --- materialising a gallery on disk ----------------------------------------------------------


def materialise(split: str = "test", root: Path | None = None) -> tuple[Path, Path]:
    """Write a held-out gallery (PNGs + Karpathy-style JSON) once; later calls return at once.

    Args:
        split: ``"test"`` (TEST_GALLERY_IMAGES, for recall) or ``"lifetime"``
            (LIFETIME_GALLERY_IMAGES, for lifetime replays; about 2.5 min and 460 MB
            the first time). Both hold test-split scenes only, captioned as the test
            split in the JSON. The training stream is generated on the fly.
        root: parent folder; default ``cache_dir() / "shapes-world"``.

    Returns:
        ``(json_path, image_root)``; an image's file is ``image_root / filepath / filename``.
    """
    if split not in GALLERY_SIZES:
        raise ValueError(
            f"galleries are {' and '.join(GALLERY_SIZES)} (training data is generated on the fly), got {split!r}"
        )
    root = Path(root) if root is not None else cache_dir() / "shapes-world"
    return _materialise_gallery(root / f"{split}-v{WORLD_VERSION}", GALLERY_SIZES[split], TEST_GALLERY_SEED)


def materialise_small(root: Path, n_images: int = 50, seed: int = 0) -> tuple[Path, Path]:
    """Like ``materialise`` but a small gallery of ``n_images`` (for tests and demos) under ``root``."""
    return _materialise_gallery(Path(root) / f"small-v{WORLD_VERSION}-n{n_images}-s{seed}", n_images, seed)


def _materialise_gallery(folder: Path, n_images: int, seed: int) -> tuple[Path, Path]:
    marker = {"world_version": WORLD_VERSION, "n_images": n_images, "seed": seed}
    json_path = folder / "captions.json"
    if _is_complete(folder, marker):
        return json_path, folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename: a killed run leaves a temp folder, never a half world.
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        _write_gallery(staging, gallery(n_images, seed))
        (staging / "COMPLETE.json").write_text(json.dumps(marker))
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
        try:
            os.replace(staging, folder)
        except OSError:
            if not _is_complete(folder, marker):  # lost a race to another writer: theirs is as good
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return json_path, folder


def _is_complete(folder: Path, marker: dict) -> bool:
    try:
        return json.loads((folder / "COMPLETE.json").read_text()) == marker
    except (OSError, ValueError):
        return False


def _write_gallery(folder: Path, items: Sequence[GalleryItem]) -> None:
    (folder / "images").mkdir(parents=True)
    records, sentence_id = [], 0
    for item in tqdm(items, desc="writing the gallery", unit="image", disable=None):
        filename = f"{item.index:06d}.png"
        Image.fromarray(item.image()).save(folder / "images" / filename, compress_level=1)
        sentences = []
        for text in item.captions:
            sentences.append({"raw": text, "tokens": text.split(), "imgid": item.index, "sentid": sentence_id})
            sentence_id += 1
        records.append(
            {
                "filename": filename,
                "filepath": "images",
                "split": "test",
                "imgid": item.index,
                "sentids": [s["sentid"] for s in sentences],
                "sentences": sentences,
            }
        )
    (folder / "captions.json").write_text(json.dumps({"dataset": "shapes-world", "images": records}))
