"""The Space's front door: which preset the app serves, how it is prepared behind a served page, where its
Hugging Face cache lives.

On a Hugging Face Space (``SPACE_ID`` set) the app serves ``SPACE_PRESET``, the Flickr30k gallery
through OpenCLIP ViT-B-32 > ViT-B-16 > ViT-L-14. The page is served at once: one ``Preparation``
thread downloads and materialises the dataset, loads the models and embeds the gallery with level 1,
while the engine's gate (``analysis.switch``) holds every visitor's work back, and the page shows its
``report()``. When a step fails, the engine switches to ``FALLBACK`` and the report carries one line
saying why. Outside a Space, or with ``--preset``, the preset asked for is served as before.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from analysis import presets
from analysis.progress import Progress, Step, Unit, counter
from cascade import datasets
from cascade.encoders import create_encoder
from cascade.errors import CascadeError

if TYPE_CHECKING:
    from analysis.engine import Engine

LOG = logging.getLogger("cascade.app")
SPACE_PRESET = "flickr30k-cpu"
FALLBACK = "shapes"
READY_LOG = "is ready: Search is on"  # the log line a preparation ends with (a Space's log; bench/space.py waits on it)

SHARDS = Step("dataset shards downloaded and materialised", Unit.SHARDS)
IMAGES = Step("images materialised", Unit.IMAGES)
MODELS = Step("models loaded", Unit.MODELS)


def start_preset(requested: str | None, on_space: bool) -> str:
    """The preset the engine is built for: ``requested`` if given, else ``SPACE_PRESET`` on a Space (to be
    prepared after launch), else ``FALLBACK``. An unknown name raises ConfigError listing the known ones."""
    if requested:
        presets.get(requested)
        return requested
    return SPACE_PRESET if on_space else FALLBACK


def prepare(name: str, progress: Progress | None = None) -> None:
    """Materialise the preset's gallery and load its cascade (downloads happen here), or raise CascadeError.

    Args:
        progress: ``(step, done, total)``: the shards (downloaded and materialised), the images, the models.
    """
    preset = presets.get(name)
    report = progress or (lambda step, done, total: None)
    if preset.dataset != "world":
        report(SHARDS, 0, 0)  # the shard count is read from the hub first
        json_path, _ = datasets.materialise(preset.dataset, counter(progress, SHARDS))
        n_images = len(json.loads(json_path.read_text())["images"])
        report(IMAGES, n_images, n_images)
    for number, level in enumerate(preset.levels):
        report(MODELS, number, len(preset.levels))
        create_encoder(level)
    report(MODELS, len(preset.levels), len(preset.levels))


class Phase(StrEnum):
    PREPARING = "preparing"
    READY = "ready"  # the preset asked for is served
    SWITCHED = "switched"  # it failed: the fallback is served


@dataclass(frozen=True)
class Report:
    """What the page shows of a preparation, at one moment.

    Attributes:
        preset: the preset served now (the one being prepared, until a switch).
        steps: one line per step so far, in order (``embedding: 12 of 1,000 images``).
        notice: the one line saying why the app switched to the fallback ("" otherwise).
    """

    phase: Phase
    preset: str
    steps: tuple[str, ...] = ()
    notice: str = ""

    @property
    def done(self) -> bool:
        return self.phase is not Phase.PREPARING


Ready = Callable[[str, Progress], None]
"""``(preset name, progress)``: makes a preset usable or raises (``prepare``)."""


class Preparation:
    """The one preparation of ``name`` for ``engine``, run in one thread and read by every visitor (thread-safe).

    Args:
        engine: built for ``name``; its gate is closed from now until the preparation ends.
        ready: makes the preset usable, reporting progress (default ``prepare``). This is the injection
            point a test uses to make a step slow or fail; the level-1 build follows it.
        then: the rest of the warm-up, run in the same thread once the preset (or the fallback) is loaded and before
            the gate opens, so its work never competes with the first visitors' searches. It must not go through
            the gate (``engine.open_default`` does not).
    """

    def __init__(
        self,
        engine: Engine,
        name: str = SPACE_PRESET,
        ready: Ready = prepare,
        fallback: str = FALLBACK,
        then: Callable[[], None] | None = None,
    ) -> None:
        self._engine, self._name, self._ready, self._fallback, self._then = engine, name, ready, fallback, then
        self._lock = threading.Lock()
        self._steps: dict[str, str] = {}
        self._phase, self._notice = Phase.PREPARING, ""
        self._thread: threading.Thread | None = None
        engine.gate.close(f"{name} is still being prepared: Search turns on by itself when it is ready")

    def start(self) -> None:
        """Start the preparation thread; a second call does nothing."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="prepare", daemon=True)
                self._thread.start()

    def join(self, timeout_s: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout_s)

    def report(self) -> Report:
        with self._lock:
            return Report(self._phase, self._engine.preset.name, tuple(self._steps.values()), self._notice)

    def _progress(self, step: Step, done: int, total: int) -> None:
        line = f"{step.what}: {done:,} of {total:,} {step.unit}" if total > 0 else step.what
        with self._lock:
            self._steps[step.what] = line

    def _run(self) -> None:
        try:
            self._ready(self._name, self._progress)
            self._engine.open_default(self._progress)
            phase, notice = Phase.READY, ""
        except Exception as err:  # noqa: BLE001  (whatever failed, the visitor gets the fallback and one line)
            phase, notice = Phase.SWITCHED, self._fall_back(err)
        try:
            if self._then is not None:
                # Before the gate opens: beside the first searches, the warm-up's seconds of Python (the cost model's
                # MAC counts) held the GIL and a core, and the first query took 5 s more than its forward passes
                # (README, "The Space's start, rehearsed").
                self._then()
        finally:
            self._engine.gate.open()
            with self._lock:
                self._phase, self._notice = phase, notice
            LOG.info("%s %s", self._engine.preset.name, READY_LOG)

    def _fall_back(self, err: Exception) -> str:
        """Switch the engine to the fallback; returns the one line saying why."""
        if isinstance(err, CascadeError):
            why = str(err)
        else:
            LOG.exception("preparing %s failed", self._name)
            why = f"unexpected {type(err).__name__}: {err}"
        notice = f"Switched to the offline {self._fallback} preset: {self._name} is unavailable ({why})"
        LOG.warning("%s", notice)
        self._engine.switch(presets.get(self._fallback))
        return notice


def default_hf_home(environ: Mapping[str, str]) -> Path:
    """Where huggingface_hub keeps its cache when ``HF_HOME`` is unset (its own rule, read without importing it):
    ``$XDG_CACHE_HOME/huggingface``, else ``~/.cache/huggingface``. A Space's ``preload_from_hub`` fills it at build
    time."""
    return Path(environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))) / "huggingface"


def use_persistent_hub(environ: MutableMapping[str, str], storage: Path) -> None:
    """On a Space with persistent ``storage``: download into it, and read what the build preloaded where it lies.

    huggingface_hub finds a file by its folder inside one cache (``HF_HUB_CACHE``, by default ``HF_HOME/hub``):
    ``models--ORG--NAME/snapshots/REV/FILE``. No single cache serves both needs. The default one holds what
    ``preload_from_hub`` put there at build time (the preset's three models, rebuilt with the image); the
    storage survives restarts, so what is downloaded at run time (the dataset's shards, which cannot be
    preloaded, and any model that was not) must land there. Choosing one cache for the whole process ("the
    default one when it holds the preset's models") would put the shards in the image's cache, downloaded
    again at every restart. So ``HF_HOME`` is ``STORAGE/.huggingface``, and each repository folder of the
    default cache that the storage's cache lacks is linked into it: preloaded weights are read in place (no
    copy, no download) and only what is missing is downloaded, into the storage.

    A repository the storage already holds wins (an earlier start downloaded it). A link left dangling by an
    image that no longer preloads its repository is removed, so that repository downloads into the storage.
    Nothing changes off a Space or without storage; an explicit ``HF_HOME`` wins (nothing linked), and with an
    explicit ``HF_HUB_CACHE`` nothing is linked. huggingface_hub reads these variables once, at its import:
    call this before anything imports it.
    """
    if not environ.get("SPACE_ID") or not storage.is_dir() or "HF_HOME" in environ:
        return
    preloaded = default_hf_home(environ) / "hub"
    environ["HF_HOME"] = str(storage / ".huggingface")
    if "HF_HUB_CACHE" in environ or "HUGGINGFACE_HUB_CACHE" in environ:
        return
    try:
        _link_repositories(preloaded, storage / ".huggingface" / "hub")
    except OSError as err:  # a read-only or full storage: the preloaded weights are downloaded again, no worse
        LOG.warning("could not link the preloaded Hugging Face cache %s into %s: %s", preloaded, storage, err)


def _link_repositories(preloaded: Path, hub: Path) -> None:
    """Link each ``models--``/``datasets--`` folder of ``preloaded`` that ``hub`` lacks into ``hub``."""
    hub.mkdir(parents=True, exist_ok=True)
    for link in hub.iterdir():
        if link.is_symlink() and not link.exists():
            link.unlink()
    if not preloaded.is_dir() or preloaded.resolve() == hub.resolve():
        return
    for repo in sorted(preloaded.iterdir()):
        target = hub / repo.name
        if repo.name.startswith(("models--", "datasets--")) and repo.is_dir() and not target.exists():
            target.symlink_to(repo.resolve(), target_is_directory=True)
            LOG.info("preloaded %s: read from %s", repo.name, repo)
