"""Presets are data: every name they hold must resolve, every configuration must be valid."""

from __future__ import annotations

import numpy as np
import pytest

from analysis import presets
from cascade import world
from cascade.encoders import create_encoder, known_names
from cascade.errors import ConfigError
from cascade.types import CascadeConfig


@pytest.mark.parametrize("name", presets.names())
def test_every_configuration_of_a_preset_is_valid_and_its_encoders_exist(name):
    preset = presets.get(name)
    CascadeConfig(levels=preset.levels, ks=preset.ks)  # raises on ks that grow or miscount
    for levels, ks in preset.comparisons:
        CascadeConfig(levels=levels, ks=ks)
        assert ks[-1] >= 10, "the evaluator measures R@10"
    for encoder in {*preset.levels, *(name for levels, _ in preset.comparisons for name in levels)}:
        if preset.dataset == "world":
            assert create_encoder(encoder).id.startswith(encoder.split("@")[0])
        else:  # hub weights: the name must be one the backend advertises (loading needs the hub)
            assert encoder in known_names(), encoder
    if preset.reranker is not None:
        assert preset.reranker not in preset.levels


def test_the_default_cascade_is_among_the_compared_configurations():
    shapes = presets.get("shapes")
    assert (shapes.levels, shapes.ks) in shapes.comparisons
    assert [levels for levels, ks in shapes.comparisons if len(levels) == 1][:3] == [
        ("shapes:small",),
        ("shapes:medium",),
        ("shapes:large",),
    ]


def test_an_unknown_preset_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown preset 'nope'; presets: coco-blip, .*flickr30k-cpu, .*shapes"):
        presets.get("nope")
    with pytest.raises(ConfigError, match="gallery must be one of test, lifetime"):
        presets.gallery("shapes", "huge")


def test_the_test_gallery_is_the_worlds_test_gallery(monkeypatch):
    monkeypatch.setitem(world.GALLERY_SIZES, "test", 12)
    corpus = presets.gallery("shapes")
    items = world.gallery(12)  # the scenes themselves, without anything written to disk
    assert len(corpus) == 12
    assert [corpus.captions[image_id] for image_id in corpus.ids] == [list(item.captions) for item in items]
    first = np.asarray(corpus.load(corpus.ids[0]).convert("RGB"))
    assert np.array_equal(first, items[0].image())
