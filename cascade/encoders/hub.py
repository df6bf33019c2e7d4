"""The one place that talks to the Hugging Face hub: fail fast offline, and name the weights' revision.

huggingface_hub retries a failed request five times with back-off, per file and
per fallback file name: offline, one missing checkpoint costs ~50 s before the
real error. We check first, and when the hub is unreachable raise one clear
line that says how to supply the file. With the network, the backends' real
loading code runs untouched.

Feature caches are keyed by encoder ids, so an id must change when the weights
do: ``revision_of`` reads the commit a cached hub file or snapshot belongs to.
"""

from __future__ import annotations

import os
import socket
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path

from cascade.errors import WeightsUnavailable

_PROBE_TIMEOUT_S = 3.0
_TRUE = {"1", "true", "yes", "on"}
REVISION_DIGITS = 12  # of the 40-digit commit hash: enough to tell snapshots apart, short enough to read


def hub_offline() -> bool:
    """True when the user asked for offline mode (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``).

    The environment is read now, not only at huggingface_hub's import, so setting it later counts.
    """
    from huggingface_hub import constants

    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return bool(constants.HF_HUB_OFFLINE) or any(flag.strip().lower() in _TRUE for flag in flags)


def hub_endpoint() -> str:
    """The hub's base URL as huggingface_hub will use it (``HF_ENDPOINT`` or huggingface.co)."""
    from huggingface_hub import constants

    return constants.ENDPOINT


def hub_reachable() -> bool:
    """A quick DNS + TCP probe of the hub (a few seconds at most, instant when DNS fails)."""
    if hub_offline():
        return False
    url = urllib.parse.urlparse(hub_endpoint())
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=_PROBE_TIMEOUT_S):
            return True
    except (OSError, TypeError):  # TypeError: an endpoint without a host name
        return False


def unavailable_reason() -> str:
    """Why the hub cannot be used now, as the middle of an error line."""
    return "downloads are off (HF_HUB_OFFLINE)" if hub_offline() else f"{hub_endpoint()} is unreachable"


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
    raise WeightsUnavailable(
        f"weights {repo_id} are not in the local cache and {unavailable_reason()}; {how_to_supply}"
    )


def snapshot_folder(
    repo_id: str, patterns: Sequence[str], is_complete: Callable[[Path], bool], what: str, how_to_supply: str
) -> Path:
    """The local snapshot of ``repo_id``: the cache when ``is_complete`` says so, else a download.

    Args:
        repo_id: hub repository, e.g. ``Salesforce/blip-itm-base-coco``.
        patterns: the files to fetch (``allow_patterns`` of ``snapshot_download``).
        is_complete: whether a cached folder holds everything the caller needs.
        what: the start of an error line, e.g. ``BLIP checkpoint Salesforce/blip-itm-base-coco``.
        how_to_supply: the end of an error line.

    Raises:
        ValueError: ``repo_id`` is not a valid hub id (the caller turns it into EncoderNotFound).
        WeightsUnavailable: not (completely) cached and the hub is off or unreachable, or the download failed.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError

    try:
        cached = Path(snapshot_download(repo_id, allow_patterns=list(patterns), local_files_only=True))
        if is_complete(cached):
            return cached
    except LocalEntryNotFoundError:
        pass
    except HFValidationError as err:
        raise ValueError(str(err)) from None
    if hub_offline() or not hub_reachable():
        raise WeightsUnavailable(
            f"{what} is not (completely) in the Hugging Face cache and {unavailable_reason()}; {how_to_supply}"
        )
    try:
        return Path(snapshot_download(repo_id, allow_patterns=list(patterns)))
    except (HfHubHTTPError, OSError) as err:
        raise WeightsUnavailable(f"{what} could not be downloaded ({err}); {how_to_supply}") from err


def revision_of(path: str | os.PathLike) -> str | None:
    """The commit (first ``REVISION_DIGITS`` hex digits) a file or folder in the hub cache belongs to.

    The cache lays files out as ``models--org--name/snapshots/<commit>/<file>``; a path outside
    such a layout (a local folder) has no revision, and the caller digests its files instead.
    """
    path = Path(path)
    for parent in (path, *path.parents):
        if parent.parent.name == "snapshots" and parent.parent.parent.name.startswith("models--"):
            return parent.name[:REVISION_DIGITS]
    return None


def dataset_file(repo_id: str, filename: str, how_to_supply: str) -> Path:
    """One file of a hub *dataset* repository: the local cache first, else a download.

    Args:
        repo_id: e.g. ``clip-benchmark/wds_flickr30k``.
        filename: path inside the repository, e.g. ``test/0.tar``.
        how_to_supply: the end of an error line.

    Raises:
        WeightsUnavailable: not cached and the hub is off or unreachable, the repository or file does not
            exist, or the download failed (one line naming the repository).
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    try:
        return Path(hf_hub_download(repo_id, filename, repo_type="dataset", local_files_only=True))
    except (LocalEntryNotFoundError, EntryNotFoundError):
        pass
    except HFValidationError as err:
        raise WeightsUnavailable(f"{repo_id!r} is not a hub dataset id ({err})") from None
    if hub_offline() or not hub_reachable():
        raise WeightsUnavailable(
            f"dataset {repo_id} ({filename}) is not in the Hugging Face cache and {unavailable_reason()}; "
            f"{how_to_supply}"
        )
    try:
        return Path(hf_hub_download(repo_id, filename, repo_type="dataset"))
    except RepositoryNotFoundError:
        raise WeightsUnavailable(f"dataset {repo_id} does not exist on {hub_endpoint()}") from None
    except EntryNotFoundError:
        raise WeightsUnavailable(f"dataset {repo_id} has no file {filename}") from None
    except (HfHubHTTPError, OSError) as err:
        raise WeightsUnavailable(f"dataset {repo_id} ({filename}) could not be downloaded ({err})") from err
