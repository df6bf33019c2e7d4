"""The built-in encoder family of the shapes world: ``shapes:small|medium|large|cross``.

Three image towers of increasing cost (a convnet each, on 32, 48 and 64 px
inputs) share ONE text tower, as Algorithm 1 of the bi-encoder cascades paper
assumes; ``shapes:cross`` is a small cross-encoder for CrispSearch-style
re-ranking. All weights ship in ``assets/shapes_*.safetensors`` and are
regenerated from a seed by ``python -m cascade.train_shapes``.

Architectures are data (``IMAGE_TOWERS``, ``TEXT_TOWER``, ``CROSS``); every
weights file records the configuration and the vocabulary it was trained
with, and a file that does not match the code is refused, not half loaded.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from cascade.encoders import not_found
from cascade.encoders.base import BiEncoder, CrossEncoder, ImageTower, l2_normalise
from cascade.errors import WeightsUnavailable
from cascade.paths import ASSETS_DIR

WORLD_IMAGE_PX = 64  # images are brought to the world's size first, then to each tower's own
REGENERATE_HINT = "regenerate them with `python -m cascade.train_shapes`"
_FORMAT_VERSION = "1"


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
_ALIASES = {"grey": "gray", "big": "large", "little": "small", "tiny": "small", "one": "a", "hollow": "outlined",
            "stripy": "striped", "stripes": "striped", "spotted": "dotted", "dots": "dotted", "filled": "solid",
            "plus": "cross", "under": "below", "beneath": "below", "over": "above", "colour": "", "color": ""}


def known_names() -> list[str]:
    return [f"shapes:{model}" for model in MODELS]


def is_cross(spec: str) -> bool:
    """Whether ``spec`` (``NAME[@HASH]``) names the family's cross-encoder."""
    return spec.strip().partition("@")[0] == "cross"


def create(spec: str) -> ImageTower:
    """``small``, ``medium``, ``large`` (bi-encoders) or ``cross``; ``NAME@HASH`` also checks the weights."""
    return load(spec, ASSETS_DIR)


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


def weights_path(model: str, weights_dir: Path) -> Path:
    return Path(weights_dir) / f"shapes_{model}.safetensors"


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
        x = F.interpolate(x, size=(image_size, image_size), mode="area")
    return (x - 0.5) / 0.25


def _world_array(image: Image.Image) -> np.ndarray:
    """Any PIL image -> ``(64, 64, 3)`` uint8, squashed to the world's square frame."""
    image = image.convert("RGB")
    if image.size != (WORLD_IMAGE_PX, WORLD_IMAGE_PX):
        image = image.resize((WORLD_IMAGE_PX, WORLD_IMAGE_PX), Image.BOX)
    return np.array(image, dtype=np.uint8)  # a writable copy: torch warns on read-only arrays


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
        self.mlp = nn.Sequential(nn.Linear(config.width * self.map_size**2, config.hidden), nn.ReLU(),
                                 nn.Linear(config.hidden, 1))
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


# ---------------------------------------------------------------- the contract


class ShapesBiEncoder(BiEncoder):
    """``shapes:small|medium|large``: a ConvTower and the shared TextTower."""

    def __init__(self, model: str, image: ConvTower, text: TextTower, tokeniser: Tokeniser, digest: str,
                 text_digest: str) -> None:
        config = IMAGE_TOWERS[model]
        self.name, self.id = model, f"shapes:{model}@{digest}"
        self.image_size, self.dim = config.image_size, config.dim
        self.text_tower_id = f"shapes:text@{text_digest}"
        self._image, self._text, self._tokeniser = image.eval(), text.eval(), tokeniser
        self.image_macs = _macs(image, torch.zeros(1, 3, config.image_size, config.image_size))
        self.text_macs = _macs(text, tokeniser(["a"]))

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return to_pixels(_world_array(image)[None], self.image_size)[0]

    @torch.inference_mode()
    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        return l2_normalise(self._image(pixels))

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return l2_normalise(self._text(self._tokeniser(list(texts))))


class ShapesCrossEncoder(CrossEncoder):
    """``shapes:cross``: image features ``(d + C*s*s,)``; a query is scored jointly with each image.

    It shares the family's text tower: ``text_tower_id`` and ``text_macs`` are
    the bi-encoders', so after a bi-encoder level the query side costs nothing
    more; ``pair_macs`` is the per-pair part only.
    """

    def __init__(self, model: CrossModel, text: TextTower, tokeniser: Tokeniser, digest: str,
                 text_digest: str) -> None:
        tower = IMAGE_TOWERS[CROSS_TOWER]
        self.name, self.id = "cross", f"shapes:cross@{digest}"
        self.text_tower_id = f"shapes:text@{text_digest}"
        self.image_size = tower.image_size
        self._model, self._text, self._tokeniser = model.eval(), text.eval(), tokeniser
        pixels = torch.zeros(1, 3, tower.image_size, tower.image_size)
        self.image_macs = _macs(_ImageSide(model), pixels)
        self.text_macs = _macs(text, tokeniser(["a"]))
        self.pair_macs = _macs(model, model.image_features(pixels).detach(), torch.zeros(1, tower.dim))

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return to_pixels(_world_array(image)[None], self.image_size)[0]

    @torch.inference_mode()
    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        return self._model.image_features(pixels).float().numpy()

    @torch.inference_mode()
    def score(self, text: str, image_features: np.ndarray, batch_size: int = 256) -> np.ndarray:
        features = torch.as_tensor(np.asarray(image_features, dtype=np.float32))
        embedding = F.normalize(self._text(self._tokeniser([text])), dim=-1)
        scores = [self._model(chunk, embedding.expand(len(chunk), -1)) for chunk in features.split(batch_size)]
        return torch.cat(scores).numpy().astype(np.float32) if scores else np.zeros(0, np.float32)


class _ImageSide(nn.Module):
    def __init__(self, model: CrossModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.image_features(pixels)


def _macs(module: nn.Module, *inputs: torch.Tensor) -> int:
    from cascade.cost import count_macs

    return count_macs(module, tuple(inputs), mode="full")


# ---------------------------------------------------------------- weights files


def build(model: str, vocab: Sequence[str]) -> nn.Module:
    """A freshly initialised network for ``model`` (``text`` or one of MODELS)."""
    vocab_size = len(Tokeniser.SPECIALS) + len(vocab)
    if model == "text":
        return TextTower(TEXT_TOWER, vocab_size)
    if model == "cross":
        return CrossModel(IMAGE_TOWERS[CROSS_TOWER], CROSS, TEXT_TOWER.dim)
    return ConvTower(IMAGE_TOWERS[model])


def _architecture(model: str) -> str:
    if model == "text":
        config = TEXT_TOWER
    elif model == "cross":
        config = {"tower": dataclasses.asdict(IMAGE_TOWERS[CROSS_TOWER]), "fusion": dataclasses.asdict(CROSS)}
    else:
        config = IMAGE_TOWERS[model]
    return json.dumps(config if isinstance(config, dict) else dataclasses.asdict(config), sort_keys=True)


def save(module: nn.Module, model: str, vocab: Sequence[str], weights_dir: Path, extra: dict | None = None) -> Path:
    """Write ``module`` as ``shapes_<model>.safetensors`` with its architecture and vocabulary."""
    from safetensors.torch import save_file

    metadata = {"format": _FORMAT_VERSION, "model": model, "architecture": _architecture(model),
                "vocab": json.dumps(list(vocab)), **{k: json.dumps(v) for k, v in (extra or {}).items()}}
    path = weights_path(model, weights_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().contiguous() for name, tensor in module.state_dict().items()}
    save_file(state, str(path), metadata=metadata)
    path.chmod(0o644)  # safetensors creates files readable by the owner only; these are shipped assets
    return path


@functools.lru_cache(maxsize=16)
def _read(model: str, path: Path, digest: str) -> tuple[nn.Module, list[str]]:
    """Load one file (cached per content digest, so two levels share one text tower)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            state = {name: handle.get_tensor(name) for name in handle.keys()}
        if metadata.get("format") != _FORMAT_VERSION or metadata.get("architecture") != _architecture(model):
            raise ValueError("it was trained for another architecture")
        vocab = json.loads(metadata["vocab"])
        module = build(model, vocab)
        module.load_state_dict(state)
    except Exception as err:  # safetensors, json and torch each raise their own types for a bad file
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise WeightsUnavailable(f"shapes weights {path} are unusable ({reason}); {REGENERATE_HINT}") from err
    return module.eval(), vocab


def _digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:10]
    except OSError as err:
        raise WeightsUnavailable(f"shapes weights {path} are missing; {REGENERATE_HINT}") from err


def _load_bi(model: str, weights_dir: Path) -> ShapesBiEncoder:
    image, image_digest = _read_file(model, weights_dir)
    text, tokeniser, text_digest = _text_tower(weights_dir)
    return ShapesBiEncoder(model, image, text, tokeniser, _joint_digest(image_digest, text_digest), text_digest)


def _load_cross(weights_dir: Path) -> ShapesCrossEncoder:
    model, digest = _read_file("cross", weights_dir)
    text, tokeniser, text_digest = _text_tower(weights_dir)
    return ShapesCrossEncoder(model, text, tokeniser, _joint_digest(digest, text_digest), text_digest)


def read_module(model: str, weights_dir: Path) -> nn.Module:
    """The network in ``shapes_<model>.safetensors`` (``text`` or one of MODELS), e.g. to train on from it."""
    return _read_file(model, weights_dir)[0]


def _read_file(model: str, weights_dir: Path) -> tuple[nn.Module, str]:
    path = weights_path(model, weights_dir)
    digest = _digest(path)
    return _read(model, path, digest)[0], digest


def _text_tower(weights_dir: Path) -> tuple[TextTower, Tokeniser, str]:
    path = weights_path("text", weights_dir)
    digest = _digest(path)
    text, vocab = _read("text", path, digest)
    return text, Tokeniser(vocab, TEXT_TOWER.max_tokens), digest


def _joint_digest(model_digest: str, text_digest: str) -> str:
    # image features only mean something next to the text tower they were trained with
    return hashlib.sha256(f"{model_digest}:{text_digest}".encode()).hexdigest()[:10]
