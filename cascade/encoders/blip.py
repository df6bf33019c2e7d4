"""BLIP (Salesforce's retrieval checkpoints, run by transformers) as cascade levels.

Names, as ``create_encoder("blip:" + spec)``:

- ``blip:base``, ``blip:large``: the ITC bi-encoder of ``Salesforce/blip-itm-base-coco`` and
  ``Salesforce/blip-itm-large-coco``.
- ``blip:<hub id>`` (``blip:Salesforce/blip-itm-base-flickr``) or ``blip:<local directory>``:
  the same for any ``BlipForImageTextRetrieval`` checkpoint (``python -m cascade convert-blip``
  turns BLIP's and LAVIS's own ``.pth`` retrieval checkpoints into such a directory).
- Any of these plus ``+itm`` (``blip:base+itm``): the ITM cross-encoder of that checkpoint, a
  re-ranking stage scored as BLIP's authors did (``[ENC]`` first, match logit + ITC cosine);
  ``+itm@transformers`` scores as transformers' ``BlipForImageTextRetrieval`` does (``[CLS]``
  first, match probability), for comparison. ``blip_model`` explains both.

An encoder's id is its name plus ``#`` and what identifies the weights (``#rev-<commit>`` for a hub
snapshot, ``#file-<digest>`` for a folder), so the feature cache never serves rows of other weights.

The work lives in ``blip_model`` (modules, scorings, MACs), ``blip_levels`` (the two levels),
``blip_loading`` (folders, hub, weights ids) and ``blip_convert`` (original checkpoints).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cascade import cost
from cascade.cost import MacsMode
from cascade.encoders.base import ImageTower
from cascade.encoders.blip_levels import PAIR_BATCH, TEXT_BATCH, BlipBiEncoder, BlipCrossEncoder
from cascade.encoders.blip_loading import SUPPLY_HINT, load_checkpoint
from cascade.encoders.blip_model import (
    DEFAULT_SCORING,
    QUERY_TOKENS,
    SCORINGS,
    BlipCheckpoint,
    BlipMacs,
    ImageEmbedder,
    MatchScorer,
    PairScorer,
    PairSimilarity,
    TextEmbedder,
    VisionStates,
    count_blip_macs,
    enc_token_id,
    query_tokens,
)
from cascade.errors import WeightsUnavailable

__all__ = [
    "CHECKPOINTS",
    "ITM_SUFFIX",
    "PAIR_BATCH",
    "QUERY_TOKENS",
    "SCORINGS",
    "TEXT_BATCH",
    "BlipBiEncoder",
    "BlipCheckpoint",
    "BlipCrossEncoder",
    "BlipMacs",
    "BlipSpec",
    "ImageEmbedder",
    "MatchScorer",
    "PairScorer",
    "PairSimilarity",
    "TextEmbedder",
    "VisionStates",
    "count_blip_macs",
    "count_image_macs",
    "create",
    "enc_token_id",
    "known_names",
    "load_checkpoint",
    "parse_spec",
    "query_tokens",
]

CHECKPOINTS: dict[str, str] = {
    "base": "Salesforce/blip-itm-base-coco",
    "large": "Salesforce/blip-itm-large-coco",
}
ITM_SUFFIX = "+itm"


@dataclass(frozen=True)
class BlipSpec:
    """A parsed ``blip:`` name.

    Attributes:
        source: hub id or absolute local directory.
        itm: the ITM re-ranker is wanted, not the ITC bi-encoder.
        scoring: a key of ``SCORINGS`` (meaningful only with ``itm``).
    """

    source: str
    itm: bool = False
    scoring: str = DEFAULT_SCORING

    @property
    def name(self) -> str:
        """The canonical encoder name (``blip:<source>+itm@transformers``); ids add the weights to it."""
        if not self.itm:
            return f"blip:{self.source}"
        return f"blip:{self.source}{ITM_SUFFIX}" + ("" if self.scoring == DEFAULT_SCORING else f"@{self.scoring}")

    @property
    def display_name(self) -> str:
        """``BLIP-base`` for the presets, else ``BLIP <last path part>``."""
        for key, hub_id in CHECKPOINTS.items():
            if self.source == hub_id:
                return f"BLIP-{key}"
        return f"BLIP {Path(self.source).name}"


def known_names() -> list[str]:
    """Names advertised for hints: the two presets, as bi-encoders and as re-rankers in both scorings."""
    suffixes = ("", ITM_SUFFIX, *(f"{ITM_SUFFIX}@{name}" for name in SCORINGS if name != DEFAULT_SCORING))
    return [f"blip:{key}{suffix}" for key in CHECKPOINTS for suffix in suffixes]


def is_cross(spec: str) -> bool:
    """Whether ``spec`` names the ITM re-ranker (``+itm``, ``+itm@SCORING``) rather than the ITC bi-encoder.

    From the name alone: no directory or hub lookup (``parse_spec`` resolves the source).
    """
    return _split_itm(spec.strip())[1] is not None


def count_image_macs(spec: str, mode: MacsMode, image_size: int) -> int:
    """MACs of the vision tower of a preset (``base``, ``large``, as bi-encoder or ``+itm``) on one image.

    By name only for the presets (or their hub ids), whose architectures are known without
    a download; another checkpoint's cost is its built encoder's ``image_macs``.

    Raises:
        EncoderNotFound: not a preset.
    """
    body = _split_itm(spec.strip())[0]
    variant = next((key for key, hub_id in CHECKPOINTS.items() if body in (key, hub_id)), body)
    return cost.blip_vision_macs(variant, mode, image_size)


def create(spec: str) -> ImageTower:
    """Build the level named by ``spec`` (the part after ``blip:``).

    Returns:
        ``BlipBiEncoder``, or ``BlipCrossEncoder`` when ``spec`` ends in ``+itm`` or ``+itm@SCORING``.

    Raises:
        EncoderNotFound: ``spec`` is neither a preset, a hub id (``owner/name``) nor a directory,
            or names an unknown scoring.
        WeightsUnavailable: the checkpoint is not local and cannot be downloaded, or is incomplete.
        ConfigError: the original scoring was asked of a checkpoint whose tokenizer has no ``[ENC]``.
    """
    parsed = parse_spec(spec)
    checkpoint = load_checkpoint(parsed.source, parsed.display_name)
    if parsed.itm:
        return BlipCrossEncoder(checkpoint, parsed.name, SCORINGS[parsed.scoring])
    return BlipBiEncoder(checkpoint, parsed.name)


def parse_spec(spec: str) -> BlipSpec:
    """``spec`` -> source (hub id or absolute directory), re-ranker or not, and its scoring."""
    from cascade.encoders import not_found

    body, scoring = _split_itm(spec.strip())
    itm, scoring = scoring is not None, scoring or DEFAULT_SCORING
    if scoring not in SCORINGS:
        raise not_found(f"blip:{spec}", "blip")
    if body in CHECKPOINTS:
        return BlipSpec(CHECKPOINTS[body], itm, scoring)
    path = Path(body).expanduser()
    if path.is_dir():
        return BlipSpec(str(path.resolve()), itm, scoring)
    if _looks_like_path(body):
        raise WeightsUnavailable(f"BLIP checkpoint directory {body!r} does not exist; {SUPPLY_HINT}")
    if body.count("/") == 1 and all(body.split("/")):
        return BlipSpec(body, itm, scoring)
    raise not_found(f"blip:{spec}", "blip")


def _split_itm(body: str) -> tuple[str, str | None]:
    """``SOURCE[+itm[@SCORING]]`` -> (SOURCE, the scoring: ``""`` for the default, None for a bi-encoder)."""
    head, sep, tail = body.rpartition(ITM_SUFFIX)
    if sep and (tail == "" or tail.startswith("@")):
        return head, tail[1:]
    return body, None


def _looks_like_path(text: str) -> bool:
    return text.startswith(("/", ".", "~")) or "\\" in text or text.count("/") > 1
