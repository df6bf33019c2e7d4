"""Exceptions that carry a message meant for the user.

Library code raises these; only an entry point (``main()``, the app's handlers)
turns them into a printed line, an exit code or a message in the page.
"""


class CascadeError(Exception):
    """Base class: ``str(err)`` is one clear line for the user."""


class ConfigError(CascadeError, ValueError):
    """A cascade configuration or a search argument is invalid."""


class EncoderNotFound(CascadeError, KeyError):
    """An encoder name does not resolve to a backend or a model."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class WeightsUnavailable(CascadeError, OSError):
    """Model weights are neither local nor downloadable (e.g. offline)."""


class CorpusError(CascadeError, ValueError):
    """The image collection is missing, empty or unreadable."""
