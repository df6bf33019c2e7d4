"""An app engine for tests (a temporary database, a small world gallery, seeded fake encoders, fixed MAC counts),
and the rankings its cascades should give, computed by hand."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from analysis.engine import Engine
from analysis.presets import Preset
from analysis.store import Store
from cascade import world
from cascade.corpus import Corpus
from cascade.errors import ConfigError
from tests.fakes import FakeBiEncoder, FakeCrossEncoder

ROOT = Path(__file__).resolve().parent.parent
N_IMAGES = 40
SMALL_MACS, LARGE_MACS = 1_000, 50_000
PRESET = Preset(
    name="test",
    description="40 world images, fake encoders",
    levels=("fake:small", "fake:large"),
    ks=(20, 5),
    reranker="fake:cross",
    comparisons=((("fake:small",), (10,)), (("fake:small", "fake:large"), (20, 10))),
)
PAPER_GMACS = {"B/16": 10.0, "L/14": 50.0, "g/14": 180.0}


def fake_encoders() -> dict:
    return {
        "fake:small": FakeBiEncoder("small", seed=1, image_macs=SMALL_MACS),
        "fake:large": FakeBiEncoder("large", seed=2, image_macs=LARGE_MACS),
        "fake:cross": FakeCrossEncoder(),
    }


def make_engine(root: Path, n_images: int = N_IMAGES, folders: tuple[Path, ...] = ()) -> Engine:
    """An engine on ``root``: its own database, a small world gallery, fake encoders, fixed MAC counts."""
    json_path, image_root = world.materialise_small(root / "world", n_images=n_images)
    encoders = fake_encoders()

    def create(name: str):
        if name not in encoders:
            raise ConfigError(f"unknown encoder {name!r}")
        return encoders[name]

    return Engine(
        Store(root / "cascade.duckdb"),
        preset=PRESET,
        world=lambda: Corpus.from_karpathy(json_path, image_root),
        world_root=image_root,
        folders=folders,
        create=create,
        is_cross=lambda name: isinstance(encoders[name], FakeCrossEncoder),
        image_gmacs=lambda encoder, mode: PAPER_GMACS.get(encoder.label, 1.0) * (2 if mode == "full" else 1),
        names=list(encoders),
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def expected_levels(query: str, corpus: Corpus, levels: Sequence[tuple[str, int]]) -> list[tuple[list[str], list]]:
    """Algorithm 1 by hand: per level, the kept ids and scores (best first) of the fake encoders named in ``levels``.

    Level 1 scores every image; each later level re-scores only the previous level's kept ids.
    Images are read with PIL and encoded by fresh fakes (same seeds as the engine's), never by the cascade.
    """
    encoders, candidates, kept = fake_encoders(), list(corpus.ids), []
    for name, k in levels:
        encoder = encoders[name]
        pixels = [encoder.preprocess(Image.open(corpus.paths[i]).convert("RGB")) for i in candidates]
        images = encoder.encode_pixels(torch.stack(pixels))
        scores = images @ encoder.encode_texts([query])[0]
        order = np.argsort(-scores, kind="stable")[:k]
        candidates = [candidates[j] for j in order]
        kept.append((candidates, [float(scores[j]) for j in order]))
    return kept
