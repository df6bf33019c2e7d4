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


The package, along its seams:

- ``scenes``: the grammar (objects, scenes, captions, split, clusters, attribute labels);
- ``rendering``: a scene and a seed -> ``(64, 64, 3)`` uint8 pixels;
- ``datasets``: the held-out galleries and the training stream;
- ``materialising``: a gallery written to disk once (PNGs, captions JSON, a pixel array).

Everything public is re-exported here: ``from cascade import world; world.gallery(...)``.
"""

from cascade.world.datasets import (
    CLUSTER_SIZE,
    GALLERY_SIZES,
    LIFETIME_GALLERY_IMAGES,
    TEST_GALLERY_IMAGES,
    TEST_GALLERY_SEED,
    WORLD_VERSION,
    GalleryItem,
    TrainingBatch,
    gallery,
    training_batch,
)
from cascade.world.materialising import materialise, materialise_small
from cascade.world.rendering import IMAGE_SIZE_PX, draw, render
from cascade.world.scenes import (
    ATTRIBUTES,
    BACKGROUNDS,
    COLOURS,
    COUNT_WORDS,
    PLURALS,
    RELATIONS,
    SHAPES,
    SIZE_RADIUS_PX,
    TEXTURES,
    VARIANT_WEIGHTS,
    Group,
    Scene,
    attribute_labels,
    captions,
    cluster,
    is_valid,
    random_scene,
    split_of,
    variant,
    vocabulary,
)

__all__ = [
    "ATTRIBUTES",
    "BACKGROUNDS",
    "CLUSTER_SIZE",
    "COLOURS",
    "COUNT_WORDS",
    "GALLERY_SIZES",
    "IMAGE_SIZE_PX",
    "LIFETIME_GALLERY_IMAGES",
    "PLURALS",
    "RELATIONS",
    "SHAPES",
    "SIZE_RADIUS_PX",
    "TEST_GALLERY_IMAGES",
    "TEST_GALLERY_SEED",
    "TEXTURES",
    "VARIANT_WEIGHTS",
    "WORLD_VERSION",
    "GalleryItem",
    "Group",
    "Scene",
    "TrainingBatch",
    "attribute_labels",
    "captions",
    "cluster",
    "draw",
    "gallery",
    "is_valid",
    "materialise",
    "materialise_small",
    "random_scene",
    "render",
    "split_of",
    "training_batch",
    "variant",
    "vocabulary",
]
