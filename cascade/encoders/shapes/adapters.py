"""The shapes networks as cascade levels: ``ShapesBiEncoder`` and ``ShapesCrossEncoder`` (the encoder contract)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from cascade.encoders import not_found
from cascade.encoders.base import BiEncoder, CrossEncoder, ImageTower, l2_normalise
from cascade.encoders.shapes.networks import (
    CROSS_TOWER,
    IMAGE_TOWERS,
    MODELS,
    ConvTower,
    CrossModel,
    TextTower,
    Tokeniser,
    build,
    to_pixels,
)
from cascade.encoders.shapes.weights import REGENERATE_HINT, joint_digest, load_text_tower, read_file
from cascade.errors import WeightsUnavailable

if TYPE_CHECKING:
    from cascade.cost import MacsMode

WORLD_IMAGE_PX = 64  # images are brought to the world's size first, then to each tower's own


def load(spec: str, weights_dir: Path) -> ImageTower:
    """Build ``spec`` from the ``shapes_*.safetensors`` files in ``weights_dir``.

    Raises:
        EncoderNotFound: ``spec`` names no model of the family.
        WeightsUnavailable: a file is missing, corrupt, from another architecture,
            or (with ``@HASH``) not the weights asked for.
    """
    model, _, wanted = spec.strip().partition("@")
    if model not in MODELS:
        raise not_found(f"shapes:{spec}", "shapes")
    weights_dir = Path(weights_dir)
    encoder = _load_cross(weights_dir) if model == "cross" else _load_bi(model, weights_dir)
    if wanted and not encoder.id.endswith(f"@{wanted}"):
        raise WeightsUnavailable(f"shapes:{model} weights are {encoder.id}, not @{wanted}; {REGENERATE_HINT}")
    return encoder


def world_batch(pixels: np.ndarray, image_size: int) -> torch.Tensor:
    """``(n, h, w, 3)`` uint8 -> ``(n, 3, S, S)``, equal bit for bit to preprocessing each row as a PIL image.

    World-size rows (the built-in world's pixel array) go through ``to_pixels`` in one
    batch: the same arithmetic per element as one image at a time, without its per-image overhead.
    """
    if pixels.shape[1:] != (WORLD_IMAGE_PX, WORLD_IMAGE_PX, 3):
        return torch.stack([to_pixels(_world_array(Image.fromarray(p))[None], image_size)[0] for p in pixels])
    if not pixels.flags.writeable:  # torch warns on read-only arrays (a memory map)
        pixels = pixels.copy()
    return to_pixels(pixels, image_size)


def _world_array(image: Image.Image) -> np.ndarray:
    """Any PIL image -> ``(64, 64, 3)`` uint8, squashed to the world's square frame."""
    image = image if image.mode == "RGB" else image.convert("RGB")
    if image.size != (WORLD_IMAGE_PX, WORLD_IMAGE_PX):
        image = image.resize((WORLD_IMAGE_PX, WORLD_IMAGE_PX), Image.BOX)
    # The raw RGB bytes are the array, and a few times cheaper than np.array(image); a
    # bytearray keeps the copy writable (torch warns on read-only arrays).
    return np.frombuffer(bytearray(image.tobytes()), dtype=np.uint8).reshape(WORLD_IMAGE_PX, WORLD_IMAGE_PX, 3)


# ---------------------------------------------------------------- the contract


class _WorldPixels:
    """Preprocessing shared by the family's levels: world pixels brought to the tower's ``image_size``."""

    image_size: int

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return to_pixels(_world_array(image)[None], self.image_size)[0]

    def preprocess_pixels(self, pixels: np.ndarray) -> torch.Tensor:
        """``(n, h, w, 3)`` uint8 -> ``(n, 3, S, S)``, as ``preprocess`` row by row (see ``world_batch``)."""
        return world_batch(pixels, self.image_size)


class ShapesBiEncoder(_WorldPixels, BiEncoder):
    """``shapes:small|medium|large``: a ConvTower and the shared TextTower."""

    def __init__(
        self, model: str, image: ConvTower, text: TextTower, tokeniser: Tokeniser, digest: str, text_digest: str
    ) -> None:
        config = IMAGE_TOWERS[model]
        self.name, self.id = model, f"shapes:{model}@{digest}"
        self.image_size, self.dim = config.image_size, config.dim
        self.text_tower_id = f"shapes:text@{text_digest}"
        self._image, self._text, self._tokeniser = image.eval(), text.eval(), tokeniser
        self.image_macs = _macs(image, torch.zeros(1, 3, config.image_size, config.image_size))
        self.text_macs = _macs(text, tokeniser(["a"]))

    @torch.inference_mode()
    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        return l2_normalise(self._image(pixels))

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return l2_normalise(self._text(self._tokeniser(list(texts))))


class ShapesCrossEncoder(_WorldPixels, CrossEncoder):
    """``shapes:cross``: image features ``(d + C*s*s,)``; a query is scored jointly with each image.

    It shares the family's text tower: ``text_tower_id`` and ``text_macs`` are
    the bi-encoders', so after a bi-encoder level the query side costs nothing
    more; ``pair_macs`` is the per-pair part only.
    """

    def __init__(self, model: CrossModel, text: TextTower, tokeniser: Tokeniser, digest: str, text_digest: str) -> None:
        tower = IMAGE_TOWERS[CROSS_TOWER]
        self.name, self.id = "cross", f"shapes:cross@{digest}"
        self.text_tower_id = self.query_tower_id = f"shapes:text@{text_digest}"
        self.image_size = tower.image_size
        self._model, self._text, self._tokeniser = model.eval(), text.eval(), tokeniser
        pixels = torch.zeros(1, 3, tower.image_size, tower.image_size)
        self.image_macs = _macs(_ImageSide(model), pixels)
        self.text_macs = _macs(text, tokeniser(["a"]))
        self.pair_macs = _macs(model, model.image_features(pixels).detach(), torch.zeros(1, tower.dim))

    @torch.inference_mode()
    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        return self._model.image_features(pixels).float().numpy()

    @torch.inference_mode()
    def score(
        self, text: str, image_features: np.ndarray, query_embedding: np.ndarray | None = None, batch_size: int = 256
    ) -> np.ndarray:
        features = torch.as_tensor(np.asarray(image_features, dtype=np.float32))
        if query_embedding is not None:  # the shared text tower's embedding: the same F.normalize(text(tokens))
            embedding = torch.as_tensor(np.asarray(query_embedding, dtype=np.float32))[None]
        else:
            embedding = F.normalize(self._text(self._tokeniser([text])), dim=-1)
        return self._score_pairs(features, embedding.expand(len(features), -1), batch_size)

    @torch.inference_mode()
    def score_pairs(
        self, image_features: np.ndarray, query_embeddings: np.ndarray, batch_size: int = 4096
    ) -> np.ndarray:
        """Pair ``i``'s logit: row ``i`` of ``image_features`` with row ``i`` of the (unit) ``query_embeddings``.

        Many queries' candidates in one call, for an offline evaluation; ``score`` is one query's row.
        """
        features = torch.as_tensor(np.asarray(image_features, dtype=np.float32))
        embeddings = torch.as_tensor(np.asarray(query_embeddings, dtype=np.float32))
        if len(features) != len(embeddings):
            raise ValueError(f"{len(features)} image rows for {len(embeddings)} query embeddings")
        return self._score_pairs(features, embeddings, batch_size)

    def _score_pairs(self, features: torch.Tensor, embeddings: torch.Tensor, batch_size: int) -> np.ndarray:
        scores = [self._model(f, e) for f, e in zip(features.split(batch_size), embeddings.split(batch_size))]
        return torch.cat(scores).numpy().astype(np.float32) if scores else np.zeros(0, np.float32)


class _ImageSide(nn.Module):
    def __init__(self, model: CrossModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.image_features(pixels)


def image_macs(model: str, mode: MacsMode) -> int:
    """MACs of ``model``'s image side (one of MODELS) on one image at its size, on a freshly built network."""
    from cascade.cost import count_macs

    network = build(model, vocab=())
    side = _ImageSide(network) if model == "cross" else network
    size = IMAGE_TOWERS[CROSS_TOWER if model == "cross" else model].image_size
    return count_macs(side, (torch.zeros(1, 3, size, size),), mode=mode)


def _macs(module: nn.Module, *inputs: torch.Tensor) -> int:
    from cascade.cost import count_macs

    return count_macs(module, tuple(inputs), mode="full")


def _load_bi(model: str, weights_dir: Path) -> ShapesBiEncoder:
    image, image_digest = read_file(model, weights_dir)
    text, tokeniser, text_digest = load_text_tower(weights_dir)
    return ShapesBiEncoder(model, image, text, tokeniser, joint_digest(image_digest, text_digest), text_digest)


def _load_cross(weights_dir: Path) -> ShapesCrossEncoder:
    model, digest = read_file("cross", weights_dir)
    text, tokeniser, text_digest = load_text_tower(weights_dir)
    return ShapesCrossEncoder(model, text, tokeniser, joint_digest(digest, text_digest), text_digest)
