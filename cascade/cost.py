"""Count the multiply-accumulates (MACs) an encoder spends on one input.

The paper measured image encoding cost with THOP (PyTorch-OpCounter). THOP
hooks a fixed table of module types (``nn.Conv2d``, ``nn.Linear``,
``nn.LayerNorm``, ...) and counts nothing else. That misses a lot in a vision
transformer: ``nn.MultiheadAttention`` (its projections run through
``F.multi_head_attention_forward``, not through its ``out_proj`` module), the
attention matmuls QK^T and AV in every attention implementation, projections
held as bare parameters (``pooled @ self.proj``), and subclasses of
``nn.LayerNorm`` (THOP matches ``type(m)`` exactly). Hence two modes:

- ``"paper"``: THOP as is. Reproduces the paper's Table 1.
- ``"full"``: THOP plus (a) ``custom_ops`` for ``nn.MultiheadAttention``
  (projections and attention matmuls) and for subclasses of any module type
  THOP knows (e.g. open_clip's and timm's ``LayerNorm``), counted like their
  base class; and (b) a ``TorchFunctionMode`` that counts matmul-like calls
  made *outside* modules THOP already counts: ``torch.matmul``/``@``/``bmm``,
  ``F.scaled_dot_product_attention``, bare ``F.linear``. That covers the
  attention of open_clip, timm and transformers' BLIP without listing their
  classes, and never counts a ``Linear`` twice. (``einsum`` is not counted:
  none of those models uses it in a forward pass.)

Conventions (both modes, THOP's): a matmul ``(m, k) @ (k, n)`` is ``m*k*n``
MACs, biases are free, activations, residual adds, softmax and element-wise
scales are free, a normalisation layer costs ``2*numel`` (``4*numel`` with an
affine transform). Full mode therefore never counts less than paper mode.

Models are built on the ``meta`` device: no weights, no memory, and a count
takes a fraction of a second even for ViT-g-14. Results are cached per
(architecture, resolution, mode).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from cascade._torchvision_compat import ensure_torchvision_compat
from cascade.errors import EncoderNotFound

ensure_torchvision_compat()  # open_clip and transformers, imported on use below, import torchvision

MacsMode = Literal["paper", "full"]
MACS_MODES: tuple[str, ...] = ("paper", "full")


def count_macs(module: nn.Module, inputs: tuple, mode: MacsMode = "full") -> int:
    """MACs of one ``module(*inputs)`` forward pass.

    Works on meta-device modules with meta tensors (only shapes matter). Leaves
    no THOP hooks or ``total_ops``/``total_params`` buffers behind.

    Args:
        module: any ``nn.Module``; counted in eval mode, its training flag is restored.
        inputs: positional arguments of ``module.forward``.
        mode: ``"paper"`` (THOP as is) or ``"full"`` (see the module docstring).

    Returns:
        MACs for the whole batch in ``inputs`` (divide by the batch size for one item).
    """
    import thop  # imported on use: it imports the deprecated distutils, and only counting needs it
    from thop.profile import register_hooks

    _check_mode(mode)
    custom_ops = _full_custom_ops(module) if mode == "full" else {}
    extra = _MatmulCounter()
    with _restored(module):
        if mode == "paper":
            total_ops, _ = thop.profile(module, inputs=inputs, verbose=False)
        else:
            with _inside_counted_modules(module, {**register_hooks, **custom_ops}, extra), extra:
                total_ops, _ = thop.profile(module, inputs=inputs, custom_ops=custom_ops, verbose=False)
    return int(round(total_ops)) + extra.macs


@contextmanager
def _restored(module: nn.Module) -> Iterator[None]:
    """Undo what THOP leaves behind, also when the forward pass fails.

    thop.profile removes its hooks and buffers only after a successful pass, and its
    buffers only from the modules it hooked (not MultiheadAttention, LayerNorm
    subclasses or the root); it also resets every module to the root's training flag.
    """
    subs = list(module.modules())
    training = [sub.training for sub in subs]
    hooks = [(set(sub._forward_hooks), set(sub._forward_pre_hooks)) for sub in subs]
    try:
        yield
    finally:
        for sub, flag, (forward, pre) in zip(subs, training, hooks, strict=True):
            sub.training = flag
            for key in set(sub._forward_hooks) - forward:
                del sub._forward_hooks[key]
                sub._forward_hooks_with_kwargs.pop(key, None)
                sub._forward_hooks_always_called.pop(key, None)
            for key in set(sub._forward_pre_hooks) - pre:
                del sub._forward_pre_hooks[key]
                sub._forward_pre_hooks_with_kwargs.pop(key, None)
            sub._buffers.pop("total_ops", None)
            sub._buffers.pop("total_params", None)


def _check_mode(mode: str) -> None:
    if mode not in MACS_MODES:
        raise ValueError(f"MAC counting mode must be one of {list(MACS_MODES)}, got {mode!r}")


# ---------------------------------------------------------------- full mode: custom_ops


def _count_multihead_attention(m: nn.MultiheadAttention, args: tuple, output: Any) -> None:
    """THOP hook: q/k/v/out projections plus QK^T and AV of ``nn.MultiheadAttention``.

    The hook sees positional arguments only; a call with ``key=``/``value=`` as
    keywords is counted as self-attention on the query.
    """
    query = args[0] if args else output[0]
    key = args[1] if len(args) > 1 else query
    seq_dim, batch_dim = (1, 0) if m.batch_first else (0, 1)
    batched = query.dim() == 3
    n_batch = query.shape[batch_dim] if batched else 1
    n_query = query.shape[seq_dim] if batched else query.shape[0]
    n_key = key.shape[seq_dim] if batched else key.shape[0]
    e = m.embed_dim
    projections = n_batch * (n_query * e * e + n_key * m.kdim * e + n_key * m.vdim * e + n_query * e * e)
    attention = 2 * n_batch * n_query * n_key * e  # QK^T and AV, summed over heads
    m.total_ops += torch.DoubleTensor([projections + attention])


def _full_custom_ops(module: nn.Module) -> dict[type, Callable]:
    """Rules THOP lacks: MultiheadAttention, and subclasses of the types it knows."""
    from thop.profile import register_hooks

    ops: dict[type, Callable] = {nn.MultiheadAttention: _count_multihead_attention}
    for sub in module.modules():
        kind = type(sub)
        if kind in register_hooks or kind in ops:
            continue
        # A subclass (open_clip's and timm's LayerNorm, timm's LayerNorm2d) does its
        # parent's arithmetic, so it costs what THOP charges the parent.
        base = next((b for b in kind.__mro__[1:] if b in register_hooks), None)
        if base is not None:
            ops[kind] = register_hooks[base]
    return ops


# ---------------------------------------------------------------- full mode: matmuls outside modules


def _matmul_macs(a: torch.Tensor, out: torch.Tensor) -> int:
    """``a @ b = out``: every output element is a dot product of length ``a.shape[-1]``."""
    return out.numel() * a.shape[-1]


def _sdpa_macs(args: tuple, kwargs: dict) -> int:
    """QK^T and AV of ``scaled_dot_product_attention``: q ``(..., L, E)``, k ``(..., S, E)``, v ``(..., S, Ev)``."""
    names = ("query", "key", "value")
    query, key, value = (args[i] if i < len(args) else kwargs[name] for i, name in enumerate(names))
    n_heads_batch = query.numel() // (query.shape[-2] * query.shape[-1])
    n_query, n_key = query.shape[-2], key.shape[-2]
    return n_heads_batch * n_query * n_key * (query.shape[-1] + value.shape[-1])


def _linear_macs(args: tuple, kwargs: dict, out: torch.Tensor) -> int:
    weight = args[1] if len(args) > 1 else kwargs["weight"]
    return out.numel() * weight.shape[-1]


# Calls whose first operand is the left matrix; ``addmm(input, a, b)`` style calls follow.
_MATMULS = {
    torch.matmul,
    torch.Tensor.matmul,
    torch.Tensor.__matmul__,
    torch.bmm,
    torch.Tensor.bmm,
    torch.mm,
    torch.Tensor.mm,
}
_ADD_MATMULS = {torch.addmm, torch.Tensor.addmm, torch.baddbmm, torch.Tensor.baddbmm}


class _MatmulCounter(TorchFunctionMode):
    """Counts matmul-like torch calls while ``depth == 0`` (outside THOP-counted modules)."""

    def __init__(self) -> None:
        super().__init__()
        self.macs = 0
        self.depth = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.depth == 0:
            self.macs += self._macs_of(func, args, kwargs, out)
        return out

    @staticmethod
    def _macs_of(func, args: tuple, kwargs: dict, out: Any) -> int:
        if func in _MATMULS:
            return _matmul_macs(args[0], out)
        if func in _ADD_MATMULS:
            return _matmul_macs(args[1], out)
        if func is torch.Tensor.__rmatmul__:
            return _matmul_macs(args[1], out)
        if func is torch.nn.functional.scaled_dot_product_attention:
            return _sdpa_macs(args, kwargs)
        if func is torch.nn.functional.linear:
            return _linear_macs(args, kwargs, out)
        return 0


@contextmanager
def _inside_counted_modules(module: nn.Module, rules: dict, counter: _MatmulCounter) -> Iterator[None]:
    """Raise ``counter.depth`` while a module THOP counts runs, so its inner calls are not counted twice."""
    from thop.vision.basic_hooks import zero_ops

    def enter(*_: Any) -> None:
        counter.depth += 1

    def leave(*_: Any) -> None:
        counter.depth -= 1

    handles = []
    for sub in module.modules():
        rule = rules.get(type(sub))
        if rule is None or rule is zero_ops:  # containers (Sequential) must stay transparent
            continue
        handles.append(sub.register_forward_pre_hook(enter))
        handles.append(sub.register_forward_hook(leave))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


# ---------------------------------------------------------------- building on the meta device

# In-place ops that only write values (weight initialisation): on a meta tensor,
# which holds no values, they do nothing but cost time in Python shape checks.
# An allow-list: ops that change a shape (unsqueeze_, t_, resize_) must still run.
_VALUE_ONLY_INPLACE = frozenset(
    "uniform_ normal_ trunc_normal_ constant_ zeros_ ones_ zero_ fill_ eye_ dirac_ orthogonal_ sparse_ "
    "xavier_uniform_ xavier_normal_ kaiming_uniform_ kaiming_normal_ erfinv_ mul_ add_ sub_ div_ clamp_ "
    "clamp_min_ clamp_max_ copy_ exp_ log_ sqrt_ neg_ abs_ masked_fill_ bernoulli_ random_ exponential_".split()
)


class _SkipMetaInit(TorchFunctionMode):
    """Skips value-only in-place ops on meta tensors while a model is built (halves timm's build time)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        target = args[0] if args else None
        if isinstance(target, torch.Tensor) and target.is_meta and getattr(func, "__name__", "") in _VALUE_ONLY_INPLACE:
            return target
        return func(*args, **(kwargs or {}))


@contextmanager
def _on_meta() -> Iterator[None]:
    """Build models and inputs on the meta device, without their (pointless) initialisation."""
    with torch.device("meta"), _SkipMetaInit():
        yield


# ---------------------------------------------------------------- open_clip


def _openclip_config(arch: str) -> dict:
    import open_clip

    config = open_clip.get_model_config(arch)
    if config is None:
        known = ", ".join(sorted(open_clip.list_models())[:8])
        raise EncoderNotFound(f"unknown open_clip architecture {arch!r} (known e.g.: {known}, ...)")
    return config


def openclip_image_size(arch: str) -> int:
    """Native input resolution of an open_clip architecture, in pixels (e.g. 224)."""
    size = _openclip_config(arch)["vision_cfg"].get("image_size", 224)
    return int(size[0] if isinstance(size, (list, tuple)) else size)


def openclip_image_macs(arch: str, mode: MacsMode = "full") -> int:
    """MACs to encode one image with the image tower of ``arch`` at its native resolution."""
    _check_mode(mode)
    return _openclip_image_macs(arch, openclip_image_size(arch), mode)


@functools.cache  # an lru_cache without a size bound: a handful of architectures
def _openclip_image_macs(arch: str, image_size: int, mode: MacsMode) -> int:
    from open_clip.model import _build_vision_tower

    config = _openclip_config(arch)
    # The private builder makes the image tower alone (the text tower would double
    # the time); it is the call open_clip's CLIP.__init__ makes, pinned to 3.3.0.
    with _on_meta():
        tower = _build_vision_tower(config["embed_dim"], config["vision_cfg"], config.get("quick_gelu", False))
        pixels = torch.empty(1, 3, image_size, image_size)
    return count_macs(tower, (pixels,), mode)


def openclip_text_macs(arch: str, mode: MacsMode = "full") -> int:
    """MACs to encode one query (``context_length`` tokens) with the text tower of ``arch``."""
    _check_mode(mode)
    return _openclip_text_macs(arch, mode)


@functools.cache  # an lru_cache without a size bound: a handful of architectures
def _openclip_text_macs(arch: str, mode: MacsMode) -> int:
    from open_clip.model import _build_text_tower

    config = _openclip_config(arch)
    with _on_meta():
        tower = _build_text_tower(config["embed_dim"], config["text_cfg"], config.get("quick_gelu", False))
        tokens = torch.zeros(1, config["text_cfg"].get("context_length", 77), dtype=torch.long)
    return count_macs(tower, (tokens,), mode)


# ---------------------------------------------------------------- BLIP (transformers)

# The ViT-B/16 and ViT-L/16 vision towers of Salesforce's BLIP checkpoints
# (blip-itm-base-coco / blip-itm-large-coco), as data.
_BLIP_VISION = {
    "base": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12},
    "large": {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16},
}


def blip_vision_macs(variant: str, mode: MacsMode = "full", image_size: int = 384) -> int:
    """MACs to encode one image with BLIP's vision tower (``"base"`` or ``"large"``)."""
    _check_mode(mode)
    if variant not in _BLIP_VISION:
        raise EncoderNotFound(f"unknown BLIP vision variant {variant!r}; known: {sorted(_BLIP_VISION)}")
    return _blip_vision_macs(variant, mode, image_size)


@functools.cache  # an lru_cache without a size bound: a handful of architectures
def _blip_vision_macs(variant: str, mode: MacsMode, image_size: int) -> int:
    from transformers import BlipVisionConfig
    from transformers.models.blip.modeling_blip import BlipVisionModel

    config = BlipVisionConfig(**_BLIP_VISION[variant], image_size=image_size, patch_size=16)
    with _on_meta():
        tower = BlipVisionModel(config)
        pixels = torch.empty(1, 3, image_size, image_size)
    return count_macs(tower, (pixels,), mode)
