"""What a visitor may store on the server: one file's size, a session's count and total, and for how long.

Gradio stores an upload (``POST /gradio_api/upload``) before any handler sees it, so the first bound is
Gradio's own: ``MAX_FILE_BYTES`` is ``launch(max_file_size=...)``, which its multipart parser enforces
while the bytes arrive (HTTP 413, the partial file deleted; the browser refuses before sending). The
handlers that receive files (the Search tab's images, the Cost tab's query log) then count what each
session has stored (``Ledger``, in ``gr.State``) and refuse past its ``UploadLimit``, deleting the
refused files. ``DELETE_CACHE`` has Gradio delete what is older than an hour, accepted or not.

The upload route itself belongs to no session: a client that posts without ever handing the files to
a handler is bounded by the first and last of these, and by ``UploadQuota``, which refuses every upload
while Gradio's folder holds ``MAX_STORED_BYTES``: a loop of posts then fills that, never the disk.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
from gradio.utils import get_upload_folder
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from analysis import query_logs
from cascade_ui.common import LOG

MIB = 2**20
MAX_PHOTO_BYTES = 20 * MIB  # a phone's or a camera's JPEG is a few MiB; a large PNG scan stays under 20
MAX_FILE_BYTES = max(MAX_PHOTO_BYTES, query_logs.MAX_FILE_BYTES)  # Gradio's max_file_size: one file, any kind
DELETE_CACHE = (15 * 60, 60 * 60)  # Gradio's delete_cache: every 15 minutes, files stored over an hour ago
MAX_STORED_BYTES = 4 * 1024 * MIB  # every visitor's uploads together, until DELETE_CACHE removes them
UPLOAD_ROUTE = "/gradio_api/upload"


@dataclass(frozen=True)
class UploadLimit:
    """How much one session may store through one kind of upload.

    Attributes:
        what: what the files are, for the message (``images``).
        files: the most files a session may store.
        total_bytes: the most bytes they may hold together.
    """

    what: str
    files: int
    total_bytes: int


# A visitor's images make a gallery each of its searches embeds (a CPU embeds a few dozen a second at level 1).
IMAGES = UploadLimit("images", files=100, total_bytes=200 * MIB)
QUERY_LOGS = UploadLimit("query logs", files=5, total_bytes=5 * query_logs.MAX_FILE_BYTES)
VISITOR_BYTES = IMAGES.total_bytes + QUERY_LOGS.total_bytes  # the most one session stores through the page


@dataclass(frozen=True)
class Ledger:
    """What one session has stored through one kind of upload: ``(path, bytes)`` in the order received.

    Files stay counted after the visitor removes them from the page: they stay on disk until Gradio's
    ``DELETE_CACHE`` removes them.
    """

    stored: tuple[tuple[str, int], ...] = ()

    @property
    def files(self) -> int:
        return len(self.stored)

    @property
    def total_bytes(self) -> int:
        return sum(size for _, size in self.stored)


@dataclass(frozen=True)
class Admission:
    """What ``admit`` decided: the files kept (in the order given), the session's new ledger, what it refused
    (and deleted) and one line saying so ("" when nothing was refused)."""

    kept: tuple[str, ...]
    ledger: Ledger
    refused: tuple[str, ...]
    message: str


def admit(paths: Sequence[str], ledger: Ledger, limit: UploadLimit) -> Admission:
    """Keep the files ``paths`` names while the session stays within ``limit``; delete the rest from Gradio's
    upload folder. A file the ledger holds already is kept without being counted again."""
    known = dict(ledger.stored)
    stored, kept, refused = list(ledger.stored), [], []
    total = ledger.total_bytes
    for path in map(str, paths):
        if path in known:
            kept.append(path)
            continue
        size = _size(path)
        if len(stored) + 1 > limit.files or total + size > limit.total_bytes:
            refused.append(path)
            continue
        known[path] = size
        stored.append((path, size))
        total += size
        kept.append(path)
    for path in refused:
        discard(path)
    new = Ledger(tuple(stored))
    return Admission(tuple(kept), new, tuple(refused), refusal(refused, new, limit) if refused else "")


def refusal(refused: Sequence[str], ledger: Ledger, limit: UploadLimit) -> str:
    """``Not stored: big.png (1 file): ...``, the one line a refused upload shows in the page."""
    names = ", ".join(Path(path).name for path in refused[:3]) + (", ..." if len(refused) > 3 else "")
    return (
        f"Not stored: {names} ({len(refused)} file(s)). A visitor may upload at most {limit.files} "
        f"{limit.what}, {limit.total_bytes / MIB:.0f} MiB in all; this session has stored {ledger.files} "
        f"({ledger.total_bytes / MIB:.1f} MiB)."
    )


def discard(path: str) -> None:
    """Delete ``path`` if it lies in Gradio's upload folder (never anything else), with its folder if empty.

    Gradio files an upload under a hash of its content, so an identical file another session uploaded is
    the same path: refused here, it is gone for both (the other session's search then says it is missing).
    """
    folder = Path(get_upload_folder()).resolve()
    file = Path(path).resolve()
    if not file.is_relative_to(folder) or file == folder:
        return
    try:
        file.unlink(missing_ok=True)
        if file.parent != folder and not any(file.parent.iterdir()):
            file.parent.rmdir()
    except OSError as err:  # a refused file that cannot be deleted: Gradio's DELETE_CACHE removes it later
        LOG.warning("could not delete a refused upload %s: %s", file, err)


def _size(path: str) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:
        return 0  # gone already: nothing stored


class UploadQuota:
    """ASGI middleware: a POST to Gradio's upload route is refused (HTTP 507) when Gradio's upload folder would
    then hold more than ``limit`` bytes, by what it holds and the request's declared length.

    Uploads running at once may pass it together: the folder can overshoot by that many times
    ``MAX_FILE_BYTES``. Pass it to ``launch`` as ``app_kwargs={"middleware": [Middleware(UploadQuota)]}``.
    """

    def __init__(self, app: ASGIApp, limit: int | None = None, folder: Callable[[], str] = get_upload_folder) -> None:
        self.app, self.folder = app, folder
        self._limit = limit  # None: MAX_STORED_BYTES as it is at each request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].endswith(UPLOAD_ROUTE):
            limit = MAX_STORED_BYTES if self._limit is None else self._limit
            declared = int(dict(scope["headers"]).get(b"content-length", b"0") or 0)
            held = await anyio.to_thread.run_sync(folder_bytes, self.folder())
            if held + declared > limit:
                message = "the server's space for uploads is full: try again in an hour, when old uploads are deleted"
                await PlainTextResponse(message, status_code=507)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def folder_bytes(folder: str | Path) -> int:
    """The bytes of every file under ``folder`` (0 if there is none)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:  # deleted while counted
                continue
    return total
