"""Where a session's images come from, and which of them the server may read and serve.

Security: a "folder on the server" (or a Karpathy dataset) must lie inside one of
the folders the operator shared; only those and the built-in world are served.
Uploads are whatever Gradio received for that session.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from analysis.shared import SharedObjects
from cascade import datasets
from cascade.corpus import Corpus
from cascade.errors import ConfigError, CorpusError

Progress = Callable[[str, int, int], None]
"""``(what, done, total)``: what is being done ("embedding", "queries"), and how far; ``total`` 0: not counted."""

GALLERY_KINDS = ("world", "folder", "upload", "karpathy", "dataset")


@dataclass(frozen=True)
class GallerySource:
    """Where a session's images come from.

    Attributes:
        kind: ``world`` (the preset's built-in gallery), ``folder`` (a shared folder on the server),
            ``upload`` (files the user uploaded) or ``karpathy`` (a captioned dataset on the server).
        path: the folder, or the Karpathy JSON file.
        image_root: the Karpathy dataset's image root.
        uploads: uploaded file paths (in Gradio's upload folder).
    """

    kind: str = "world"
    path: str = ""
    image_root: str = ""
    uploads: tuple[str, ...] = ()

    def normalised(self) -> GallerySource:
        """Only the fields ``kind`` uses: two sessions naming one gallery share it (it is a cache key)."""
        if self.kind == "folder":
            return GallerySource("folder", path=self.path.strip())
        if self.kind == "karpathy":
            return GallerySource("karpathy", path=self.path.strip(), image_root=self.image_root.strip())
        if self.kind == "dataset":  # a hub dataset by name (cascade.datasets): flickr30k, coco
            return GallerySource("dataset", path=self.path.strip())
        if self.kind == "upload":
            return GallerySource("upload", uploads=tuple(self.uploads))
        return GallerySource(self.kind)


class Galleries:
    """Resolves a ``GallerySource`` to a loaded, shared ``Corpus``, refusing paths outside the shared folders.

    Args:
        world: loads the preset's built-in gallery.
        world_root: the folder the built-in gallery lives in (served to the browser).
        folders: server folders users may search (and that are served); nothing else is.
        capacity: galleries kept in memory at once.
    """

    def __init__(self, world: Callable[[], Corpus], world_root: Path, folders: Sequence[str | Path],
                 capacity: int) -> None:  # fmt: skip
        self._world = world
        self.world_root = Path(world_root).expanduser().resolve()
        self.folders = tuple(Path(folder).expanduser().resolve() for folder in folders)
        self._loaded = SharedObjects(capacity)

    def allowed_paths(self) -> list[str]:
        """The only folders the app may serve files from: the built-in world, the hub datasets' images and the
        shared folders."""
        hub = [str(datasets.folder(name) / "images") for name in datasets.names()]
        return [str(self.world_root), *hub] + [str(folder) for folder in self.folders]

    def loaded(self, source: GallerySource) -> Corpus | None:
        """The corpus of ``source`` if it is loaded already (no loading, no checks)."""
        corpus = self._loaded.peek(source.normalised())
        return corpus if isinstance(corpus, Corpus) else None

    def corpus(self, source: GallerySource, progress: Progress | None = None) -> Corpus:
        """The gallery of ``source``, loaded once and shared (raises CascadeError with one line)."""
        source = source.normalised()
        if source.kind not in GALLERY_KINDS:
            raise ConfigError(f"gallery must be one of {', '.join(GALLERY_KINDS)}, got {source.kind!r}")
        if source.kind == "folder":
            folder = self._shared(source.path, "folder")
            scan = None if progress is None else (lambda done, total: progress("scanning", done, total))
            return self._loaded.get(source, lambda: Corpus.from_folder(folder, progress=scan))
        if source.kind == "karpathy":
            json_path, root = self._shared(source.path, "dataset file"), self._shared(source.image_root, "image root")
            return self._loaded.get(source, lambda: Corpus.from_karpathy(json_path, root))
        if source.kind == "upload":
            return self._loaded.get(source, lambda: _uploaded(source.uploads))
        if source.kind == "dataset":
            scan = None if progress is None else (lambda done, total: progress("materialising shards", done, total))
            return self._loaded.get(source, lambda: datasets.corpus(source.path, progress=scan))
        return self._loaded.get(source, self._world)

    def _shared(self, text: str, what: str) -> Path:
        """``text`` as a path inside a shared folder, or a one-line error saying why not."""
        if not text.strip():
            raise ConfigError(f"enter the {what} on the server")
        path = Path(text.strip()).expanduser().resolve()
        if not any(path.is_relative_to(folder) for folder in self.folders):
            shared = ", ".join(str(f) for f in self.folders) or "none (start the app with --folder PATH)"
            raise ConfigError(f"{path} is outside the folders this server shares: {shared}")
        if not path.exists():
            raise CorpusError(f"{what} not found: {path}")
        return path


def _uploaded(paths: Sequence[str]) -> Corpus:
    if not paths:
        raise CorpusError("upload some images first")
    corpus = Corpus.from_paths([Path(p) for p in paths])
    if not corpus.ids:
        raise CorpusError(f"none of the {len(paths)} uploaded file(s) is a readable image")
    return corpus
