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
    assert common.fitted(config, _args(["shapes:small"]), 4).ks == (4,)
    assert common.fitted(config, _args(["shapes:small"]), 40).ks == (10,)
    asked = common.config(_args(["shapes:small"], (20,)))
    assert common.fitted(asked, _args(["shapes:small"], (20,)), 4).ks == (20,)  # asked for: refused later, not cut


def test_several_levels_still_need_ks():
    with pytest.raises(ConfigError, match="needs --ks"):
        common.config(_args(["shapes:small", "shapes:large"]))
