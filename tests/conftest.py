"""Test-wide settings: never touch the network, never share state between tests."""

import os
from pathlib import Path

# Set before anything imports huggingface_hub: offline, a missing hub file then
# fails at once instead of costing minutes of DNS retries.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

import cascade  # noqa: E402, F401  (arms the torchvision shim before a test imports transformers or open_clip)

pytest_plugins = ["tests.ui_fixtures"]  # engine, served, client: the app on a test engine

ROOT = Path(__file__).resolve().parent.parent  # the repository: subprocesses run from here


@pytest.fixture(autouse=True)
def _isolated_cache_dir(tmp_path_factory, monkeypatch):
    """Point the project's cache directory at a temporary folder for every test."""
    monkeypatch.setenv("CASCADE_CACHE_DIR", str(tmp_path_factory.mktemp("cascade-cache")))
