"""How ``bash dev.sh test`` spreads the suite: a module's tests stay on one pytest-xdist worker."""

import os

import pytest


def test_under_loadgroup_a_test_carries_its_group(request):
    # On a worker, pytest-xdist sets ``loadgroup`` (``dist`` reads "no" there).
    if os.environ.get("PYTEST_XDIST_WORKER") is None or not getattr(request.config.option, "loadgroup", False):
        pytest.skip("checks bash dev.sh test's run (pytest-xdist, --dist loadgroup)")
    # pytest-xdist groups by renaming a test's id to ID@GROUP (tests/conftest.py names the groups). With
    # pytest 9.2.0 the rename is lost and every test is scheduled alone (pytest-dev/pytest-xdist#1386):
    # module fixtures are then built on every worker, and Ray tests run two Rays at once.
    assert request.node.nodeid.endswith("@" + __name__)
