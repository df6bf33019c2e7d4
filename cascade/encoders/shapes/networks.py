"""The networks of the shapes family, as data and modules: configs, tokeniser, text tower, convnets, cross model.

No file I/O and no encoder contract here: ``weights`` reads and writes these
modules, ``adapters`` wraps them as cascade levels. ``to_pixels`` is the one
input transform, shared by training and inference.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ConvConfig:
    """A convnet image tower: a stride-2 stem, then one stride-2 stage per extra width.

    ``depths[i]`` residual 3x3 blocks follow the downsampling into stage i; the
    final ``(widths[-1], s, s)`` map is flattened (keeps *where* things are) and
    projected to ``dim``.
    """

    image_size: int
    widths: tuple[int, ...]
    depths: tuple[int, ...]
    dim: int = 128

    @property
    def map_size(self) -> int:
        return self.image_size // 2 ** len(self.widths)


@dataclass(frozen=True)
class TransformerConfig:
    """A pre-norm transformer over ``max_tokens`` word tokens: the shared text tower."""

    width: int = 128
    layers: int = 2
    heads: int = 4
    mlp: int = 256
    max_tokens: int = 24
    dim: int = 128


@dataclass(frozen=True)
class FilmConfig:
    """The cross-encoder's per-pair layers: a 3x3 conv of ``width`` channels, an MLP of ``hidden`` units."""

    width: int = 128
    hidden: int = 128


IMAGE_TOWERS: dict[str, ConvConfig] = {
    "small": ConvConfig(image_size=32, widths=(16, 32, 64), depths=(0, 0, 1)),
    "medium": ConvConfig(image_size=48, widths=(16, 32, 64), depths=(0, 1, 1)),
    "large": ConvConfig(image_size=64, widths=(24, 48, 96, 192), depths=(0, 1, 1, 1)),
}
TEXT_TOWER = TransformerConfig()
CROSS = FilmConfig()
CROSS_TOWER = "large"  # the cross-encoder's image side: a fine-tuned copy of this tower, plus its feature map
MODELS: tuple[str, ...] = (*IMAGE_TOWERS, "cross")

# Words users type that the world spells differently.
_ALIASES = {
    "grey": "gray",
    "big": "large",
    "little": "small",
    "tiny": "small",
    "one": "a",
    "hollow": "outlined",
    "stripy": "striped",
    "stripes": "striped",
    "spotted": "dotted",
    "dots": "dotted",
    "filled": "solid",
    "plus": "cross",
    "under": "below",
    "beneath": "below",
    "over": "above",
    "colour": "",
    "color": "",
}


# ---------------------------------------------------------------- text


class Tokeniser:
    """Lower-cased words -> ids, ``[CLS] w1 w2 ... [PAD]...``, exactly ``max_tokens`` long.

    Unknown words become UNK, text longer than ``max_tokens - 1`` words is cut,
    empty text is a lone CLS: any string is a valid query.
    """

    PAD, UNK, CLS = 0, 1, 2
    SPECIALS = ("[PAD]", "[UNK]", "[CLS]")

    def __init__(self, words: Sequence[str], max_tokens: int) -> None:
        self.words = list(words)
        self.max_tokens = max_tokens
        self._ids = {word: i + len(self.SPECIALS) for i, word in enumerate(self.words)}

    @property
    def size(self) -> int:
        return len(self.SPECIALS) + len(self.words)

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        """``m`` texts -> ``(m, max_tokens)`` int64."""
        tokens = torch.full((len(texts), self.max_tokens), self.PAD, dtype=torch.long)
        for row, text in enumerate(texts):
            words = [_ALIASES.get(w, w) for w in re.findall(r"[a-z]+", str(text).lower())]
            ids = [self.CLS] + [self._ids.get(w, self.UNK) for w in words if w][: self.max_tokens - 1]
            tokens[row, : len(ids)] = torch.tensor(ids)
        return tokens


class Block(nn.Module):
    """Pre-norm transformer block; padding keys are masked out."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.heads = config.heads
        self.norm1, self.norm2 = nn.LayerNorm(config.width), nn.LayerNorm(config.width)
        self.qkv = nn.Linear(config.width, 3 * config.width)
        self.out = nn.Linear(config.width, config.width)
        self.mlp = nn.Sequential(nn.Linear(config.width, config.mlp), nn.GELU(), nn.Linear(config.mlp, config.width))

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """``x (n, T, w)``, ``keep (n, T)`` bool -> ``(n, T, w)``."""
        n, t, w = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(n, t, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :])
        x = x + self.out(attended.transpose(1, 2).reshape(n, t, w))
        return x + self.mlp(self.norm2(x))


class TextTower(nn.Module):
    """Token ids ``(m, L)`` -> unnormalised embeddings ``(m, dim)`` (the CLS token's state)."""

    def __init__(self, config: TransformerConfig, vocab_size: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, config.width)
        self.position = nn.Parameter(torch.randn(config.max_tokens, config.width) * 0.02)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.width)
        self.head = nn.Linear(config.width, config.dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.position[: tokens.shape[1]]
        keep = tokens != Tokeniser.PAD
        for block in self.blocks:
            x = block(x, keep)
        return self.head(self.norm(x[:, 0]))


# ---------------------------------------------------------------- images


def _conv(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class Residual(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv = _conv(width, width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


class ConvTower(nn.Module):
    """Pixels ``(n, 3, S, S)`` (normalised, S = config.image_size) -> embeddings ``(n, dim)``."""

    def __init__(self, config: ConvConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for width, depth in zip(config.widths, config.depths):
            layers.append(_conv(c_in, width, 2))
            layers.extend(Residual(width) for _ in range(depth))
            c_in = width
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Linear(c_in * config.map_size**2, config.dim)
        self.to(memory_format=torch.channels_last)  # about 1.3x faster convolutions on CPU

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(pixels.contiguous(memory_format=torch.channels_last)).flatten(1))


def to_pixels(images: np.ndarray | torch.Tensor, image_size: int) -> torch.Tensor:
    """``(n, 64, 64, 3)`` uint8 world images -> ``(n, 3, S, S)`` normalised float (training and inference)."""
    x = torch.as_tensor(images).permute(0, 3, 1, 2).float().div_(255.0)
    if x.shape[-1] != image_size:  # area averaging: what a coarser camera would see
        x = _area_average(x, image_size)
    return x.sub_(0.5).div_(0.25)


def _area_average(x: torch.Tensor, image_size: int) -> torch.Tensor:
    """``F.interpolate(x, (S, S), mode="area")``, bit for bit; written out for halving (64 -> 32 px).

    Interpolate's kernel on this channels-last layout vectorises over 3 channels
    and costs more than ``shapes:small``'s whole forward pass. Halving is the same
    arithmetic on whole planes: each 2x2 block summed in interpolate's order
    (row by row, left to right, from zero) in float32, then scaled by 1/4, which
    is exact. Other sizes (48 px) keep interpolate.
    """
    if x.shape[-1] != 2 * image_size or x.shape[-2] != 2 * image_size:
        return F.interpolate(x, size=(image_size, image_size), mode="area")
    total = x[..., 0::2, 0::2] + x[..., 0::2, 1::2]
    total += x[..., 1::2, 0::2]
    total += x[..., 1::2, 1::2]
    return total.mul_(0.25)


# ---------------------------------------------------------------- cross-encoder


class CrossModel(nn.Module):
    """Scores (query, image) pairs jointly: the query modulates the image's feature map (FiLM).

    - Image side (once per image; what a cache keeps): a flat ``(d + C*s*s,)``
      vector, the tower's unit embedding then its last ``(C, s, s)`` feature map.
      The tower starts as a copy of the large one.
    - Query side (once per query): the shared text tower's unit embedding.
    - Per pair (``forward``): the feature map scaled and shifted channel-wise by
      the query, a 3x3 convolution and an MLP over the flattened map (so *where*
      a red star is can meet *which* group the query says is red). Logit =
      ``scale * cos(text, image) + mlp(...)``; the MLP's last layer starts at
      zero, so before training the model ranks exactly like the large bi-encoder.
    """

    def __init__(self, tower: ConvConfig, config: FilmConfig, text_dim: int) -> None:
        super().__init__()
        self.tower = ConvTower(tower)
        self.channels, self.map_size = tower.widths[-1], tower.map_size
        self.film = nn.Linear(text_dim, 2 * self.channels)
        self.conv = nn.Conv2d(self.channels, config.width, 3, padding=1)
        self.mlp = nn.Sequential(
            nn.Linear(config.width * self.map_size**2, config.hidden), nn.ReLU(), nn.Linear(config.hidden, 1)
        )
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)
        self.log_scale = nn.Parameter(torch.tensor(math.log(20.0)))

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(n, 3, S, S)`` -> ``(n, d + C*s*s)``."""
        return self.features_from_maps(self.tower.trunk(pixels.contiguous(memory_format=torch.channels_last)))

    def features_from_maps(self, maps: torch.Tensor) -> torch.Tensor:
        """The tower's ``(n, C, s, s)`` feature maps -> ``(n, d + C*s*s)`` image features."""
        flat = maps.flatten(1)
        return torch.cat([F.normalize(self.tower.head(flat), dim=-1), flat], dim=1)

    def forward(self, features: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        """``features (n, d + C*s*s)`` and unit text ``embedding (n, d)`` -> ``(n,)`` logits, pair by pair."""
        d = embedding.shape[1]
        maps = features[:, d:].reshape(-1, self.channels, self.map_size, self.map_size)
        scale, shift = self.film(embedding).chunk(2, dim=1)
        x = F.relu(maps * (1 + scale[:, :, None, None]) + shift[:, :, None, None])
        x = F.relu(self.conv(x))
        similarity = (embedding * features[:, :d]).sum(dim=1)
        return self.log_scale.exp() * similarity + self.mlp(x.flatten(1))[:, 0]


def build(model: str, vocab: Sequence[str]) -> nn.Module:
    """A freshly initialised network for ``model`` (``text`` or one of MODELS)."""
    vocab_size = len(Tokeniser.SPECIALS) + len(vocab)
    if model == "text":
        return TextTower(TEXT_TOWER, vocab_size)
    if model == "cross":
        return CrossModel(IMAGE_TOWERS[CROSS_TOWER], CROSS, TEXT_TOWER.dim)
    return ConvTower(IMAGE_TOWERS[model])
