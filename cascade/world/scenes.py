"""The scene grammar: objects, scenes, their captions, the train/test split, clusters of near misses.

Everything here is pure data and seeded sampling: no pixels (``rendering``), no
files (``materialising``).
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

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
