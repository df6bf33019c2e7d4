"""Where the project keeps what it generates: the database, the built-in world."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The user cache directory: ``$CASCADE_CACHE_DIR``, else ``$XDG_CACHE_HOME/cascade-search``."""
    override = os.environ.get("CASCADE_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cascade-search"


def default_db_path() -> Path:
    return cache_dir() / "cascade.duckdb"


ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
