"""BLIP's and LAVIS's own retrieval checkpoints (``.pth``) -> a folder ``blip:OUT_DIR`` serves.

salesforce-lavis cannot be installed beside open_clip 3 and transformers 5, so the original
checkpoints (BLIP's ``model_base_retrieval_coco.pth``, LAVIS's ``blip_coco_retrieval.pth``, ...) are
converted to transformers' ``BlipForImageTextRetrieval`` layout instead:

1. ``torch.load(weights_only=True)``: tensors and plain containers only, pickled code is never run;
   the state dict is the checkpoint's ``model`` entry.
2. What inference does not need is dropped (momentum encoders, queues, ``temp``, ``position_ids``)
   and the vision keys are renamed by ``_VISION_RENAMES`` (the rules of transformers'
   ``convert_blip_original_pytorch_to_hf.py``); text keys already match.
3. The config is read off the tensor shapes, with BLIP's constants for what shapes do not show:
   12 text heads (BERT-base), 64-wide vision heads, LayerNorm eps 1e-6 in the ViT and 1e-12 in BERT.
4. The tokenizer is bert-base-uncased plus ``[DEC]`` and ``[ENC]``, as BLIP's ``init_tokenizer`` builds it.

Everything is checked (a strict load into the model) before anything is written, and the folder is
written beside OUT_DIR and renamed into place, so a failure leaves OUT_DIR as it was.
"""

from __future__ import annotations

import math
import os
import pickle
import re
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cascade._torchvision_compat import ensure_torchvision_compat
from cascade.encoders import hub
from cascade.encoders.blip_model import DEC_TOKEN, ENC_TOKEN
from cascade.errors import ConfigError, WeightsUnavailable

ensure_torchvision_compat()  # before transformers' BLIP (imported on use below) imports torchvision

# (pattern, replacement) on BLIP's ViT keys; what no rule renames and no rule drops is reported.
_VISION_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^visual_encoder\.cls_token$", "vision_model.embeddings.class_embedding"),
    (r"^visual_encoder\.pos_embed$", "vision_model.embeddings.position_embedding"),
    (r"^visual_encoder\.patch_embed\.proj\.", "vision_model.embeddings.patch_embedding."),
    (r"^visual_encoder\.blocks\.(\d+)\.attn\.qkv\.", r"vision_model.encoder.layers.\1.self_attn.qkv."),
    (r"^visual_encoder\.blocks\.(\d+)\.attn\.proj\.", r"vision_model.encoder.layers.\1.self_attn.projection."),
    (r"^visual_encoder\.blocks\.(\d+)\.norm([12])\.", r"vision_model.encoder.layers.\1.layer_norm\2."),
    (r"^visual_encoder\.blocks\.(\d+)\.mlp\.fc([12])\.", r"vision_model.encoder.layers.\1.mlp.fc\2."),
    (r"^visual_encoder\.norm\.", "vision_model.post_layernorm."),
)
_KEPT = re.compile(r"^(text_encoder|vision_proj|text_proj|itm_head)\.")
# Training-only state: momentum copies, contrastive queues (BLIP names the pointer ptr_queue,
# LAVIS queue_ptr), the temperature, and BERT's position_ids buffer (transformers rebuilds it).
_DROPPED: tuple[tuple[str, str], ...] = (
    (r"^(visual_encoder_m|text_encoder_m|vision_proj_m|text_proj_m)\.", "momentum encoders"),
    (r"^(image_queue|text_queue|idx_queue|ptr_queue|queue_ptr)$", "queues"),
    (r"^temp$", "temp"),
    (r"position_ids$", "position_ids"),
)
_REQUIRED = {
    "itm_head.weight": "no ITM head (a captioning, VQA or feature-extractor checkpoint?)",
    "vision_proj.weight": "no vision_proj (not a retrieval checkpoint)",
    "text_proj.weight": "no text_proj (not a retrieval checkpoint)",
    "text_encoder.embeddings.word_embeddings.weight": "no text encoder",
    "vision_model.embeddings.position_embedding": "no vision encoder",
}
TEXT_HEADS = 12  # BLIP's med_config.json: BERT-base, for ViT-B and ViT-L alike
VISION_HEAD_DIM = 64  # create_vit: ViT-B 768/12, ViT-L 1024/16
VISION_LAYER_NORM_EPS = 1e-6  # BLIP's ViT: partial(nn.LayerNorm, eps=1e-6)
TEXT_LAYER_NORM_EPS = 1e-12  # BERT
_VARIANTS = {768: "base", 1024: "large"}
_BERT_REPOS = ("google-bert/bert-base-uncased", "bert-base-uncased")
TOKENIZER_HINT = (
    "pass --tokenizer DIR, a folder with bert-base-uncased's vocab.txt (BLIP's tokenizer), "
    "or put google-bert/bert-base-uncased in the Hugging Face cache"
)


@dataclass(frozen=True)
class ConversionReport:
    """What ``convert_checkpoint`` did.

    Attributes:
        source: the ``.pth`` read.
        out_dir: the folder written; ``blip:<out_dir>`` serves it.
        variant: ``base`` or ``large`` (by the ViT width), else ``custom``.
        image_size: input resolution, from the position embedding.
        tensors: how many tensors were written.
        dropped: ``(group, count)`` of training-only tensors left out.
        unrecognised: keys no rule knows, left out.
        tokenizer: where the tokenizer came from.
    """

    source: str
    out_dir: str
    variant: str
    image_size: int
    tensors: int
    dropped: tuple[tuple[str, int], ...]
    unrecognised: tuple[str, ...]
    tokenizer: str


def convert_checkpoint(source: Path, out_dir: Path, tokenizer_dir: Path | None = None) -> ConversionReport:
    """Convert an original BLIP/LAVIS retrieval checkpoint into a ``BlipForImageTextRetrieval`` folder.

    Raises:
        ConfigError: OUT_DIR exists and is not empty.
        WeightsUnavailable: SRC is missing, corrupt, holds pickled code, is not a retrieval checkpoint,
            or no tokenizer could be found.
    """
    source, out_dir = Path(source), Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ConfigError(f"{out_dir} exists and is not an empty folder; convert-blip writes a new one")
    renamed, dropped, unrecognised = rename_state_dict(read_original(source))
    for key, why in _REQUIRED.items():
        if key not in renamed:
            raise WeightsUnavailable(f"{source} is not a BLIP retrieval checkpoint: {why}")
    tokenizer, tokenizer_from = bert_tokenizer(tokenizer_dir)
    config = infer_config(renamed, tokenizer)
    model = _strict_model(config, renamed, source)
    _write(out_dir, model, tokenizer, config.vision_config.image_size)
    return ConversionReport(
        source=str(source),
        out_dir=str(out_dir),
        variant=_VARIANTS.get(config.vision_config.hidden_size, "custom"),
        image_size=config.vision_config.image_size,
        tensors=len(renamed),
        dropped=tuple(sorted(dropped.items())),
        unrecognised=tuple(unrecognised),
        tokenizer=tokenizer_from,
    )


def read_original(source: Path) -> dict[str, torch.Tensor]:
    """The ``model`` state dict of a ``.pth``, read without running pickled code."""
    if not source.is_file():
        raise WeightsUnavailable(f"checkpoint file not found: {source}")
    try:
        checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "unsupported global" in str(err).lower():  # a class or function to call: code, not tensors
            raise WeightsUnavailable(
                f"{source} holds pickled objects besides tensors and was not loaded (pickled code is never run)"
            ) from None
        raise WeightsUnavailable(f"{source} is not a readable PyTorch checkpoint (corrupt or truncated?)") from None
    except Exception as err:  # a damaged file breaks the unpickler in many ways (IndexError, KeyError, struct.error...)
        first_line = (str(err).splitlines() or [type(err).__name__])[0]
        raise WeightsUnavailable(f"{source} is not a readable PyTorch checkpoint ({first_line})") from None
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsUnavailable(f"{source} holds no state dict of tensors under 'model'")
    return state


def rename_state_dict(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], Counter, list[str]]:
    """Original keys -> transformers keys; also what was dropped (by group) and what was not recognised."""
    renamed: dict[str, torch.Tensor] = {}
    dropped: Counter = Counter()
    unrecognised: list[str] = []
    for key, tensor in state.items():
        group = next((name for pattern, name in _DROPPED if re.search(pattern, key)), None)
        if group is not None:
            dropped[group] += 1
            continue
        new = next((re.sub(p, r, key) for p, r in _VISION_RENAMES if re.search(p, key)), None)
        if new is None and _KEPT.match(key):
            new = key
        if new is None:
            unrecognised.append(key)
        else:
            renamed[new] = tensor
    return renamed, dropped, unrecognised


def infer_config(state: dict[str, torch.Tensor], tokenizer: Any) -> Any:
    """The ``BlipConfig`` the tensors imply (widths, depths, resolution, vocabulary)."""
    from transformers import BlipConfig

    vision_hidden = state["vision_model.embeddings.class_embedding"].shape[-1]
    patch = state["vision_model.embeddings.patch_embedding.weight"].shape[-1]
    patches = state["vision_model.embeddings.position_embedding"].shape[1] - 1
    grid = math.isqrt(patches)
    if grid * grid != patches:
        raise WeightsUnavailable(f"the position embedding has {patches} patch positions, not a square grid")
    words = state["text_encoder.embeddings.word_embeddings.weight"]
    text = dict(
        vocab_size=words.shape[0],
        hidden_size=words.shape[1],
        intermediate_size=state["text_encoder.encoder.layer.0.intermediate.dense.weight"].shape[0],
        num_hidden_layers=_depth(state, r"^text_encoder\.encoder\.layer\.(\d+)\."),
        num_attention_heads=TEXT_HEADS,
        max_position_embeddings=state["text_encoder.embeddings.position_embeddings.weight"].shape[0],
        encoder_hidden_size=vision_hidden,
        layer_norm_eps=TEXT_LAYER_NORM_EPS,
        hidden_act="gelu",
        pad_token_id=tokenizer.pad_token_id,
        sep_token_id=tokenizer.sep_token_id,
        bos_token_id=tokenizer.convert_tokens_to_ids(DEC_TOKEN),
    )
    vision = dict(
        hidden_size=vision_hidden,
        intermediate_size=state["vision_model.encoder.layers.0.mlp.fc1.weight"].shape[0],
        num_hidden_layers=_depth(state, r"^vision_model\.encoder\.layers\.(\d+)\."),
        num_attention_heads=max(1, vision_hidden // VISION_HEAD_DIM),
        image_size=grid * patch,
        patch_size=patch,
        layer_norm_eps=VISION_LAYER_NORM_EPS,
        hidden_act="gelu",
    )
    embed = state["vision_proj.weight"].shape[0]
    return BlipConfig(text_config=text, vision_config=vision, image_text_hidden_size=embed)


def _depth(state: dict[str, torch.Tensor], pattern: str) -> int:
    layers = {int(m.group(1)) for key in state if (m := re.match(pattern, key))}
    return max(layers) + 1 if layers else 0


def bert_tokenizer(folder: Path | None) -> tuple[Any, str]:
    """BLIP's tokenizer: bert-base-uncased from ``folder`` or the hub cache, plus ``[DEC]`` and ``[ENC]``."""
    from transformers import BertTokenizer

    if folder is None:
        cached = next(filter(None, (hub.cached_hub_file(repo, ["vocab.txt"]) for repo in _BERT_REPOS)), None)
        if cached is None:
            raise WeightsUnavailable(f"no tokenizer: bert-base-uncased is not in the HF cache; {TOKENIZER_HINT}")
        folder = Path(cached).parent
    folder = Path(folder)
    if not ((folder / "vocab.txt").is_file() or (folder / "tokenizer.json").is_file()):
        raise WeightsUnavailable(f"no tokenizer: {folder} has neither vocab.txt nor tokenizer.json; {TOKENIZER_HINT}")
    tokenizer = BertTokenizer.from_pretrained(folder)
    # As BLIP's init_tokenizer: [DEC] becomes the bos token, then [ENC] an extra special token.
    if DEC_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"bos_token": DEC_TOKEN})
    if ENC_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_tokens([ENC_TOKEN], special_tokens=True)
    return tokenizer, str(folder)


def _strict_model(config: Any, state: dict[str, torch.Tensor], source: Path) -> Any:
    """The model with exactly these tensors; any missing, extra or misshapen tensor is an error."""
    from transformers import BlipForImageTextRetrieval

    words = config.text_config.vocab_size
    if config.text_config.bos_token_id is None or words <= max(config.text_config.bos_token_id, 1):
        raise WeightsUnavailable(f"{source}: the tokenizer does not fit the text tower's {words} embeddings")
    with torch.device("meta"):  # no random init of weights that are replaced at once
        model = BlipForImageTextRetrieval(config).eval()
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as err:
        first_line = (str(err).splitlines() or ["shape mismatch"])[-1].strip()
        raise WeightsUnavailable(f"{source} does not fit the inferred BLIP configuration ({first_line})") from None
    return model


def _write(out_dir: Path, model: Any, tokenizer: Any, image_size: int) -> None:
    """Write everything beside ``out_dir``, then rename it into place: all or nothing."""
    from transformers import BlipImageProcessor
    from transformers.utils import logging as hf_logging

    if len(tokenizer) != model.config.text_config.vocab_size:
        raise WeightsUnavailable(
            f"the tokenizer has {len(tokenizer)} ids but the text tower {model.config.text_config.vocab_size} "
            "embeddings; use bert-base-uncased's vocabulary, as BLIP does"
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    partial = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # the library prints nothing; the command reports
    try:
        model.save_pretrained(partial, safe_serialization=True)
        tokenizer.save_pretrained(partial)
        BlipImageProcessor(size={"height": image_size, "width": image_size}).save_pretrained(partial)
        if out_dir.exists():
            out_dir.rmdir()  # empty, checked before
        partial.rename(out_dir)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
        if bars:
            hf_logging.enable_progress_bar()
