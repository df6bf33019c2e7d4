"""Weights files of the shapes family: ``shapes_<model>.safetensors``, each recording its architecture and vocabulary.

A file that does not match the code is refused, not half loaded; reads are
cached by content digest, so levels share one loaded text tower.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from torch import nn

from cascade.encoders.shapes.networks import CROSS, CROSS_TOWER, IMAGE_TOWERS, TEXT_TOWER, TextTower, Tokeniser, build
from cascade.errors import WeightsUnavailable

REGENERATE_HINT = "regenerate them with `python -m tools.train_shapes`"
_FORMAT_VERSION = "1"


def weights_path(model: str, weights_dir: Path) -> Path:
    """Where ``model``'s file (``text`` or one of MODELS) lives in ``weights_dir``."""
    return Path(weights_dir) / f"shapes_{model}.safetensors"


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

    metadata = {
        "format": _FORMAT_VERSION,
        "model": model,
        "architecture": _architecture(model),
        "vocab": json.dumps(list(vocab)),
        **{k: json.dumps(v) for k, v in (extra or {}).items()},
    }
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


def read_module(model: str, weights_dir: Path) -> nn.Module:
    """The network in ``shapes_<model>.safetensors`` (``text`` or one of MODELS), e.g. to train on from it."""
    return read_file(model, weights_dir)[0]


def read_file(model: str, weights_dir: Path) -> tuple[nn.Module, str]:
    """``model``'s network and the 10-hex-digit digest of its file (which encoder ids are made of)."""
    path = weights_path(model, weights_dir)
    digest = _digest(path)
    return _read(model, path, digest)[0], digest


def load_text_tower(weights_dir: Path) -> tuple[TextTower, Tokeniser, str]:
    """The shared text tower, the tokeniser of the vocabulary it was trained with, and its file's digest."""
    path = weights_path("text", weights_dir)
    digest = _digest(path)
    text, vocab = _read("text", path, digest)
    return text, Tokeniser(vocab, TEXT_TOWER.max_tokens), digest


def joint_digest(model_digest: str, text_digest: str) -> str:
    """An encoder's weights digest: its own file's and the text tower's together."""
    # image features only mean something next to the text tower they were trained with
    return hashlib.sha256(f"{model_digest}:{text_digest}".encode()).hexdigest()[:10]
