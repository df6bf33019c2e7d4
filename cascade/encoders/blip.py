"""BLIP (Salesforce's ITM checkpoints, run by transformers) as cascade levels.

Names, as ``create_encoder("blip:" + spec)``:

- ``blip:base``, ``blip:large``: the ITC bi-encoder of ``Salesforce/blip-itm-base-coco`` and
  ``Salesforce/blip-itm-large-coco``.
- ``blip:<hub id>`` (``blip:Salesforce/blip-itm-base-flickr``) or ``blip:<local directory>``:
  the same for any ``BlipForImageTextRetrieval`` checkpoint.
- Any of these plus ``+itm`` (``blip:base+itm``, ``blip:/models/blip-base+itm``): the ITM
  cross-encoder of that checkpoint, a re-ranking stage.

Bi-encoder (the ITC path of ``BlipForImageTextRetrieval.forward(use_itm_head=False)``): an image is
``vision_proj`` of the vision CLS token, a query ``text_proj`` of the text CLS token, both
L2-normalised. Cross-encoder: an image's features are the vision tower's token states ``(T, d)``,
cached like any embedding; a query is scored against them by the text encoder with cross-attention
and the ITM head (match probability).

A local directory needs ``config.json``, ``model.safetensors`` (or a safetensors index and shards)
and tokenizer files (``tokenizer.json`` or ``vocab.txt``); ``preprocessor_config.json`` is optional
(BLIP's defaults at the config's image size). Only safetensors are read, never pickles. A hub id is
looked up in the Hugging Face cache first and downloaded only if the hub is enabled and reachable;
otherwise loading fails at once with ``WeightsUnavailable``.

Queries are padded to ``QUERY_TOKENS`` (35, as BLIP's own retrieval evaluation does), so
``text_macs`` and ``pair_macs`` are what every query really costs, not an estimate.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import threading
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from cascade.encoders.base import BiEncoder, CrossEncoder, ImageTower, l2_normalise
from cascade.errors import ConfigError, WeightsUnavailable

if TYPE_CHECKING:
    from cascade.cost import MacsMode

CHECKPOINTS: dict[str, str] = {
    "base": "Salesforce/blip-itm-base-coco",
    "large": "Salesforce/blip-itm-large-coco",
}
ITM_SUFFIX = "+itm"
QUERY_TOKENS = 35  # BLIP's train_retrieval.py pads and truncates every query to 35 tokens
TEXT_BATCH = 64
PAIR_BATCH = 32  # (query, image) pairs per ITM forward
HUB_PROBE_TIMEOUT_S = 3.0

_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")
_HUB_PATTERNS = [
    "config.json",
    "preprocessor_config.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "model-*.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
]
_SUPPLY_HINT = (
    "supply it as a local directory with config.json, model.safetensors and tokenizer files "
    "(tokenizer.json or vocab.txt) and use blip:/path/to/dir"
)


def known_names() -> list[str]:
    """Names advertised for hints: the two presets, as bi-encoders and as re-rankers."""
    return [f"blip:{key}{suffix}" for key in CHECKPOINTS for suffix in ("", ITM_SUFFIX)]


def create(spec: str) -> ImageTower:
    """Build the level named by ``spec`` (the part after ``blip:``).

    Returns:
        ``BlipBiEncoder``, or ``BlipCrossEncoder`` when ``spec`` ends in ``+itm``.

    Raises:
        EncoderNotFound: ``spec`` is neither a preset, a hub id (``owner/name``) nor a directory.
        WeightsUnavailable: the checkpoint is not local and cannot be downloaded, or is incomplete.
    """
    source, itm = parse_spec(spec)
    checkpoint = load_checkpoint(source)
    return BlipCrossEncoder(checkpoint) if itm else BlipBiEncoder(checkpoint)


def parse_spec(spec: str) -> tuple[str, bool]:
    """``spec`` -> (hub id or absolute directory, whether the ITM re-ranker is wanted)."""
    from cascade.encoders import not_found

    spec = spec.strip()
    itm = spec.endswith(ITM_SUFFIX)
    body = spec[: -len(ITM_SUFFIX)] if itm else spec
    if body in CHECKPOINTS:
        return CHECKPOINTS[body], itm
    path = Path(body).expanduser()
    if path.is_dir():
        return str(path.resolve()), itm
    if _looks_like_path(body):
        raise WeightsUnavailable(f"BLIP checkpoint directory {body!r} does not exist; {_SUPPLY_HINT}")
    if body.count("/") == 1 and all(body.split("/")):
        return body, itm
    raise not_found(f"blip:{spec}", "blip")


def _looks_like_path(text: str) -> bool:
    return text.startswith(("/", ".", "~")) or "\\" in text or text.count("/") > 1


@dataclass(frozen=True)
class BlipCheckpoint:
    """A loaded ``BlipForImageTextRetrieval`` checkpoint; both kinds of level are built on one.

    Attributes:
        source: hub id or absolute local directory; encoder ids are made from it.
        model: the model, in eval mode.
        tokenizer: the checkpoint's BERT tokenizer.
        image_processor: the checkpoint's ``BlipImageProcessor`` (resize, rescale, normalise).
    """

    source: str
    model: Any
    tokenizer: Any
    image_processor: Any
    # A Rust tokenizer with padding/truncation set is not safe to call from two threads at once
    # ("Already borrowed"), and the searcher serves queries from several threads.
    _tokenizer_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def name(self) -> str:
        """Short display name: ``BLIP-base`` for the presets, else the last path part."""
        for key, hub_id in CHECKPOINTS.items():
            if self.source == hub_id:
                return f"BLIP-{key}"
        return f"BLIP {Path(self.source).name}"

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def tokenize(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Texts -> ``input_ids``, ``attention_mask``, each ``(m, query_tokens)`` on the model's device."""
        with self._tokenizer_lock:
            encoded = self.tokenizer(
                list(texts),
                padding="max_length",
                truncation=True,
                max_length=query_tokens(self.model.config),
                return_tensors="pt",
                return_token_type_ids=False,
            )
        return encoded["input_ids"].to(self.device), encoded["attention_mask"].to(self.device)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """One PIL image -> ``(3, S, S)`` float tensor, the checkpoint's own transform."""
        return self.image_processor(image.convert("RGB"), return_tensors="pt")["pixel_values"][0]


def query_tokens(config: Any) -> int:
    """Length every query is padded to: ``QUERY_TOKENS``, unless the text tower is shorter."""
    return min(QUERY_TOKENS, config.text_config.max_position_embeddings)


# ---------------------------------------------------------------- the computations, as modules
# Each level runs exactly these modules, and the MAC counts run them too (on a meta-device copy),
# so what is metered is what is computed.


class ImageEmbedder(nn.Module):
    """``(n, 3, S, S)`` pixels -> ``(n, e)`` ITC image embeddings, not normalised."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.vision_model = model.vision_model
        self.vision_proj = model.vision_proj

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.vision_proj(self.vision_model(pixel_values=pixels).last_hidden_state[:, 0, :])


class VisionStates(nn.Module):
    """``(n, 3, S, S)`` pixels -> ``(n, T, d)`` vision-tower token states (T = 1 + patches)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.vision_model = model.vision_model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.vision_model(pixel_values=pixels).last_hidden_state


class TextEmbedder(nn.Module):
    """``(m, L)`` ids and mask -> ``(m, e)`` ITC text embeddings, not normalised."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.text_encoder = model.text_encoder
        self.text_proj = model.text_proj

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        states = self.text_encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.text_proj(states[:, 0, :])


class PairScorer(nn.Module):
    """``(b, L)`` ids and mask, ``(b, T, d)`` vision states -> ``(b, 2)`` ITM logits.

    No mask over the vision tokens: the model's own forward passes an all-ones one, which adds
    zeros to the attention scores, so leaving it out gives the same numbers.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.text_encoder = model.text_encoder
        self.itm_head = model.itm_head

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, image_states: torch.Tensor
    ) -> torch.Tensor:
        # The [CLS] token stays first, as in transformers' forward(use_itm_head=True); Salesforce's own
        # code swaps in [ENC] here (transformers issue #25629). We match the model class we load.
        states = self.text_encoder(
            input_ids=input_ids, attention_mask=attention_mask, encoder_hidden_states=image_states
        ).last_hidden_state
        return self.itm_head(states[:, 0, :])


# ---------------------------------------------------------------- MACs


@dataclass(frozen=True)
class BlipMacs:
    """MACs of one BLIP configuration, per image, per query and per (query, image) pair.

    Attributes:
        itc_image_macs: vision tower + ``vision_proj`` for one image (bi-encoder level).
        vision_macs: vision tower alone for one image (cross-encoder level's cached states).
        text_macs: text encoder + ``text_proj`` for one query of ``query_tokens`` tokens.
        pair_macs: text encoder with cross-attention + ITM head for one (query, image) pair.
    """

    itc_image_macs: int
    vision_macs: int
    text_macs: int
    pair_macs: int


def count_blip_macs(config: Any, mode: MacsMode = "full") -> BlipMacs:
    """Count the MACs of ``config`` on a meta-device copy (no weights, no memory). Cached."""
    return _count_blip_macs(config.to_json_string(use_diff=False), mode)


@functools.lru_cache(maxsize=16)
def _count_blip_macs(config_json: str, mode: MacsMode) -> BlipMacs:
    from transformers import BlipConfig, BlipForImageTextRetrieval

    from cascade.cost import count_macs

    config = BlipConfig.from_dict(json.loads(config_json))
    with torch.device("meta"):
        model = BlipForImageTextRetrieval(config).eval()
        size = config.vision_config.image_size
        pixels = torch.zeros(1, 3, size, size)
        ids = torch.zeros(1, query_tokens(config), dtype=torch.long)
        states = torch.zeros(1, _vision_tokens(config), config.vision_config.hidden_size)
    # Masks are left out: on meta tensors transformers' mask helpers would read values, and a
    # mask adds to scores without multiplying, so the count is the same.
    return BlipMacs(
        itc_image_macs=count_macs(ImageEmbedder(model), (pixels,), mode=mode),
        vision_macs=count_macs(VisionStates(model), (pixels,), mode=mode),
        text_macs=count_macs(TextEmbedder(model), (ids, None), mode=mode),
        pair_macs=count_macs(PairScorer(model), (ids, None, states), mode=mode),
    )


def _vision_tokens(config: Any) -> int:
    """T: the CLS token plus one per patch."""
    return 1 + (config.vision_config.image_size // config.vision_config.patch_size) ** 2


# ---------------------------------------------------------------- the levels


class BlipBiEncoder(BiEncoder):
    """BLIP's ITC path as a cascade level: 256-d (base and large) L2-normalised embeddings."""

    def __init__(self, checkpoint: BlipCheckpoint):
        self.checkpoint = checkpoint
        config = checkpoint.model.config
        self.id = f"blip:{checkpoint.source}"
        self.name = checkpoint.name
        self.text_tower_id = self.id
        self.dim = config.image_text_hidden_size
        self.image_size = config.vision_config.image_size
        macs = count_blip_macs(config)
        self.image_macs = macs.itc_image_macs
        self.text_macs = macs.text_macs
        self._images = ImageEmbedder(checkpoint.model)
        self._texts = TextEmbedder(checkpoint.model)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self.checkpoint.preprocess(image)

    @torch.inference_mode()
    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        """``(n, 3, S, S)`` -> ``(n, dim)`` float32, L2-normalised."""
        return l2_normalise(self._images(pixels.to(self.checkpoint.device)))

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> ``(m, dim)`` float32, L2-normalised."""
        if not texts:
            raise ValueError("encode_texts needs at least one text")
        outputs = []
        for start in range(0, len(texts), TEXT_BATCH):
            ids, mask = self.checkpoint.tokenize(texts[start : start + TEXT_BATCH])
            outputs.append(l2_normalise(self._texts(ids, mask)))
        return np.concatenate(outputs, axis=0)


class BlipCrossEncoder(CrossEncoder):
    """BLIP's ITM head as a re-ranking stage; image features are the vision token states ``(T, d)``."""

    def __init__(self, checkpoint: BlipCheckpoint):
        self.checkpoint = checkpoint
        config = checkpoint.model.config
        self.id = f"blip:{checkpoint.source}{ITM_SUFFIX}"
        self.name = f"{checkpoint.name} ITM"
        self.image_size = config.vision_config.image_size
        self.feature_shape = (_vision_tokens(config), config.vision_config.hidden_size)
        macs = count_blip_macs(config)
        self.image_macs = macs.vision_macs
        self.pair_macs = macs.pair_macs
        self._vision = VisionStates(checkpoint.model)
        self._pairs = PairScorer(checkpoint.model)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self.checkpoint.preprocess(image)

    @torch.inference_mode()
    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        """``(n, 3, S, S)`` -> ``(n, T, d)`` float32 vision token states."""
        return self._vision(pixels.to(self.checkpoint.device)).float().cpu().numpy()

    @torch.inference_mode()
    def score(self, text: str, image_features: np.ndarray) -> np.ndarray:
        """One query against ``(n, T, d)`` cached states -> ``(n,)`` float32 match probabilities."""
        if image_features.ndim != 3 or tuple(image_features.shape[1:]) != self.feature_shape:
            raise ConfigError(
                f"{self.id} scores features of shape (n, {self.feature_shape[0]}, {self.feature_shape[1]}), "
                f"got {tuple(image_features.shape)}: were they cached by another encoder?"
            )
        ids, mask = self.checkpoint.tokenize([text])
        scores = []
        for start in range(0, len(image_features), PAIR_BATCH):
            states = torch.from_numpy(np.ascontiguousarray(image_features[start : start + PAIR_BATCH]))
            states = states.to(self.checkpoint.device, self.checkpoint.model.dtype)
            n = len(states)
            logits = self._pairs(ids.expand(n, -1), mask.expand(n, -1), states)
            scores.append(logits.float().softmax(dim=-1)[:, 1].cpu().numpy())
        return np.concatenate(scores).astype(np.float32, copy=False) if scores else np.zeros(0, np.float32)


# ---------------------------------------------------------------- loading


@functools.lru_cache(maxsize=4)
def load_checkpoint(source: str) -> BlipCheckpoint:
    """Load a checkpoint from a hub id or an absolute directory; ``blip:X`` and ``blip:X+itm`` share it.

    Raises:
        WeightsUnavailable: not local and not downloadable, or a file is missing, or the weights
            lack a part of ``BlipForImageTextRetrieval`` (e.g. a captioning checkpoint: no ITM head).
    """
    folder = Path(source) if Path(source).is_dir() else _hub_snapshot(source)
    missing = _missing_files(folder)
    if missing:
        raise WeightsUnavailable(f"BLIP checkpoint {source} lacks {', '.join(missing)} in {folder}; {_SUPPLY_HINT}")
    # Imported here, after the files are known to exist: a missing checkpoint fails in milliseconds.
    from transformers import BertTokenizer, BlipForImageTextRetrieval, BlipImageProcessor

    try:
        model, info = BlipForImageTextRetrieval.from_pretrained(folder, use_safetensors=True, output_loading_info=True)
    except Exception as err:  # a corrupt or foreign file: transformers and safetensors raise many kinds
        first_line = (str(err).splitlines() or [type(err).__name__])[0]
        raise WeightsUnavailable(f"BLIP checkpoint {source} could not be read ({first_line}); {_SUPPLY_HINT}") from err
    if info["missing_keys"]:
        names = ", ".join(sorted(info["missing_keys"])[:3])
        raise WeightsUnavailable(
            f"BLIP checkpoint {source} is not an image-text retrieval model: no weights for {names}"
        )
    tokenizer = BertTokenizer.from_pretrained(folder)
    _check_tokenizer(tokenizer, model.config, source)
    if (folder / "preprocessor_config.json").is_file():
        image_processor = BlipImageProcessor.from_pretrained(folder)
    else:
        size = model.config.vision_config.image_size
        image_processor = BlipImageProcessor(size={"height": size, "width": size})
    if torch.cuda.is_available():
        model = model.to("cuda")
    return BlipCheckpoint(source=source, model=model.eval(), tokenizer=tokenizer, image_processor=image_processor)


def _missing_files(folder: Path) -> list[str]:
    """What a checkpoint folder lacks, as names for the user; empty when complete."""
    missing = []
    if not (folder / "config.json").is_file():
        missing.append("config.json")
    if not any((folder / name).is_file() for name in _WEIGHT_FILES):
        pickled = (folder / "pytorch_model.bin").is_file()
        missing.append("model.safetensors" + (" (only pickled pytorch_model.bin found, not loaded)" if pickled else ""))
    if not any((folder / name).is_file() for name in _TOKENIZER_FILES):
        missing.append("tokenizer.json or vocab.txt")
    return missing


def _check_tokenizer(tokenizer: Any, config: Any, source: str) -> None:
    # transformers 5's BertTokenizer builds a 5-token vocabulary when it finds none: catch that
    # here rather than score every query as [UNK].
    vocab = tokenizer.get_vocab()
    if len(vocab) <= len(set(tokenizer.all_special_tokens)):
        raise WeightsUnavailable(f"BLIP checkpoint {source}: tokenizer files hold no vocabulary; {_SUPPLY_HINT}")
    if max(vocab.values()) >= config.text_config.vocab_size:
        raise WeightsUnavailable(
            f"BLIP checkpoint {source}: tokenizer has ids up to {max(vocab.values())} but the text tower "
            f"only {config.text_config.vocab_size} embeddings; tokenizer and weights do not belong together"
        )


def _hub_snapshot(repo_id: str) -> Path:
    """The local folder of ``repo_id``: the HF cache if complete, else a download. Fails fast when offline."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError

    from cascade.encoders import not_found

    try:
        cached = Path(snapshot_download(repo_id, allow_patterns=_HUB_PATTERNS, local_files_only=True))
        if not _missing_files(cached):
            return cached
    except LocalEntryNotFoundError:
        pass
    except HFValidationError:
        raise not_found(f"blip:{repo_id}", "blip") from None
    where = "not (completely) in the Hugging Face cache"
    if _offline(constants):
        raise WeightsUnavailable(
            f"BLIP checkpoint {repo_id} is {where} and downloads are off (HF_HUB_OFFLINE); {_SUPPLY_HINT}"
        )
    if not _reachable(constants.ENDPOINT):
        raise WeightsUnavailable(
            f"BLIP checkpoint {repo_id} is {where} and {constants.ENDPOINT} is unreachable; {_SUPPLY_HINT}"
        )
    try:
        return Path(snapshot_download(repo_id, allow_patterns=_HUB_PATTERNS))
    except (HfHubHTTPError, OSError) as err:
        raise WeightsUnavailable(f"BLIP checkpoint {repo_id} could not be downloaded ({err}); {_SUPPLY_HINT}") from err


def _offline(constants: Any) -> bool:
    # The environment is read now, not only at huggingface_hub's import, so setting it later counts.
    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return bool(constants.HF_HUB_OFFLINE) or any(flag.upper() in {"1", "ON", "YES", "TRUE"} for flag in flags)


def _reachable(endpoint: str) -> bool:
    """Whether a TCP connection to the hub opens within ``HUB_PROBE_TIMEOUT_S``.

    huggingface_hub retries and waits on its own timeouts; probing first bounds the wait when the
    machine has no route out.
    """
    url = urllib.parse.urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=HUB_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False
