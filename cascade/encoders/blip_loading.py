"""Loading BLIP checkpoints: a local folder or a hub id -> ``BlipCheckpoint``, with what identifies its weights.

A folder needs ``config.json``, weights and tokenizer files (``tokenizer.json`` or ``vocab.txt``);
``preprocessor_config.json`` is optional (BLIP's defaults at the config's image size). Weights are
``model.safetensors`` (or an index and shards), or, where a folder has none, ``pytorch_model.bin``
read with ``torch.load(weights_only=True)`` (transformers' own safe path): tensors only, pickled
code is never run. A hub id is looked up in the Hugging Face cache first and downloaded only if
the hub is enabled and reachable; otherwise loading fails at once with ``WeightsUnavailable``.

Weights ids key the feature cache: a hub snapshot is ``rev-<commit>``, a folder ``file-<digest>`` of
its weights, config, preprocessor and tokenizer files, so replaced weights never meet old rows.
"""

from __future__ import annotations

import functools
import hashlib
import pickle
from pathlib import Path
from typing import Any

import torch

from cascade._torchvision_compat import ensure_torchvision_compat
from cascade.encoders import hub
from cascade.encoders.blip_model import BlipCheckpoint, enc_token_id
from cascade.errors import WeightsUnavailable
from cascade.paths import file_digest

ensure_torchvision_compat()  # before transformers' BLIP (imported on use below) imports torchvision

SAFETENSORS_FILES = ("model.safetensors", "model.safetensors.index.json")
PICKLED_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")
# Small files that change what a folder computes, digested with the weights.
_DESCRIPTIVE_FILES = (
    "config.json",
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)
_HUB_COMMON = list(_DESCRIPTIVE_FILES)
# Safetensors first; the pickled weights are fetched only for a repository that has no safetensors.
_HUB_SAFETENSORS = [*_HUB_COMMON, "model.safetensors", "model.safetensors.index.json", "model-*.safetensors"]
_HUB_PICKLED = [*_HUB_COMMON, "pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*.bin"]
SUPPLY_HINT = (
    "supply it as a local directory with config.json, model.safetensors and tokenizer files "
    "(tokenizer.json or vocab.txt) and use blip:/path/to/dir"
)


@functools.lru_cache(maxsize=4)
def load_checkpoint(source: str, display_name: str = "") -> BlipCheckpoint:
    """Load a checkpoint from a hub id or an absolute directory; ``blip:X`` and ``blip:X+itm`` share it.

    Raises:
        EncoderNotFound: ``source`` is not a valid hub id.
        WeightsUnavailable: not local and not downloadable, or a file is missing, or the weights
            lack a part of ``BlipForImageTextRetrieval`` (e.g. a captioning checkpoint: no ITM head).
    """
    if Path(source).is_dir():
        folder = Path(source)
        weights_id = f"file-{folder_digest(folder)}"
    else:
        folder = _hub_snapshot(source)
        weights_id = f"rev-{hub.revision_of(folder) or folder_digest(folder)}"
    missing = missing_files(folder)
    if missing:
        raise WeightsUnavailable(f"BLIP checkpoint {source} lacks {', '.join(missing)} in {folder}; {SUPPLY_HINT}")
    # Imported here, after the files are known to exist: a missing checkpoint fails in milliseconds.
    from transformers import BertTokenizer, BlipImageProcessor

    model = _read_model(folder, source)
    tokenizer = BertTokenizer.from_pretrained(folder)
    check_tokenizer(tokenizer, model.config, source)
    if (folder / "preprocessor_config.json").is_file():
        image_processor = BlipImageProcessor.from_pretrained(folder)
    else:
        size = model.config.vision_config.image_size
        image_processor = BlipImageProcessor(size={"height": size, "width": size})
    if torch.cuda.is_available():
        model = model.to("cuda")
    return BlipCheckpoint(
        source=source,
        weights_id=weights_id,
        model=model.eval(),
        tokenizer=tokenizer,
        image_processor=image_processor,
        enc_token_id=enc_token_id(tokenizer, model.config),
        display_name=display_name or f"BLIP {Path(source).name}",
    )


def _read_model(folder: Path, source: str) -> Any:
    from transformers import BlipForImageTextRetrieval

    safetensors = any((folder / name).is_file() for name in SAFETENSORS_FILES)
    try:
        model, info = BlipForImageTextRetrieval.from_pretrained(
            folder, use_safetensors=safetensors, weights_only=True, output_loading_info=True
        )
    except pickle.UnpicklingError as err:
        # torch.load(weights_only=True) refused to run code: say so, without torch's advice to disable the check
        raise WeightsUnavailable(
            f"BLIP checkpoint {source}: pytorch_model.bin is not a plain tensor file and was not loaded "
            "(only tensors are read, never pickled code); convert it to model.safetensors"
        ) from err
    except Exception as err:  # a corrupt or foreign file: transformers, torch and safetensors raise many kinds
        first_line = (str(err).splitlines() or [type(err).__name__])[0]
        raise WeightsUnavailable(f"BLIP checkpoint {source} could not be read ({first_line}); {SUPPLY_HINT}") from err
    if info["missing_keys"]:
        names = ", ".join(sorted(info["missing_keys"])[:3])
        raise WeightsUnavailable(
            f"BLIP checkpoint {source} is not an image-text retrieval model: no weights for {names}"
        )
    return model


def missing_files(folder: Path) -> list[str]:
    """What a checkpoint folder lacks, as names for the user; empty when complete."""
    missing = []
    if not (folder / "config.json").is_file():
        missing.append("config.json")
    if not any((folder / name).is_file() for name in (*SAFETENSORS_FILES, *PICKLED_FILES)):
        missing.append("model.safetensors (or pytorch_model.bin)")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        missing.append("tokenizer.json or vocab.txt")
    return missing


def folder_digest(folder: Path) -> str:
    """One digest of the files that decide what a checkpoint folder computes (weights included)."""
    names = [*SAFETENSORS_FILES, *PICKLED_FILES, *_DESCRIPTIVE_FILES]
    names += sorted(p.name for p in folder.glob("model-*.safetensors"))
    names += sorted(p.name for p in folder.glob("pytorch_model-*.bin"))
    digest = hashlib.blake2b(digest_size=16)
    for name in dict.fromkeys(names):  # ordered, without repeats
        path = folder / name
        if path.is_file():
            digest.update(f"{name}={file_digest(path)};".encode())
    return digest.hexdigest()[: hub.REVISION_DIGITS]


def check_tokenizer(tokenizer: Any, config: Any, source: str) -> None:
    """Refuse a tokenizer without a vocabulary, or with ids past the text tower's embeddings."""
    # transformers 5's BertTokenizer builds a 5-token vocabulary when it finds none: catch that
    # here rather than score every query as [UNK].
    vocab = tokenizer.get_vocab()
    if len(vocab) <= len(set(tokenizer.all_special_tokens)):
        raise WeightsUnavailable(f"BLIP checkpoint {source}: tokenizer files hold no vocabulary; {SUPPLY_HINT}")
    if max(vocab.values()) >= config.text_config.vocab_size:
        raise WeightsUnavailable(
            f"BLIP checkpoint {source}: tokenizer has ids up to {max(vocab.values())} but the text tower "
            f"only {config.text_config.vocab_size} embeddings; tokenizer and weights do not belong together"
        )


def _hub_snapshot(repo_id: str) -> Path:
    """The local folder of ``repo_id``: the HF cache if complete, else a download. Fails fast when offline."""
    from cascade.encoders import not_found

    what = f"BLIP checkpoint {repo_id}"
    try:
        folder = hub.snapshot_folder(repo_id, _HUB_SAFETENSORS, _is_complete, what, SUPPLY_HINT)
        if _is_complete(folder):
            return folder
        return hub.snapshot_folder(repo_id, _HUB_PICKLED, _is_complete, what, SUPPLY_HINT)
    except ValueError:
        raise not_found(f"blip:{repo_id}", "blip") from None


def _is_complete(folder: Path) -> bool:
    return not missing_files(folder)
