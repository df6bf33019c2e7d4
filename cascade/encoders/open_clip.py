"""OpenCLIP bi-encoder levels: ``openclip:ARCH@WEIGHTS``.

WEIGHTS is one of:
- a pretrained tag of ``open_clip.list_pretrained()`` (``ViT-B-16@laion2b_s34b_b88k``),
  downloaded from the hub by open_clip's own loading code and cached there;
- a local checkpoint file (``ViT-B-16@/models/open_clip_model.safetensors``;
  ``.bin``/``.pt`` files are read with ``torch.load(weights_only=True)``);
- ``random``: seeded random init, for tests and cost studies.
Without ``@WEIGHTS`` the architecture's first pretrained tag is used.

Ids carry what identifies the weights, so the feature cache never serves another file's rows:
``@file-<digest>`` for a file, ``@random0`` for the seeded init, and for a tag the hub snapshot it
was read from (``ViT-B-16@laion2b_s34b_b88k#rev-<commit>``) or, for a tag open_clip fetches by URL,
a digest of that URL (``#url-<digest>``; open_clip checks the sha256 such URLs carry).

Beside open_clip's own architectures, the tiny test architectures in
``openclip_configs/`` (``tiny-vit-s``, ``tiny-vit-m``, ``tiny-vit-l``) are
registered on first use: architectures are data, as in open_clip itself.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import logging
import os
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cascade import cost
from cascade._torchvision_compat import ensure_torchvision_compat
from cascade.cost import MacsMode
from cascade.encoders import hub, not_found
from cascade.encoders.base import BiEncoder, l2_normalise
from cascade.errors import ConfigError, EncoderNotFound, WeightsUnavailable
from cascade.paths import file_digest

ensure_torchvision_compat()  # before open_clip (imported on use below) imports torchvision

_CONFIG_DIR = Path(__file__).resolve().parent / "openclip_configs"
_RANDOM = "random"
_RANDOM_SEED = 0


@functools.cache
def _open_clip():
    """Import open_clip once, registering the project's extra architectures."""
    import open_clip

    open_clip.add_model_config(_CONFIG_DIR)
    return open_clip


def known_names() -> list[str]:
    open_clip = _open_clip()
    names = [f"openclip:{arch}@{tag}" for arch, tag in open_clip.list_pretrained()]
    names += [f"openclip:{path.stem}@{_RANDOM}" for path in sorted(_CONFIG_DIR.glob("*.json"))]
    return names


def is_cross(spec: str) -> bool:
    """OpenCLIP models are bi-encoders only."""
    return False


def count_image_macs(spec: str, mode: MacsMode, image_size: int) -> int:
    """MACs of ``ARCH[@WEIGHTS]``'s image tower on one image, counted on its architecture (weights play no part).

    Raises:
        EncoderNotFound: unknown architecture.
        ConfigError: ``image_size`` is not the architecture's own (its position embedding fixes it).
    """
    _open_clip()  # registers the project's architectures
    arch = spec.strip().partition("@")[0]
    native = cost.openclip_image_size(arch)
    if image_size != native:
        raise ConfigError(f"{arch} runs at {native} px, not {image_size} px")
    return cost.openclip_image_macs(arch, mode)


def create(spec: str) -> OpenClipEncoder:
    """Build the encoder for ``ARCH[@WEIGHTS]`` (see the module docstring)."""
    open_clip = _open_clip()
    arch, _, weights = spec.partition("@")
    if arch not in open_clip.list_models():
        raise not_found(f"openclip:{spec}", "openclip")
    weights = weights or _default_tag(arch)
    if weights == _RANDOM:
        with torch.random.fork_rng(devices=[]), _quiet_logging():  # open_clip warns "initialized randomly"
            torch.manual_seed(_RANDOM_SEED)
            model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=None)
        weights_id = f"{_RANDOM}{_RANDOM_SEED}"
    elif _looks_like_path(weights):
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsUnavailable(f"checkpoint file not found: {path}")
        model, _, preprocess = _load(open_clip, arch, str(path))
        weights_id = f"file-{file_digest(path, hex_digits=12)}"
    else:
        repo_id, filenames = _require_pretrained(open_clip, arch, weights)
        model, _, preprocess = _load(open_clip, arch, weights)
        weights_id = f"{weights}#{_tag_revision(open_clip, arch, weights, repo_id, filenames)}"
    return OpenClipEncoder(
        arch=arch,
        weights_id=weights_id,
        model=model.eval(),
        preprocess_fn=preprocess,
        tokenizer=open_clip.get_tokenizer(arch),
    )


class OpenClipEncoder(BiEncoder):
    """One OpenCLIP model as a cascade level (its own text tower)."""

    def __init__(self, arch: str, weights_id: str, model: torch.nn.Module, preprocess_fn, tokenizer) -> None:
        self.id = f"openclip:{arch}@{weights_id}"
        self.name = arch
        self.text_tower_id = self.id  # OpenCLIP models each carry their own text tower
        self._model = model
        self._preprocess = preprocess_fn
        self._tokenizer = tokenizer
        self.image_size = cost.openclip_image_size(arch)
        self.image_macs = cost.openclip_image_macs(arch, mode="full")
        self.text_macs = cost.openclip_text_macs(arch, mode="full")
        self.dim = int(model.text_projection.shape[-1]) if hasattr(model, "text_projection") else None
        if self.dim is None:
            with torch.inference_mode():
                self.dim = int(model.encode_text(tokenizer(["a"])).shape[-1])

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self._preprocess(image)

    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            return l2_normalise(self._model.encode_image(pixels))

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        with torch.inference_mode():
            return l2_normalise(self._model.encode_text(self._tokenizer(list(texts))))


def _default_tag(arch: str) -> str:
    tags = _open_clip().list_pretrained_tags_by_model(arch)
    if not tags:
        raise EncoderNotFound(
            f"openclip:{arch} has no pretrained weights; use openclip:{arch}@random or @/path/to/file"
        )
    return tags[0]


def _looks_like_path(weights: str) -> bool:
    return "/" in weights or weights.endswith((".safetensors", ".bin", ".pt", ".pth"))


def _require_pretrained(open_clip, arch: str, tag: str) -> tuple[str, list[str]]:
    """Unknown tag -> EncoderNotFound; hub unreachable and file not cached -> WeightsUnavailable, at once.

    Returns:
        The hub repository and the weight file names it may hold (``("", [])`` for a URL download).
    """
    if not open_clip.is_pretrained_cfg(arch, tag):
        raise not_found(f"openclip:{arch}@{tag}", "openclip")
    hf_hub = open_clip.get_pretrained_cfg(arch, tag).get("hf_hub") or ""
    if not hf_hub:
        return "", []  # a plain URL download: open_clip fetches it itself
    # Same split as open_clip.download_pretrained: "org/repo/" or "org/repo/file.bin".
    repo_id, filename = os.path.split(hf_hub)
    filename = filename or "open_clip_pytorch_model.bin"
    filenames = [filename.rsplit(".", 1)[0] + ".safetensors", filename, "open_clip_model.safetensors"]
    how = (
        f"download it where the hub is reachable, or pass a file: openclip:{arch}@/path/to/open_clip_model.safetensors"
    )
    hub.require_hub_files(repo_id, filenames, how)
    return repo_id, filenames


def _tag_revision(open_clip, arch: str, tag: str, repo_id: str, filenames: list[str]) -> str:
    """``rev-<commit>`` of the hub snapshot the tag's weights were read from, else ``url-<digest>``."""
    if repo_id:
        path = hub.cached_hub_file(repo_id, filenames)
        revision = hub.revision_of(path) if path else None
        if revision:
            return f"rev-{revision}"
    url = open_clip.get_pretrained_cfg(arch, tag).get("url") or f"{repo_id}/{tag}"
    return f"url-{hashlib.blake2b(url.encode(), digest_size=16).hexdigest()[: hub.REVISION_DIGITS]}"


def _load(open_clip, arch: str, pretrained: str):
    """``create_model_and_transforms`` with a checkpoint, which open_clip loads with ``strict=True``.

    Every parameter and persistent buffer is then read from the file, so the random init before it
    is skipped (``_no_weight_init``): a ViT-B-16 builds in about 0.4 s instead of 1.3 s on one core,
    and the larger towers save more.
    """
    try:
        with _no_weight_init():
            return open_clip.create_model_and_transforms(arch, pretrained=pretrained)
    except pickle.UnpicklingError as err:
        # torch.load(weights_only=True) refused to run code: say so, without torch's advice to disable the check
        raise WeightsUnavailable(
            f"openclip:{arch}@{pretrained} is not a plain tensor checkpoint and was not loaded "
            "(only tensors are read, never pickled code); convert it to .safetensors"
        ) from err
    except Exception as err:  # corrupt or foreign files raise many kinds (SafetensorError, KeyError, ...)
        first_line = (str(err).splitlines() or [type(err).__name__])[0]
        raise WeightsUnavailable(f"could not load openclip:{arch}@{pretrained}: {first_line}") from err


@contextlib.contextmanager
def _quiet_logging():
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


# torch's in-place initialisers, and the modules that bind them by name at import (nn.MultiheadAttention's)
_INIT_FUNCTIONS = (
    "uniform_",
    "normal_",
    "trunc_normal_",
    "constant_",
    "ones_",
    "zeros_",
    "eye_",
    "dirac_",
    "xavier_uniform_",
    "xavier_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "orthogonal_",
    "sparse_",
)
_INIT_MODULES = ("torch.nn.init", "torch.nn.modules.activation", "torch.nn.modules.transformer")


@contextlib.contextmanager
def _no_weight_init():
    """torch's initialisers as no-ops while a model is built only to be overwritten by a checkpoint.

    transformers' ``from_pretrained`` does the same (``no_init_weights``). It is process-wide:
    ``cascade.encoders.create_encoder`` builds one encoder at a time, so no seeded random init runs
    meanwhile.
    """
    patched = []
    for module in map(importlib.import_module, _INIT_MODULES):
        for name in _INIT_FUNCTIONS:
            if hasattr(module, name):
                patched.append((module, name, getattr(module, name)))
                setattr(module, name, _leave_as_is)
    try:
        yield
    finally:
        for module, name, function in patched:
            setattr(module, name, function)


def _leave_as_is(tensor, *args, **kwargs):
    return tensor
