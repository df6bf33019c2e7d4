"""Where the project keeps what it generates: the database, the built-in world."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_HASH_CHUNK_BYTES = 1 << 22


def cache_dir() -> Path:
    """The user cache directory: ``$CASCADE_CACHE_DIR``, else ``$XDG_CACHE_HOME/cascade-search``."""
    override = os.environ.get("CASCADE_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cascade-search"


def default_db_path() -> Path:
    return cache_dir() / "cascade.duckdb"


ASSETS_DIR = Path(__file__).resolve().parent / "assets"  # shipped in the wheel as package data


def file_digest(path: str | os.PathLike, hex_digits: int = 20) -> str:
    """The first ``hex_digits`` of a file's BLAKE2b digest, read in chunks (ids follow content, not paths)."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_HASH_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()[:hex_digits]
