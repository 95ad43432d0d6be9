"""Server-side state of the app: the loaded models (a small LRU) and the wrapper that turns errors into messages.

The app never accepts a path or URL for a model: only catalog names (`allow_external=False`).
"""

from __future__ import annotations

import functools
import html
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

import gradio as gr

from headscope.app import downloads
from headscope.batch.protocol import JobCancelled
from headscope.errors import HeadscopeError
from headscope.models import DEFAULT_MODEL, ModelHandle
from headscope.models.memory import is_out_of_memory, release_cached_memory

log = logging.getLogger("headscope.app")
F = TypeVar("F", bound=Callable[..., Any])
MAX_LOADED = 2

# Concurrency groups (gradio queue slots) only decide who waits: views never queue behind a long job, which
# holds the model one step at a time; the handle's lock keeps hooked runs on one model apart in any group.
VIEW_CONCURRENCY_ID = "view"
JOB_CONCURRENCY_ID = "job"


def _job_slots() -> int:
    """HEADSCOPE_JOB_SLOTS: long jobs that may progress at once (default 1: a shared CPU box does one well)."""
    raw = os.environ.get("HEADSCOPE_JOB_SLOTS", "1")
    return int(raw) if raw.isdigit() and int(raw) >= 1 else 1


# Views show a small timer ("minimal"), never a grey overlay; jobs report in their JobControls status line.
VIEW_EVENT: dict[str, Any] = {
    "concurrency_id": VIEW_CONCURRENCY_ID,
    "concurrency_limit": 2,
    "show_progress": "minimal",
}
JOB_EVENT: dict[str, Any] = {"concurrency_id": JOB_CONCURRENCY_ID, "concurrency_limit": _job_slots()}
# A follow-up step the page runs itself (a draw from JSON already there, a highlight): no endpoint, no queue;
# QUIET also shows no progress at all (button visibility, selection highlights).
PRIVATE: dict[str, Any] = {"api_visibility": "private", "queue": False}
QUIET: dict[str, Any] = {**PRIVATE, "show_progress": "hidden"}


class ModelStore:
    """Loaded handles by catalog name, at most MAX_LOADED at once (the least recently used is dropped)."""

    def __init__(self, max_loaded: int = MAX_LOADED):
        self._handles: OrderedDict[str, ModelHandle] = OrderedDict()
        self._lock = threading.Lock()
        self.max_loaded = max_loaded

    def get(self, name: str | None) -> ModelHandle:
        name = (name or DEFAULT_MODEL).strip()
        with self._lock:
            if name in self._handles:
                self._handles.move_to_end(name)
                return self._handles[name]
            handle = ModelHandle.load(name, allow_external=False)
            self._handles[name] = handle
            while len(self._handles) > self.max_loaded:
                self._handles.popitem(last=False)
            return handle


STORE = ModelStore()


def user_errors(fn: F) -> F:
    """Show a HeadscopeError's one line to the user (escaped); never a traceback; log our own bugs."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        request = next((a for a in (*args, *kwargs.values()) if isinstance(a, gr.Request)), None)
        try:
            with downloads.visitor(request):  # files this event writes belong to its visitor
                return fn(*args, **kwargs)
        except gr.Error:
            raise
        except JobCancelled as e:
            # A Cancel is what the visitor asked for, not a failure: a grey "Cancelled" note, and the event
            # ends without a red error (the Cancel button's status line says when the model is free).
            msg = html.escape(str(e), quote=False)  # the toast: "Cancelled during '…'" (it says "Info")
            gr.Info(msg[:1].upper() + msg[1:], title="Cancelled")
            raise gr.Error(msg, title="Cancelled", visible=False, print_exception=False) from None
        except HeadscopeError as e:
            raise gr.Error(html.escape(str(e), quote=False), print_exception=False) from None
        except Exception as e:
            if is_out_of_memory(e):
                release_cached_memory()
                log.warning("CUDA out of memory in %s", fn.__name__)
                raise gr.Error(
                    "out of GPU memory: try a shorter text or fewer tokens", print_exception=False
                ) from None
            log.exception("internal error in %s", fn.__name__)
            raise gr.Error(
                "internal error (logged on the server); the app is still serving", print_exception=False
            ) from None

    return wrapper  # type: ignore[return-value]
