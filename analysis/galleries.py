"""Where a cascade's images come from, which of them may be read, and each gallery's dataset label.

Security: on the page, a "folder on the server" (or a Karpathy dataset) must lie inside
one of the folders the operator shared; only those, the built-in world and the hub
datasets are served. The command line runs as its user and reads any path it is given
(``Galleries(..., any_path=True)``). Uploads are whatever Gradio received for a session.
An imported index (``cascade import-embeddings``) is offered on both faces: its operator put it
in the database.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from analysis import presets
from analysis.imported import ImportRequest, current_versions
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
    IMPORTED = "imported"  # an encoder's current import into the database (cascade import-embeddings), by encoder


GALLERY_KINDS = tuple(GalleryKind)


@dataclass(frozen=True)
class GallerySource:
    """Where a cascade's images come from.

    Attributes:
        kind: see ``GalleryKind``.
        path: the folder, the Karpathy JSON file, the hub dataset's name, or the imported index's encoder (the
            name it was imported with, or its id).
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
        if kind in (GalleryKind.FOLDER, GalleryKind.DATASET, GalleryKind.IMPORTED):
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

    ``world:test``, ``world:lifetime``, ``flickr30k:test``, ``coco:test``, ``FILE.json:test``, and
    ``imported:<encoder id>:all`` for an import (every row; ``source.path`` as ``Galleries.resolve`` names it);
    evaluations are stored under it, so the command line's and the page's meet. Raises ConfigError for a
    gallery without captions (a folder, uploads).
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
    if source.kind is GalleryKind.IMPORTED:
        return f"imported:{source.path}:all"
    raise ConfigError("evaluation needs captions: the built-in gallery, a hub dataset or a Karpathy dataset")


# How the page names each hub dataset (``cascade.datasets`` names them for the command line).
_DATASET_TITLES = {"flickr30k": "Flickr30k", "coco": "COCO"}


def gallery_name(source: GallerySource, preset: Preset, n_images: int | None = None) -> str | None:
    """What the page calls a hub gallery, as ``resolved`` sees it: ``Flickr30k test split, 1,000 images``.

    So a hub preset's own gallery is named for the dataset it shows, as its evaluations are labelled
    (``dataset_label``), never "built-in world". ``n_images``: the loaded gallery's size (default: the
    dataset's documented size, until it is loaded). None for any other gallery: the page's own words name it.
    """
    source = resolved(source, preset)
    if source.kind is not GalleryKind.DATASET or source.path not in datasets.DATASETS:
        return None
    hub = datasets.get(source.path)
    count = hub.n_images if n_images is None else n_images
    return f"{_DATASET_TITLES.get(hub.name, hub.name)} {hub.split} split, {count:,} images"


@dataclass(frozen=True)
class ImportedGallery:
    """One encoder's current import (``cascade import-embeddings``), read as a gallery.

    Its corpus holds the imported ids in row order (a picture in two rows: its first), the files that were
    reachable at import (a ``path:`` id has none) and the captions when the index had them; its level 1 is the
    import's own matrix, memory-mapped (``matrix``), so no image is embedded and no row goes through the cache.

    Attributes:
        version: the import's version folder, ``DB.imported/<encoder>/<version>``.
        manifest: its ``manifest.json``.
    """

    version: Path
    manifest: dict = field(compare=False, repr=False)

    @property
    def encoder_id(self) -> str:
        return self.manifest["encoder"]

    @property
    def name(self) -> str:
        """The encoder's name as the import named it (``openclip:ViT-B-32@laion2b_s34b_b79k``)."""
        return self.manifest.get("name", self.encoder_id)

    @property
    def missing(self) -> int:
        """Rows without a reachable file: only level 1 can rank them."""
        return int(self.manifest.get("missing", 0))

    @property
    def captioned(self) -> bool:
        return "caption" in pq.read_schema(self.version / "rows.parquet").names

    def corpus(self) -> Corpus:
        captioned = self.captioned  # read once: a schema read per row took 20 minutes at 10M rows
        columns = ["id", "path", "missing"] + (["caption"] if captioned else [])
        rows = pq.read_table(self.version / "rows.parquet", columns=columns).to_pydict()
        where = ImportRequest("", "", self.manifest.get("images"), self.manifest.get("strip_prefix") or "")
        ids: dict[str, None] = {}
        paths: dict[str, Path] = {}
        captions: dict[str, list[str]] = {}
        for row, image_id in enumerate(rows["id"]):
            first = image_id not in ids
            ids[image_id] = None
            if first and not rows["missing"][row]:
                paths[image_id] = Path(where.locate(rows["path"][row]))
            if captioned and rows["caption"][row]:
                captions.setdefault(image_id, []).append(rows["caption"][row])
        return Corpus(ids=list(ids), paths=paths, captions=captions)

    def matrix(self, corpus: Corpus) -> np.ndarray:
        """Level 1's ``(N, d)`` rows in ``corpus`` order: the mapped file itself unless a picture has two rows."""
        # copy-on-write: mapped and never written, but writable, so torch's float16 ranking takes it without a warning
        matrix = np.load(self.version / "embeddings.npy", mmap_mode="c")
        if len(matrix) == len(corpus):
            return matrix
        ids = pq.read_table(self.version / "rows.parquet", columns=["id"]).column("id").to_pylist()
        first = {image_id: row for row, image_id in reversed(list(enumerate(ids)))}
        return matrix[[first[image_id] for image_id in corpus.ids]]  # a copy in memory: rare


def imports_in(root: Path | None) -> list[ImportedGallery]:
    """The current import of each encoder under ``root`` (``DB.imported``; None: no database), by folder."""
    if root is None:
        return []
    return [ImportedGallery(version, manifest) for version, manifest in current_versions(root)]


def find_import(root: Path | None, encoder: str) -> ImportedGallery:
    """The import of ``encoder`` (its name as imported, or its id) under ``root``; one line when there is none."""
    imports, wanted = imports_in(root), encoder.strip()
    for found in imports:
        if wanted in (found.name, found.encoder_id):
            return found
    names = ", ".join(found.name for found in imports) or "none (cascade import-embeddings SRC --encoder ENC)"
    raise ConfigError(f"the database has no index imported for {wanted!r}; imported: {names}")


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
        imports: the database's imports (``DB.imported``), the imported galleries; None: it has none.
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
        imports: Path | None = None,
    ) -> None:
        self.preset = preset
        self._world = world or (lambda: presets.gallery(preset.name))
        self.world_root = Path(world_root).expanduser().resolve()
        self.folders = tuple(Path(folder).expanduser().resolve() for folder in folders)
        self.any_path = any_path
        self._known = known
        self._imports = imports
        self._loaded = SharedObjects(capacity)
        self._loaders: dict[GalleryKind, Callable[[GallerySource, Progress | None], Corpus]] = {
            GalleryKind.WORLD: lambda source, progress: self._world(),
            GalleryKind.LIFETIME: lambda source, progress: presets.gallery(self.preset.name, "lifetime"),
            GalleryKind.FOLDER: self._folder,
            GalleryKind.UPLOAD: lambda source, progress: _uploaded(source.uploads),
            GalleryKind.KARPATHY: self._karpathy,
            GalleryKind.DATASET: _hub_dataset,
            GalleryKind.IMPORTED: lambda source, progress: self.imported(source).corpus(),
        }

    def allowed_paths(self) -> list[str]:
        """The only folders the app may serve files from: the built-in world, the hub datasets' images and the
        shared folders."""
        hub = [str(datasets.folder(name) / "images") for name in datasets.names()]
        return [str(self.world_root), *hub] + [str(folder) for folder in self.folders]

    def loaded(self, source: GallerySource) -> Corpus | None:
        """The corpus of ``source`` if it is loaded already (no loading, no checks)."""
        try:
            corpus = self._loaded.peek(self.resolve(source))
        except ConfigError:  # an import no longer in the database: not loaded
            return None
        return corpus if isinstance(corpus, Corpus) else None

    def corpus(self, source: GallerySource, progress: Progress | None = None) -> Corpus:
        """The gallery of ``source``, loaded once and shared (raises CascadeError with one line)."""
        source = self.resolve(source)
        if source.kind is GalleryKind.WORLD and progress is not None:
            progress(Step("loading the gallery"), 0, 0)  # no count yet: the built-in world renders first
        return self._loaded.get(source, lambda: self._loaders[source.kind](source, progress))

    def resolve(self, source: GallerySource) -> GallerySource:
        """``resolved(source)``, an import named by its encoder's id: one gallery, one label, however it was named."""
        source = resolved(source, self.preset)
        if source.kind is GalleryKind.IMPORTED:
            return GallerySource(GalleryKind.IMPORTED, path=self.imported(source).encoder_id)
        return source

    def name(self, source: GallerySource) -> str | None:
        """``gallery_name`` of ``source``, counting its images when it is loaded (None: not a hub gallery)."""
        if gallery_name(source, self.preset) is None:
            return None
        corpus = self.loaded(source)
        return gallery_name(source, self.preset, None if corpus is None else len(corpus))

    def imports(self) -> list[ImportedGallery]:
        """The current import of each encoder in the database, in the order of their folders."""
        return imports_in(self._imports)

    def imported(self, source: GallerySource) -> ImportedGallery:
        """The import ``source`` names (see ``find_import``)."""
        return find_import(self._imports, source.path)

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
    gone = [path for path in paths if not Path(path).is_file()]
    if gone:  # the server removes uploads after a while (the page's delete_cache)
        raise CorpusError(f"{len(gone)} of the {len(paths)} uploaded file(s) are no longer on the server: upload again")
    corpus = Corpus.from_paths([Path(p) for p in paths])
    if not corpus.ids:
        raise CorpusError(f"none of the {len(paths)} uploaded file(s) is a readable image")
    return corpus
