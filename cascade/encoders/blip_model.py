"""BLIP's computations as cascade levels: the modules each level runs, their MACs, the two levels.

Bi-encoder (the ITC path of ``BlipForImageTextRetrieval.forward(use_itm_head=False)``): an image is
``vision_proj`` of the vision CLS token, a query ``text_proj`` of the text CLS token, both
L2-normalised. Cross-encoder: an image's features are the vision tower's token states ``(T, d)``,
cached like any embedding; a query is scored against them by the text encoder with cross-attention
and the ITM head, in one of the ``SCORINGS``:

- ``original`` (the default): as BLIP was trained and evaluated. The ITM pass starts with ``[ENC]``
  instead of ``[CLS]`` (``input_ids[:, 0] = enc_token_id`` in BLIP's ``blip_retrieval.py`` and
  ``train_retrieval.py``, and in LAVIS), and a candidate's score is the ITM match logit plus the
  ITC cosine (``score = itm_head(...)[:, 1] + topk_sim`` in both evaluations).
- ``transformers``: as ``BlipForImageTextRetrieval.forward(use_itm_head=True)`` runs it: ``[CLS]``
  first (transformers issue #25629) and the softmax match probability, which saturates at 1.0 in
  float32 for confident pairs, so several candidates can tie.

Queries are padded to ``QUERY_TOKENS`` (35, as BLIP's own retrieval evaluation does), so
``text_macs`` and ``pair_macs`` are what every query really costs, not an estimate.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image
from torch import nn

from cascade._torchvision_compat import ensure_torchvision_compat

ensure_torchvision_compat()  # before transformers' BLIP (imported on use below) imports torchvision

if TYPE_CHECKING:
    from cascade.cost import MacsMode

QUERY_TOKENS = 35  # BLIP's train_retrieval.py pads and truncates every query to 35 tokens
ENC_TOKEN = "[ENC]"  # BLIP's init_tokenizer: bert-base-uncased + bos "[DEC]" + additional special "[ENC]"
DEC_TOKEN = "[DEC]"


@dataclass(frozen=True)
class ItmScoring:
    """How the ITM re-ranker turns one (query, image) pass into a score.

    Attributes:
        name: the suffix after ``+itm@`` in an encoder name.
        enc_first: the ITM pass's first token is ``[ENC]`` (BLIP's code) rather than ``[CLS]``.
        adds_itc: score = ITM match logit + ITC cosine (BLIP's evaluation), else the softmax match probability.
    """

    name: str
    enc_first: bool
    adds_itc: bool


SCORINGS: dict[str, ItmScoring] = {
    "original": ItmScoring("original", enc_first=True, adds_itc=True),
    "transformers": ItmScoring("transformers", enc_first=False, adds_itc=False),
}
DEFAULT_SCORING = "original"


@dataclass(frozen=True)
class BlipCheckpoint:
    """A loaded ``BlipForImageTextRetrieval`` checkpoint; both kinds of level are built on one.

    Attributes:
        source: hub id or absolute local directory, as named.
        weights_id: what identifies the weights: ``rev-<commit>`` (hub) or ``file-<digest>`` (folder).
        model: the model, in eval mode.
        tokenizer: the checkpoint's BERT tokenizer.
        image_processor: the checkpoint's ``BlipImageProcessor`` (resize, rescale, normalise).
        enc_token_id: the ``[ENC]`` id, or None when neither tokenizer nor vocabulary size yields one.
        display_name: short name for the UI (``BLIP-base``).
    """

    source: str
    weights_id: str
    model: Any
    tokenizer: Any
    image_processor: Any
    enc_token_id: int | None
    display_name: str
    # A Rust tokenizer with padding/truncation set is not safe to call from two threads at once
    # ("Already borrowed"), and the searcher serves queries from several threads.
    _tokenizer_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

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


def enc_token_id(tokenizer: Any, config: Any) -> int | None:
    """The ``[ENC]`` id: the tokenizer's own, else the one BLIP's vocabulary layout implies, else None.

    BLIP's tokenizer is bert-base-uncased (30522 ids) plus ``[DEC]`` (30522) and ``[ENC]`` (30523), in
    that order, and its text tower has 30524 embeddings. A tokenizer saved without the two added
    tokens still fits that layout: two embeddings past its vocabulary, ``[ENC]`` is the second.
    """
    vocab = tokenizer.get_vocab()
    if ENC_TOKEN in vocab:
        return int(vocab[ENC_TOKEN])
    base = len(vocab) - (1 if DEC_TOKEN in vocab else 0)
    if config.text_config.vocab_size == base + 2:
        return base + 1
    return None


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

    The caller picks the first token (``[ENC]`` or ``[CLS]``). No mask over the vision tokens: the
    model's own forward passes an all-ones one, which adds zeros to the attention scores.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.text_encoder = model.text_encoder
        self.itm_head = model.itm_head

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, image_states: torch.Tensor
    ) -> torch.Tensor:
        states = self.text_encoder(
            input_ids=input_ids, attention_mask=attention_mask, encoder_hidden_states=image_states
        ).last_hidden_state
        return self.itm_head(states[:, 0, :])


class PairSimilarity(nn.Module):
    """``(b, T, d)`` vision states, ``(b, e)`` unit text embeddings -> ``(b,)`` ITC cosines.

    The image embedding is recomputed from the cached CLS state (one ``vision_proj`` per pair), so
    the cross-encoder caches one kind of feature for both of its terms.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.vision_proj = model.vision_proj

    def forward(self, image_states: torch.Tensor, text_embedding: torch.Tensor) -> torch.Tensor:
        image_embedding = nn.functional.normalize(self.vision_proj(image_states[:, 0, :]), dim=-1)
        return torch.matmul(image_embedding.unsqueeze(1), text_embedding.unsqueeze(2))[:, 0, 0]


class MatchScorer(nn.Module):
    """BLIP's re-ranking score: ``(b,)`` ITM match logit (``[ENC]`` first) + ITC cosine."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.pairs = PairScorer(model)
        self.similarity = PairSimilarity(model)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        image_states: torch.Tensor,
        text_embedding: torch.Tensor,
    ) -> torch.Tensor:
        logits = self.pairs(input_ids, attention_mask, image_states)
        return logits[:, 1] + self.similarity(image_states, text_embedding)


# ---------------------------------------------------------------- MACs


@dataclass(frozen=True)
class BlipMacs:
    """MACs of one BLIP configuration, per image, per query and per (query, image) pair.

    Attributes:
        itc_image_macs: vision tower + ``vision_proj`` for one image (bi-encoder level).
        vision_macs: vision tower alone for one image (cross-encoder level's cached states).
        text_macs: text encoder + ``text_proj`` for one query of ``query_tokens`` tokens.
        pair_macs: text encoder with cross-attention + ITM head for one (query, image) pair.
        itc_pair_macs: what the original scoring adds per pair: ``vision_proj`` of the cached CLS
            state and the cosine with the query's ITC embedding (which costs ``text_macs`` once per query).
    """

    itc_image_macs: int
    vision_macs: int
    text_macs: int
    pair_macs: int
    itc_pair_macs: int


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
        states = torch.zeros(1, vision_tokens(config), config.vision_config.hidden_size)
        text_embedding = torch.zeros(1, config.image_text_hidden_size)
    # Masks are left out: on meta tensors transformers' mask helpers would read values, and a
    # mask adds to scores without multiplying, so the count is the same.
    return BlipMacs(
        itc_image_macs=count_macs(ImageEmbedder(model), (pixels,), mode=mode),
        vision_macs=count_macs(VisionStates(model), (pixels,), mode=mode),
        text_macs=count_macs(TextEmbedder(model), (ids, None), mode=mode),
        pair_macs=count_macs(PairScorer(model), (ids, None, states), mode=mode),
        itc_pair_macs=count_macs(PairSimilarity(model), (states, text_embedding), mode=mode),
    )


def vision_tokens(config: Any) -> int:
    """T: the CLS token plus one per patch."""
    return 1 + (config.vision_config.image_size // config.vision_config.patch_size) ** 2
