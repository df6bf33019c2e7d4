"""Test-wide settings: never touch the network, never share state between tests."""

import os
from pathlib import Path

# Set before anything imports huggingface_hub: offline, a missing hub file then
# fails at once instead of costing minutes of DNS retries.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # One worker per core (bash dev.sh test): torch's one-thread-per-core default would put two
    # OpenMP threads per core, which wait on each other; subprocesses inherit the setting.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

from cascade._torchvision_compat import ensure_torchvision_compat  # noqa: E402  (before open_clip/transformers: see cascade/_torchvision_compat.py)

ensure_torchvision_compat()

pytest_plugins = ["tests.ui_fixtures", "tests.ray_fixtures"]  # the app on a test engine; one shared local Ray

ROOT = Path(__file__).resolve().parent.parent  # the repository: subprocesses run from here


@pytest.fixture(autouse=True)
def _isolated_cache_dir(tmp_path_factory, monkeypatch):
    """Point the project's cache directory at a temporary folder for every test."""
    monkeypatch.setenv("CASCADE_CACHE_DIR", str(tmp_path_factory.mktemp("cascade-cache")))


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups into the test ids
def pytest_collection_modifyitems(config, items):
    """How ``bash dev.sh test`` spreads the suite over the cores (pytest-xdist, ``--dist loadgroup``).

    A module's tests stay on one worker, so its module-scoped fixtures (a simulated hub, a served
    app, a Ray instance) are built once; a test that names its own ``xdist_group`` travels alone.
    Modules with slow tests go first (``--no-loadscope-reorder`` keeps this order), so the run does
    not end with one worker on a long module while the other idles.
    """
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
    slow_modules = {item.module.__name__ for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.module.__name__ not in slow_modules)  # stable: file order within each
