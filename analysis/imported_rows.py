"""Imported level-1 rows served as a feature cache: what ``Store.get`` consults for the ids its features table lacks.

Each encoder's current import (``analysis.imported`` writes it) is mapped once and indexed by id on first use.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from analysis.imported import current_name, encoder_folder


class _Version:
    """One published import: its matrix, mapped, and an id -> row index built on first use."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.matrix = np.load(folder / "embeddings.npy", mmap_mode="r")
        self._index: tuple[pd.Index, np.ndarray] | None = None
        self._lock = threading.Lock()

    def index(self) -> tuple[pd.Index, np.ndarray]:
        """(distinct ids, the row of each): a picture in two rows is served from its first."""
        with self._lock:
            if self._index is None:
                ids = pd.Index(pq.read_table(self.folder / "rows.parquet", columns=["id"]).column("id").to_pylist())
                first = ~ids.duplicated()
                self._index = ids[first], np.flatnonzero(first)
            return self._index

    def rows(self, image_ids: Sequence[str]) -> dict[str, np.ndarray]:
        ids, rows_of = self.index()
        positions = ids.get_indexer(list(image_ids))
        wanted = np.flatnonzero(positions >= 0)
        if not wanted.size:
            return {}
        rows = rows_of[positions[wanted]]
        order = np.argsort(rows)  # read the mapped file front to back
        block = np.asarray(self.matrix[rows[order]], dtype=np.float32)
        return {image_ids[wanted[o]]: block[j] for j, o in enumerate(order)}


class ImportedEmbeddings:
    """The imports under ``root`` (``DB.imported``), read as a feature cache: ``get`` only.

    Each call reads the encoder's ``CURRENT`` (one small file), so an import made since is served at once;
    a version is mapped and indexed once. Thread-safe.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._versions: dict[str, _Version] = {}
        self._lock = threading.Lock()

    def get(self, encoder_id: str, image_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Imported ``(d,)`` float32 rows of ``image_ids`` for ``encoder_id``; absent ids are left out."""
        if not image_ids:
            return {}
        folder = encoder_folder(self.root, encoder_id)
        name = current_name(folder)
        if name is None:
            return {}
        with self._lock:
            version = self._versions.get(encoder_id)
            if version is None or version.folder.name != name:
                version = self._versions[encoder_id] = _Version(folder / name)
        return version.rows(image_ids)
