"""Where a cascade's images come from, which of them may be read, and each gallery's dataset label.

Security: on the page, a "folder on the server" (or a Karpathy dataset) must lie inside
one of the folders the operator shared; only those, the built-in world and the hub
datasets are served. The command line runs as its user and reads any path it is given
(``Galleries(..., any_path=True)``). Uploads are whatever Gradio received for a session.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from analysis import presets
from analysis.presets import Preset
from analysis.progress import Progress, Step, Unit, counter
from analysis.shared import SharedObjects
from cascade import datasets
from cascade.corpus import Corpus
from cascade.errors import ConfigError, CorpusError


class GalleryKind(StrEnum):
    """Where the images of a gallery come from."""

    WORLD = "world"  # the preset's own gallery: the built-in world's test gallery, or its hub dataset
    LIFETIME = "lifetime"  # the preset's lifetime gallery (100,000 images for shapes): what replays run on
    FOLDER = "folder"  # a folder of images (on the page: inside a shared folder)
    UPLOAD = "upload"  # files a visitor uploaded
    KARPATHY = "karpathy"  # a captioned dataset in Karpathy's JSON layout, with its image root
    DATASET = "dataset"  # a hub dataset by name (cascade.datasets): flickr30k, coco


GALLERY_KINDS = tuple(GalleryKind)


@dataclass(frozen=True)
class GallerySource:
    """Where a cascade's images come from.

    Attributes:
        kind: see ``GalleryKind``.
        path: the folder, the Karpathy JSON file, or the hub dataset's name.
        image_root: the Karpathy dataset's image root.
        uploads: uploaded file paths (in Gradio's upload folder).
        split: the Karpathy split to read.
    """

    kind: GalleryKind = GalleryKind.WORLD
    path: str = ""
    image_root: str = ""
    uploads: tuple[str, ...] = ()
    split: str = "test"

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "kind", GalleryKind(self.kind))
        except ValueError:
            kinds = ", ".join(GALLERY_KINDS)
            raise ConfigError(f"gallery must be one of {kinds}, got {self.kind!r}") from None

    def normalised(self) -> GallerySource:
        """Only the fields ``kind`` uses: two sessions naming one gallery share it (it is a cache key)."""
        kind = self.kind
        if kind in (GalleryKind.FOLDER, GalleryKind.DATASET):
            return GallerySource(kind, path=self.path.strip())
        if kind is GalleryKind.KARPATHY:
            return GallerySource(kind, path=self.path.strip(), image_root=self.image_root.strip(), split=self.split)
        if kind is GalleryKind.UPLOAD:
            return GallerySource(kind, uploads=tuple(self.uploads))
        return GallerySource(kind)


def resolved(source: GallerySource, preset: Preset) -> GallerySource:
    """``source`` with the preset's own gallery named for what it is: a hub preset's gallery is that dataset.

    So ``flickr30k-cpu``'s gallery and "Flickr30k (hub)" are one gallery, one cache entry and one label.
    """
    source = source.normalised()
    if source.kind in (GalleryKind.WORLD, GalleryKind.LIFETIME) and preset.dataset in datasets.DATASETS:
        return GallerySource(GalleryKind.DATASET, path=preset.dataset)
    return source


def dataset_label(source: GallerySource, preset: Preset) -> str:
    """The one label of a captioned gallery, named for the dataset, never for the preset.

    ``world:test``, ``world:lifetime``, ``flickr30k:test``, ``coco:test``, ``FILE.json:test``; evaluations
    are stored under it, so the command line's and the page's meet. Raises ConfigError for a gallery
    without captions (a folder, uploads).
    """
    source = resolved(source, preset)
    if source.kind is GalleryKind.WORLD:
        return f"{preset.dataset}:test"
    if source.kind is GalleryKind.LIFETIME:
        return f"{preset.dataset}:lifetime"
    if source.kind is GalleryKind.KARPATHY:
        return f"{Path(source.path).name}:{source.split}"
    if source.kind is GalleryKind.DATASET:
        return f"{source.path}:test"
    raise ConfigError("evaluation needs captions: the built-in gallery, a hub dataset or a Karpathy dataset")


class Galleries:
    """Resolves a ``GallerySource`` to a loaded, shared ``Corpus``.

    Args:
        preset: whose own gallery ``world`` (and ``lifetime``) is.
        world: loads the preset's built-in gallery (default: materialise it into the cache dir).
        world_root: the folder the built-in gallery lives in (served to the browser).
        folders: server folders the page may search (and serve); nothing else is.
        capacity: galleries kept in memory at once.
        any_path: read any folder or dataset file given (the command line, run by its user), not only
            those inside ``folders``.
        known: remembers folder images' ids by file (the store), so an unchanged folder is not re-hashed.
    """

    def __init__(
        self,
        preset: Preset,
        world: Callable[[], Corpus] | None,
        world_root: Path,
        folders: Sequence[str | Path] = (),
        capacity: int = 8,
        any_path: bool = False,
        known=None,
    ) -> None:
        self.preset = preset
        self._world = world or (lambda: presets.gallery(preset.name))
        self.world_root = Path(world_root).expanduser().resolve()
        self.folders = tuple(Path(folder).expanduser().resolve() for folder in folders)
        self.any_path = any_path
        self._known = known
        self._loaded = SharedObjects(capacity)
        self._loaders: dict[GalleryKind, Callable[[GallerySource, Progress | None], Corpus]] = {
            GalleryKind.WORLD: lambda source, progress: self._world(),
            GalleryKind.LIFETIME: lambda source, progress: presets.gallery(self.preset.name, "lifetime"),
            GalleryKind.FOLDER: self._folder,
            GalleryKind.UPLOAD: lambda source, progress: _uploaded(source.uploads),
            GalleryKind.KARPATHY: self._karpathy,
            GalleryKind.DATASET: _hub_dataset,
        }

    def allowed_paths(self) -> list[str]:
        """The only folders the app may serve files from: the built-in world, the hub datasets' images and the
        shared folders."""
        hub = [str(datasets.folder(name) / "images") for name in datasets.names()]
        return [str(self.world_root), *hub] + [str(folder) for folder in self.folders]

    def loaded(self, source: GallerySource) -> Corpus | None:
        """The corpus of ``source`` if it is loaded already (no loading, no checks)."""
        corpus = self._loaded.peek(resolved(source, self.preset))
        return corpus if isinstance(corpus, Corpus) else None

    def corpus(self, source: GallerySource, progress: Progress | None = None) -> Corpus:
        """The gallery of ``source``, loaded once and shared (raises CascadeError with one line)."""
        source = resolved(source, self.preset)
        if source.kind is GalleryKind.WORLD and progress is not None:
            progress(Step("loading the gallery"), 0, 0)  # no count yet: the built-in world renders first
        return self._loaded.get(source, lambda: self._loaders[source.kind](source, progress))

    def _folder(self, source: GallerySource, progress: Progress | None) -> Corpus:
        folder = self._readable(source.path, "image folder")
        scan = counter(progress, Step("scanning", Unit.FILES))
        return Corpus.from_folder(folder, progress=scan, known=self._known)

    def _karpathy(self, source: GallerySource, progress: Progress | None) -> Corpus:
        json_path, root = self._readable(source.path, "dataset file"), self._readable(source.image_root, "image root")
        return Corpus.from_karpathy(json_path, root, split=source.split)

    def _readable(self, text: str, what: str) -> Path:
        """``text`` as a path this face may read (inside a shared folder, on the page), or one line saying why not."""
        if not text.strip():
            raise ConfigError(f"enter the {what}" + ("" if self.any_path else " on the server"))
        path = Path(text.strip()).expanduser().resolve()
        if not self.any_path and not any(path.is_relative_to(folder) for folder in self.folders):
            shared = ", ".join(str(f) for f in self.folders) or "none (start the app with --folder PATH)"
            raise ConfigError(f"{path} is outside the folders this server shares: {shared}")
        if not path.exists():
            raise CorpusError(f"{what} not found: {path}")
        return path


def _hub_dataset(source: GallerySource, progress: Progress | None) -> Corpus:
    return datasets.corpus(source.path, progress=counter(progress, Step(f"materialising {source.path}", Unit.SHARDS)))


def _uploaded(paths: Sequence[str]) -> Corpus:
    if not paths:
        raise CorpusError("upload some images first")
    corpus = Corpus.from_paths([Path(p) for p in paths])
    if not corpus.ids:
        raise CorpusError(f"none of the {len(paths)} uploaded file(s) is a readable image")
    return corpus
