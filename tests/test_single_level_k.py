"""A single level without --ks shows 10 results (fewer on a smaller gallery); several levels still ask for ks."""

from __future__ import annotations

import argparse

import pytest

from cascade.errors import ConfigError
from cascade_cli import common


def _args(levels, ks=None) -> argparse.Namespace:
    return argparse.Namespace(levels=levels, ks=ks, preset="shapes")


def test_one_level_defaults_to_ten_and_fits_a_small_gallery():
    config = common.config(_args(["shapes:small"]))
    assert config.ks == (10,)
    assert common.config(_args(["shapes:small"], (20,))).ks == (20,)
    # A gallery smaller than k is cut by ``Cascades.fitted``, the one rule of both faces (tests/test_cli.py).


def test_several_levels_still_need_ks():
    with pytest.raises(ConfigError, match="needs --ks"):
        common.config(_args(["shapes:small", "shapes:large"]))
