"""The one place the engine's preset changes after launch, and the gate that holds work back meanwhile.

A Space serves its page at once while its preset prepares (``analysis.front_door.Preparation``):
until the dataset and the models are in place the engine's ``gate`` is closed, and every call
that would load a gallery or build a cascade raises ``NotReady`` with one line instead of
starting a second download. When the preparation fails, ``switch`` puts the fallback preset in
place. Both are thread-safe: every visitor's handler reads the engine while one thread prepares.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from analysis.cascades import Cascades, Choice
from analysis.galleries import Galleries, GalleryKind, GallerySource
from cascade.errors import CascadeError

if TYPE_CHECKING:
    from analysis.presets import Preset
    from analysis.progress import Progress
    from cascade.corpus import Corpus
    from cascade.search import CascadeSearcher


class NotReady(CascadeError):
    """The preset is still being prepared: galleries and cascades cannot be opened yet."""


class Gate:
    """Open (the default) or closed with the one line saying why; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._why = ""

    def close(self, why: str) -> None:
        with self._lock:
            self._why = why

    def open(self) -> None:
        with self._lock:
            self._why = ""

    def check(self) -> None:
        """Raise ``NotReady`` with the reason while closed."""
        with self._lock:
            why = self._why
        if why:
            raise NotReady(why)


OpenCascades = Callable[["Preset", "Callable[[], Corpus] | None", "Path | None"], "Cascades"]
"""``(preset, world loader, world root) -> Cascades``: the engine's composition root for one preset."""


class PresetSwitch:
    """The engine's preset, its ``Cascades`` and the gate in front of them (``analysis.engine.Engine`` is one).

    Args:
        open_cascades: builds the composition root for a preset (``Cascades.on_store`` on the engine's store).
    """

    def __init__(self, open_cascades: OpenCascades) -> None:
        self._open_cascades = open_cascades
        self._cascades: Cascades | None = None
        self.gate = Gate()

    def _start(self, preset: Preset, world: Callable[[], Corpus] | None, world_root: Path | None) -> None:
        self._cascades = self._open_cascades(preset, world, world_root)

    @property
    def cascades(self) -> Cascades:
        """The composition root of the preset served now; raises ``NotReady`` while the gate is closed."""
        self.gate.check()
        return self._cascades

    @property
    def preset(self) -> Preset:
        return self._cascades.preset

    @property
    def galleries(self) -> Galleries:
        """The preset's galleries (never held back: the page reads what is loaded and what it may serve)."""
        return self._cascades.galleries

    def switch(self, preset: Preset, world_root: Path | None = None) -> None:
        """Serve ``preset`` from now on: a fresh ``Cascades`` on the same store, its built-in gallery at
        ``world_root`` (default: the preset's own). Searches in flight finish on the old one.

        Thread-safe without a lock: the preset, its galleries and its cascades are one object, replaced by
        one assignment, and every reader takes it once per call.
        """
        self._cascades = self._open_cascades(preset, None, world_root)

    def open_default(self, progress: Progress | None = None) -> CascadeSearcher:
        """Build the preset's default cascade even while the gate is closed: the one preparation does this."""
        cascades = self._cascades
        default = Choice(GallerySource(GalleryKind.WORLD), cascades.preset.levels, cascades.preset.ks)
        return cascades.open(default, progress)
