"""A tiny random BLIP checkpoint, as ``save_pretrained`` writes one: for tests that need BLIP without weights."""

from __future__ import annotations

from pathlib import Path

import torch
import transformers

import cascade  # noqa: F401  (torchvision shim before transformers' BLIP)

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
        vocab_size=len(tiny_vocab()),
        hidden_size=HIDDEN,
        intermediate_size=37,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        max_position_embeddings=64,
        bos_token_id=None,
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


def save_tiny_checkpoint(folder: Path, tokenizer_files: str = "tokenizer.json") -> Path:
    """A random BlipForImageTextRetrieval, its tokenizer and image processor, as save_pretrained writes them."""
    torch.manual_seed(0)
    model = transformers.BlipForImageTextRetrieval(tiny_config()).eval()
    with torch.no_grad():  # wider random matrices: images and queries then get clearly different scores
        for parameter in model.parameters():
            if parameter.dim() >= 2:
                parameter.normal_(0.0, 0.2)
            else:  # biases and LayerNorm scales off their 0 and 1, so no step is the identity
                parameter.add_(torch.randn_like(parameter), alpha=0.1)
    model.save_pretrained(folder, safe_serialization=True)
    vocab = tiny_vocab()
    if tokenizer_files == "tokenizer.json":
        transformers.BertTokenizer(vocab={word: i for i, word in enumerate(vocab)}).save_pretrained(folder)
    elif tokenizer_files == "vocab.txt":
        (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    transformers.BlipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}).save_pretrained(folder)
    return folder
