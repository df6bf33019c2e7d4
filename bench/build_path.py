"""Build-path throughput: embedding a folder against the model's bare forward pass.

``CascadeSearcher.build`` reads each file, decodes it, runs the model's own
preprocessing and the forward pass, batch by batch, preparing the next batch in
a thread while the current one runs forward. The bare reference runs only
``encode_pixels`` on the same batches, prepared beforehand. Their ratio (images
per second) says how much of the model's speed survives the file path; the
target is 85%.

Two encoders, three kinds of folder:
- ``openclip:ViT-B-32@random`` on 640x480 JPEG photographs (the product's use:
  a photo folder, a real-sized model; decoding is a few percent of a forward);
- ``shapes:small`` on the built-in world's 64 px PNGs alone, whose decoding
  costs several forward passes: the hardest case for the overlap;
- ``shapes:small`` on the same world with its pixel array beside the PNGs (as
  ``world.materialise`` writes it): the corpus hands the encoder a batch of
  pixels in one slice of a memory map, nothing is decoded.

Both sides run interleaved in one process, several times; medians are reported.

    python -m bench.build_path [--quick]
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from bench import section_main
from cascade.cache import MemoryCache
from cascade.corpus import Corpus
from cascade.encoders import create_encoder
from cascade.encoders.base import ImageTower
from cascade.errors import CascadeError
from cascade.search import CascadeSearcher

PHOTO_SIZE_PX = (640, 480)


@dataclass(frozen=True)
class BuildPathRow:
    """Medians over ``repeats`` interleaved runs of both sides.

    Attributes:
        build_images_per_s: ``CascadeSearcher.build`` over the folder (read, decode, preprocess, forward).
        bare_images_per_s: ``encode_pixels`` on the same, pre-decoded batches.
        decode_ms_per_image: read + decode (or pixel array slice) + preprocess of one image, measured alone.
        forward_ms_per_image: the bare forward's time per image.
    """

    encoder: str
    images: str
    n_images: int
    batch_size: int
    repeats: int
    build_images_per_s: float
    bare_images_per_s: float
    decode_ms_per_image: float
    forward_ms_per_image: float

    @property
    def ratio(self) -> float:
        return self.build_images_per_s / self.bare_images_per_s

    @property
    def overlap_bound(self) -> float:
        """The best ratio one decode thread beside the forward pass allows: the slower of the two sets the pace."""
        return self.forward_ms_per_image / max(self.forward_ms_per_image, self.decode_ms_per_image)


def write_photos(folder: Path, n_images: int, seed: int = 0) -> Path:
    """``n_images`` photo-like 640x480 JPEGs: smooth colour fields plus grain (sizes like a camera's)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    width, height = PHOTO_SIZE_PX
    for i in range(n_images):
        coarse = Image.fromarray(rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)).resize(
            (width, height), Image.BICUBIC
        )
        grain = rng.normal(0, 12, size=(height, width, 3))
        pixels = np.clip(np.asarray(coarse, dtype=np.float64) + grain, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"photo_{i:05d}.jpg", quality=90)
    return folder


def _world_folders(root: Path, n_images: int) -> tuple[Path, Path]:
    """The world's images with their pixel array, and a copy of the PNGs alone (the same files, the same ids)."""
    from cascade import world

    _, image_root = world.materialise_small(root, n_images=n_images, seed=1)
    with_array, png_only = image_root / "images", root / "world-png-only"
    png_only.mkdir()
    for png in with_array.glob("*.png"):
        shutil.copyfile(png, png_only / png.name)
    return with_array, png_only


def measure(encoder: ImageTower, folder: Path, label: str, batch_size: int = 32, repeats: int = 3) -> BuildPathRow:
    """Interleave ``repeats`` full builds of ``folder`` with ``repeats`` bare passes over its pre-decoded batches."""
    corpus = Corpus.from_folder(folder)
    ids = corpus.ids
    started = time.perf_counter()
    starts = range(0, len(ids), batch_size)
    batches = [corpus.preprocessed(encoder, ids[start : start + batch_size]) for start in starts]
    decode_ms = (time.perf_counter() - started) * 1000 / len(ids)
    encoder.encode_pixels(batches[0])  # warm-up: first forward allocates
    build_rates, bare_rates = [], []
    for _ in range(repeats):
        searcher = CascadeSearcher([encoder], corpus, cache=MemoryCache(), batch_size=batch_size)
        started = time.perf_counter()
        report = searcher.build()
        build_rates.append(report.embedded / (time.perf_counter() - started))
        started = time.perf_counter()
        for batch in batches:
            encoder.encode_pixels(batch)
        bare_rates.append(len(ids) / (time.perf_counter() - started))
    bare = statistics.median(bare_rates)
    return BuildPathRow(
        encoder=encoder.id.split("@")[0],
        images=label,
        n_images=len(ids),
        batch_size=batch_size,
        repeats=repeats,
        build_images_per_s=statistics.median(build_rates),
        bare_images_per_s=bare,
        decode_ms_per_image=decode_ms,
        forward_ms_per_image=1000 / bare,
    )


@dataclass(frozen=True)
class BuildPathReport:
    rows: tuple[BuildPathRow, ...]
    skipped: tuple[str, ...] = ()  # rows that could not run, and why


def run(quick: bool = False) -> BuildPathReport:
    """Both rows (quick: a tiny OpenCLIP model and fewer images)."""
    rows, skipped = [], []
    with tempfile.TemporaryDirectory(prefix="bench-build-") as tmp:
        root = Path(tmp)
        photo_model = "openclip:tiny-vit-l@random" if quick else "openclip:ViT-B-32@random"
        photos = write_photos(root / "photos", 32 if quick else 48)
        encoder = create_encoder(photo_model)
        rows.append(measure(encoder, photos, "640x480 JPEG", batch_size=8 if quick else 16, repeats=2 if quick else 3))
        try:
            small = create_encoder("shapes:small")
        except CascadeError as err:  # the shapes weights are not there: say so in the page
            skipped.append(f"shapes:small: {err}")
        else:
            with_array, png_only = _world_folders(root, 256 if quick else 2048)
            rows.append(measure(small, png_only, "64 px PNG (world), decoded", repeats=2 if quick else 5))
            rows.append(measure(small, with_array, "64 px world, pixel array", repeats=2 if quick else 5))
    return BuildPathReport(tuple(rows), tuple(skipped))


def markdown(report: BuildPathReport) -> str:
    lines = [
        "| encoder | images | N | batch | build (img/s) | bare forward (img/s) | build / bare | decode+preprocess "
        "(ms/img) | forward (ms/img) | best with one prepare thread |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report.rows:
        lines.append(f"| {r.encoder} | {r.images} | {r.n_images} | {r.batch_size} | {r.build_images_per_s:.1f} | "
                     f"{r.bare_images_per_s:.1f} | {100 * r.ratio:.0f}% | {r.decode_ms_per_image:.2f} | "
                     f"{r.forward_ms_per_image:.2f} | {100 * r.overlap_bound:.0f}% |")  # fmt: skip
    lines += ["", "Preparing a batch (decoding, or slicing the pixel array, then preprocessing) runs in one thread "
              "beside the forward pass, so a model whose forward pass is cheaper than preparing its images cannot "
              "reach the target (last column); more threads would compete with the forward pass for the same "
              "cores."]  # fmt: skip
    lines += [f"\nSkipped: {reason}" for reason in report.skipped]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    return section_main("build_path", __doc__, run, markdown, argv)


if __name__ == "__main__":
    sys.exit(main())
