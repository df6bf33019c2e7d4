"""Drawing a scene: object masks on a supersampled canvas, a layout that honours the relation, box filtering.

Images are 64x64 RGB, drawn at 2x and box-filtered (anti-aliasing), so the
whole world renders on a CPU in seconds.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Sequence

import numpy as np

from cascade.world.scenes import BACKGROUNDS, COLOURS, SIZE_RADIUS_PX, Group, Scene

IMAGE_SIZE_PX = 64
_SUPERSAMPLE = 2  # draw at 2x, average 2x2 blocks: smooth edges without a rasteriser
_GAP_PX = 2.0  # clear space between objects, so every object stays a separate blob


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
