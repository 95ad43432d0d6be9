"""User-facing errors: each one carries a single readable line for the CLI and the app.

Anything raised as a `HeadscopeError` is the user's to fix (bad id, bad value, offline); the CLI prints its
message and exits non-zero, the app shows it as a `gr.Error`. Anything else is our bug.
"""

from __future__ import annotations


class HeadscopeError(Exception):
    """An error whose message is fit to show a user as one line."""


class UnknownModelError(HeadscopeError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ModelUnavailableError(HeadscopeError):
    """The model exists but cannot be had here: offline and not cached, package missing, corrupt source."""


class UnsafeCheckpointError(HeadscopeError):
    """A checkpoint that could only be read by unpickling (or would run remote code)."""


class InputError(HeadscopeError, ValueError):
    """A value outside its allowed range, an empty or oversized text, a malformed file."""
