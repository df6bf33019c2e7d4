"""BLIP's two cascade levels: the ITC bi-encoder and the ITM re-ranker (see ``blip_model`` for the scorings)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from cascade.encoders.base import BiEncoder, CrossEncoder, l2_normalise
from cascade.encoders.blip_model import (
    DEFAULT_SCORING,
    ENC_TOKEN,
    BlipCheckpoint,
    ImageEmbedder,
    ItmScoring,
    MatchScorer,
    PairScorer,
    TextEmbedder,
    VisionStates,
    count_blip_macs,
    vision_tokens,
)
from cascade.errors import ConfigError

TEXT_BATCH = 64
PAIR_BATCH = 32  # (query, image) pairs per ITM forward


class BlipBiEncoder(BiEncoder):
    """BLIP's ITC path as a cascade level: 256-d (base and large) L2-normalised embeddings."""

    def __init__(self, checkpoint: BlipCheckpoint, name: str):
        self.checkpoint = checkpoint
        config = checkpoint.model.config
        self.id = f"{name}#{checkpoint.weights_id}"
        self.name = checkpoint.display_name
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
    """BLIP's ITM head as a re-ranking stage; image features are the vision token states ``(T, d)``.

    Attributes:
        scoring: how a pass becomes a score (``SCORINGS``).
        query_macs: MACs paid once per query besides the pairs: the query's ITC embedding under
            the original scoring (``text_macs``), 0 under the transformers scoring.
    """

    def __init__(self, checkpoint: BlipCheckpoint, name: str, scoring: ItmScoring):
        if scoring.enc_first and checkpoint.enc_token_id is None:
            raise ConfigError(
                f"{name}: the tokenizer has no {ENC_TOKEN} token and the text tower's vocabulary leaves no room "
                f"for one, so BLIP's own ITM scoring cannot run; use {name.split('+itm')[0]}+itm@transformers"
            )
        self.checkpoint = checkpoint
        self.scoring = scoring
        config = checkpoint.model.config
        self.id = f"{name}#{checkpoint.weights_id}"
        self.name = f"{checkpoint.display_name} ITM" + ("" if scoring.name == DEFAULT_SCORING else f" ({scoring.name})")
        self.image_size = config.vision_config.image_size
        self.feature_shape = (vision_tokens(config), config.vision_config.hidden_size)
        macs = count_blip_macs(config)
        self.image_macs = macs.vision_macs
        self.pair_macs = macs.pair_macs + (macs.itc_pair_macs if scoring.adds_itc else 0)
        self.query_macs = macs.text_macs if scoring.adds_itc else 0
        self._vision = VisionStates(checkpoint.model)
        self._pairs = PairScorer(checkpoint.model)
        self._match = MatchScorer(checkpoint.model)
        self._texts = TextEmbedder(checkpoint.model)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self.checkpoint.preprocess(image)

    @torch.inference_mode()
    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        """``(n, 3, S, S)`` -> ``(n, T, d)`` float32 vision token states."""
        return self._vision(pixels.to(self.checkpoint.device)).float().cpu().numpy()

    def itm_input(self, text: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The ITM pass's ``(1, L)`` ids and mask: ``[ENC]`` replaces ``[CLS]`` under the original scoring."""
        ids, mask = self.checkpoint.tokenize([text])
        if self.scoring.enc_first:
            ids = ids.clone()
            ids[:, 0] = self.checkpoint.enc_token_id
        return ids, mask

    @torch.inference_mode()
    def score(self, text: str, image_features: np.ndarray, query_embedding: np.ndarray | None = None) -> np.ndarray:
        """One query against ``(n, T, d)`` cached states -> ``(n,)`` float32 scores (``query_embedding`` unused:
        the ITM pass reads the image through cross-attention, so no bi-encoder embedding stands in for it).

        Original scoring: ITM match logit + ITC cosine (unbounded). Transformers scoring: match probability.
        """
        if image_features.ndim != 3 or tuple(image_features.shape[1:]) != self.feature_shape:
            raise ConfigError(
                f"{self.id} scores features of shape (n, {self.feature_shape[0]}, {self.feature_shape[1]}), "
                f"got {tuple(image_features.shape)}: were they cached by another encoder?"
            )
        ids, mask = self.itm_input(text)
        text_embedding = None
        if self.scoring.adds_itc:  # the ITC term uses the [CLS] input, as the bi-encoder does
            cls_ids, cls_mask = self.checkpoint.tokenize([text])
            text_embedding = nn.functional.normalize(self._texts(cls_ids, cls_mask).float(), dim=-1)
        scores = []
        for start in range(0, len(image_features), PAIR_BATCH):
            states = torch.from_numpy(np.ascontiguousarray(image_features[start : start + PAIR_BATCH]))
            states = states.to(self.checkpoint.device, self.checkpoint.model.dtype)
            n = len(states)
            if text_embedding is None:
                logits = self._pairs(ids.expand(n, -1), mask.expand(n, -1), states)
                scores.append(logits.float().softmax(dim=-1)[:, 1].cpu().numpy())
            else:
                embedding = text_embedding.to(states.dtype).expand(n, -1)
                matched = self._match(ids.expand(n, -1), mask.expand(n, -1), states, embedding)
                scores.append(matched.float().cpu().numpy())
        return np.concatenate(scores).astype(np.float32, copy=False) if scores else np.zeros(0, np.float32)
