"""Tiny random BLIP checkpoints: as ``save_pretrained`` writes one, and as BLIP's and LAVIS's own code saves one.

Both mimic BLIP's vocabulary layout: a BERT vocabulary, then ``[DEC]`` and ``[ENC]`` (two more
embeddings than the plain vocabulary has words), as BLIP's ``init_tokenizer`` builds it.
"""

from __future__ import annotations

from pathlib import Path

import torch
import transformers

from cascade._torchvision_compat import ensure_torchvision_compat  # noqa: E402  (before open_clip/transformers: see cascade/_torchvision_compat.py)

ensure_torchvision_compat()

HIDDEN = 32  # text and vision width
EMBED = 16  # image_text_hidden_size
LAYERS = 2
IMAGE_SIZE = 32
PATCH = 16
VISION_TOKENS = 1 + (IMAGE_SIZE // PATCH) ** 2  # CLS + 4 patches
WORDS = "a an the photo picture of red blue green cat dog car bus man woman on in with sitting road grass".split()


def tiny_vocab() -> list[str]:
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "##s"]


def tiny_config() -> transformers.BlipConfig:
    text = dict(
        vocab_size=len(tiny_vocab()) + 2,  # + [DEC] + [ENC]
        hidden_size=HIDDEN,
        intermediate_size=37,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        max_position_embeddings=64,
        bos_token_id=len(tiny_vocab()),  # [DEC]
        eos_token_id=None,
        pad_token_id=0,
        sep_token_id=3,
    )
    vision = dict(
        hidden_size=HIDDEN,
        intermediate_size=37,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        image_size=IMAGE_SIZE,
        patch_size=PATCH,
    )
    return transformers.BlipConfig(text_config=text, vision_config=vision, image_text_hidden_size=EMBED)


def tiny_tokenizer() -> transformers.BertTokenizer:
    """The tiny vocabulary with ``[DEC]`` as bos and ``[ENC]`` added, as BLIP's init_tokenizer does."""
    tokenizer = transformers.BertTokenizer(vocab={word: i for i, word in enumerate(tiny_vocab())})
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    tokenizer.add_tokens(["[ENC]"], special_tokens=True)
    return tokenizer


def randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Wider random matrices: images and queries then get clearly different scores."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() >= 2:
                parameter.normal_(0.0, 0.2)
            else:  # biases and LayerNorm scales off their 0 and 1, so no step is the identity
                parameter.add_(torch.randn_like(parameter), alpha=0.1)
    return model


def save_tiny_checkpoint(folder: Path, tokenizer_files: str = "tokenizer.json", seed: int = 0) -> Path:
    """A random BlipForImageTextRetrieval, its tokenizer and image processor, as save_pretrained writes them.

    ``tokenizer_files``: ``tokenizer.json`` (with ``[DEC]`` and ``[ENC]``), or ``vocab.txt`` (the bare
    vocabulary, as a plain BERT folder has it: ``[ENC]`` is then implied by the vocabulary size).
    """
    torch.manual_seed(seed)
    model = randomise(transformers.BlipForImageTextRetrieval(tiny_config()).eval(), seed)
    model.save_pretrained(folder, safe_serialization=True)
    vocab = tiny_vocab()
    if tokenizer_files == "tokenizer.json":
        tiny_tokenizer().save_pretrained(folder)
    elif tokenizer_files == "vocab.txt":
        (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    transformers.BlipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}).save_pretrained(folder)
    return folder


# ---------------------------------------------------------------- the original (BLIP / LAVIS) layout

ORIGINAL_VISION = 64  # one 64-wide head, as the converter infers (BLIP's ViTs use 64-wide heads)
ORIGINAL_TEXT = 48  # twelve 4-wide heads: BLIP's text tower always has 12
QUEUE = 8


def original_layout_config() -> transformers.BlipConfig:
    """A tiny config with what the converter assumes for BLIP: 12 text heads, 64-wide vision heads, eps 1e-6."""
    config = tiny_config()
    text, vision = config.text_config.to_dict(), config.vision_config.to_dict()
    text.update(hidden_size=ORIGINAL_TEXT, num_attention_heads=12, encoder_hidden_size=ORIGINAL_VISION,
                layer_norm_eps=1e-12, max_position_embeddings=40)  # fmt: skip
    vision.update(hidden_size=ORIGINAL_VISION, num_attention_heads=1, layer_norm_eps=1e-6, intermediate_size=50)
    return transformers.BlipConfig(text_config=text, vision_config=vision, image_text_hidden_size=EMBED)


# transformers key -> the original one: the inverse of the converter's renames, written out anew here.
_TO_ORIGINAL = (
    (r"^vision_model\.embeddings\.class_embedding$", "visual_encoder.cls_token"),
    (r"^vision_model\.embeddings\.position_embedding$", "visual_encoder.pos_embed"),
    (r"^vision_model\.embeddings\.patch_embedding\.", "visual_encoder.patch_embed.proj."),
    (r"^vision_model\.encoder\.layers\.(\d+)\.self_attn\.qkv\.", r"visual_encoder.blocks.\1.attn.qkv."),
    (r"^vision_model\.encoder\.layers\.(\d+)\.self_attn\.projection\.", r"visual_encoder.blocks.\1.attn.proj."),
    (r"^vision_model\.encoder\.layers\.(\d+)\.layer_norm([12])\.", r"visual_encoder.blocks.\1.norm\2."),
    (r"^vision_model\.encoder\.layers\.(\d+)\.mlp\.", r"visual_encoder.blocks.\1.mlp."),
    (r"^vision_model\.post_layernorm\.", "visual_encoder.norm."),
)


def original_state_dict(model: torch.nn.Module, layout: str = "lavis") -> dict[str, torch.Tensor]:
    """``model``'s weights as BLIP's (``layout="blip"``) or LAVIS's BlipRetrieval ``state_dict()`` holds them."""
    import re

    state = {}
    for key, tensor in model.state_dict().items():
        for pattern, replacement in _TO_ORIGINAL:
            if re.search(pattern, key):
                key = re.sub(pattern, replacement, key)
                break
        state[key] = tensor.clone()
    for key in list(state):  # momentum copies, as copy_params() leaves them (equal to the online weights)
        head, _, rest = key.partition(".")
        if head in ("visual_encoder", "text_encoder", "vision_proj", "text_proj"):
            state[f"{head}_m.{rest}"] = state[key].clone()
    positions = state["text_encoder.embeddings.position_embeddings.weight"].shape[0]
    state["text_encoder.embeddings.position_ids"] = torch.arange(positions).unsqueeze(0)
    state["text_encoder_m.embeddings.position_ids"] = torch.arange(positions).unsqueeze(0)
    state["image_queue"] = torch.nn.functional.normalize(torch.randn(EMBED, QUEUE), dim=0)
    state["text_queue"] = torch.nn.functional.normalize(torch.randn(EMBED, QUEUE), dim=0)
    state["idx_queue"] = torch.full((1, QUEUE), -100)
    state["queue_ptr" if layout == "lavis" else "ptr_queue"] = torch.zeros(1, dtype=torch.long)
    state["temp"] = torch.tensor(0.07)
    return state


def save_original_checkpoint(path: Path, layout: str = "lavis", seed: int = 1) -> torch.nn.Module:
    """A random retrieval model saved as BLIP/LAVIS save theirs (``{"model": ..., "config": ..., "epoch": ...}``).

    Returns the model, in transformers' layout: the reference the converted folder must equal.
    """
    torch.manual_seed(seed)
    model = randomise(transformers.BlipForImageTextRetrieval(original_layout_config()).eval(), seed)
    extra = {"config": {"image_size": IMAGE_SIZE, "k_test": 16}, "epoch": 5}
    if layout == "lavis":
        extra["scaler"] = None
    torch.save({"model": original_state_dict(model, layout), **extra}, path)
    return model
