"""Fail fast when model weights are neither in the local cache nor reachable.

huggingface_hub retries a failed request five times with back-off, per file and
per fallback file name: offline, one missing checkpoint costs ~50 s before the
real error. We check first, and when the hub is unreachable raise one clear
line that says how to supply the file. With the network, the backends' real
loading code runs untouched.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence

from cascade.errors import WeightsUnavailable

_HUB_HOST = "huggingface.co"
_PROBE_TIMEOUT_S = 3.0


def hub_offline() -> bool:
    """True when the user asked for offline mode (``HF_HUB_OFFLINE``)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def hub_reachable() -> bool:
    """A quick DNS + TCP probe of the hub (a few seconds at most, instant when DNS fails)."""
    if hub_offline():
        return False
    endpoint = os.environ.get("HF_ENDPOINT", f"https://{_HUB_HOST}")
    host = endpoint.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    try:
        with socket.create_connection((host, 443), timeout=_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def cached_hub_file(repo_id: str, filenames: Sequence[str]) -> str | None:
    """Path of the first of ``filenames`` already in the local hub cache, else None."""
    from huggingface_hub import try_to_load_from_cache

    for filename in filenames:
        path = try_to_load_from_cache(repo_id=repo_id, filename=filename)
        if isinstance(path, str):
            return path
    return None


def require_hub_files(repo_id: str, filenames: Sequence[str], how_to_supply: str) -> None:
    """Raise WeightsUnavailable at once unless a file is cached locally or the hub answers.

    Args:
        repo_id: hub repository, e.g. ``laion/CLIP-ViT-B-16-laion2B-s34B-b88K``.
        filenames: acceptable weight files, any one of which is enough.
        how_to_supply: the end of the error line, telling the user how to provide the weights offline.
    """
    if cached_hub_file(repo_id, filenames) is not None:
        return
    if hub_reachable():
        return
    reason = "HF_HUB_OFFLINE is set" if hub_offline() else f"{_HUB_HOST} is unreachable"
    raise WeightsUnavailable(f"weights {repo_id} are not in the local cache and {reason}; {how_to_supply}")
