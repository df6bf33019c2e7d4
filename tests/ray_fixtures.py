"""One local Ray for the tests that run on Ray: ``ray.init`` costs seconds, each test starting its own paid it again.

The tests marked ``ray_group`` form one xdist group, so ``--dist loadgroup`` runs them on one worker,
one after another (and so does a run without xdist: the group is moved together). The first that asks
for a running Ray starts it; it stops after the group's last test, so the worker's later tests do not
run beside an idle Ray (its daemons take about 5% of a core).
"""

from __future__ import annotations

import sys

import pytest

RAY_GROUP = "ray"
ray_group = pytest.mark.xdist_group(RAY_GROUP)


def start_local_ray():
    """``ray``, initialised: a local Ray on 2 CPUs started as ``ray_embed`` starts one, or the one already running."""
    ray = pytest.importorskip("ray")
    from cascade.ray_build import _start_ray

    _start_ray(None, workers=2)  # returns at once when this process already runs one
    return ray


@pytest.fixture
def local_ray():
    """``start_local_ray()`` for a test (a module-scoped fixture calls the function)."""
    return start_local_ray()


def _group(item: pytest.Item | None) -> str | None:
    marker = item.get_closest_marker("xdist_group") if item is not None else None
    return None if marker is None else (marker.args[0] if marker.args else marker.kwargs.get("name"))


@pytest.hookimpl(trylast=True)  # after tests/conftest.py put every test in a group
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The group's tests one after another, where its first was (tests of two modules share one Ray)."""
    group = [item for item in items if _group(item) == RAY_GROUP]
    if group:
        others = [item for item in items if _group(item) != RAY_GROUP]
        first = items.index(group[0])
        items[:] = others[:first] + group + others[first:]


@pytest.hookimpl(trylast=True)  # after the test's own fixtures are torn down (a test may hide ``ray`` from imports)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Shut the shared Ray down after the last test of the group (pytest-xdist gives each worker's next test)."""
    if _group(item) != RAY_GROUP or _group(nextitem) == RAY_GROUP:
        return
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
