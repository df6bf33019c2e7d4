"""What every tab shares: the session's cascade, the error guard, the progress adaptor, the limits."""

from __future__ import annotations

import functools
import logging
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import gradio as gr

from analysis.engine import Choice
from analysis.progress import Progress, Step
from cascade.errors import CascadeError, ConfigError

LOG = logging.getLogger("cascade.app")  # the name the server log has always used

MAX_LEVELS = 4
MAX_STAGES = MAX_LEVELS + 1  # plus an optional cross-encoder
SEARCH_CONCURRENCY = 4  # searches are short; several may run while a replay holds its own slot
LONG_CONCURRENCY = 2  # replays and evaluations: a separate pool, so they never block searches
# Gradio spots a progress parameter by its default being a gr.Progress and hands each call a fresh
# tracker (gradio.helpers.create_tracker), so this instance is only a marker: it never holds a
# session's progress. It lives here rather than in each signature because ruff's B008 forbids calls
# in argument defaults; constructing it does no work.
PROGRESS = gr.Progress()


@dataclass(frozen=True)
class Session:
    """One browser session's cascade (in ``gr.State``): the last valid choice, and what is wrong with the newest edit.

    The cost charts keep showing the last valid cascade while an edit is invalid; actions that
    would run the cascade (search, build, replay) refuse with the problem instead of quietly
    running the old one.
    """

    choice: Choice
    problem: str = ""

    def valid(self) -> Choice:
        if self.problem:
            raise ConfigError(f"fix the cascade first: {self.problem}")
        return self.choice


def components(controls: object) -> list[gr.components.Component]:
    """The components of a frozen dataclass of components, in field order (a field may hold a tuple of them)."""
    found = []
    for field in fields(controls):
        value = getattr(controls, field.name)
        found += list(value) if isinstance(value, tuple) else [value]
    return found


def named_values(controls: object, values: Mapping) -> dict[str, Any]:
    """``{field name: value}`` of a handler's ``{component: value}`` (Gradio's answer to a set of inputs).

    ``controls`` is a frozen dataclass whose fields are components (or tuples of them): the names
    the values come back under, so a handler reads ``values.k1`` instead of its eighth argument.
    """
    named = {}
    for field in fields(controls):
        value = getattr(controls, field.name)
        named[field.name] = tuple(values[c] for c in value) if isinstance(value, tuple) else values[value]
    return named


def describe(err: BaseException) -> str:
    """One line for the page: the library's own message, or a short note for a bug (traceback in the server log)."""
    if isinstance(err, (CascadeError, ValueError)):
        return str(err)
    LOG.exception("unexpected error in a handler")
    return f"unexpected {type(err).__name__}: {err} (details in the server log)"


def guarded(status: gr.Markdown) -> Callable:
    """Turn a handler's exception into a warning toast and a visible line in ``status``; the page stays usable.

    Handlers return ``{component: value}`` dicts, so an error updates ``status`` only.
    """

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)  # keeps the signature: Gradio finds the gr.Progress parameter through it
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Exception as err:  # noqa: BLE001  (every failure becomes a message, never a stack trace)
                message = describe(err)
                gr.Warning(message)
                return {status: gr.Markdown(f"**Error:** {message}", visible=True)}

        return wrapper

    return decorate


def progress_fn(progress: gr.Progress) -> Progress:
    """The engine's ``(step, done, total)`` callback drawn on a Gradio progress bar."""

    def report(step: Step, done: int, total: int) -> None:
        if total <= 0:  # a step without a count (loading a gallery or a model): an indeterminate bar
            progress(None, desc=step.what)
        else:
            progress((done, total), desc=step.what, unit=str(step.unit))

    return report


def report_file(name: str, document: str) -> str:
    """Write a report where Gradio may serve it (a fresh folder in the system's temp dir); returns its path."""
    path = Path(tempfile.mkdtemp(prefix="cascade-report-")) / name
    path.write_text(document, encoding="utf-8")
    return str(path)
