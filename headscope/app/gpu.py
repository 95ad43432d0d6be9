"""ZeroGPU: model work runs inside `spaces.GPU(duration=...)` where the `spaces` package is installed (a
shorter duration queues sooner, so each kind of event asks for its worst case on the default model);
elsewhere a no-op. Untested until ZeroGPU supports this project's Python 3.11 (README, "Hardware")."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

from headscope.app.state import JOB_CONCURRENCY_ID, VIEW_CONCURRENCY_ID

F = TypeVar("F", bound=Callable[..., Any])

# Seconds of GPU each kind of event may hold.
DURATIONS: dict[str, int] = {
    "load": 60,  # first load of a GGUF model converts it (about 20 s on CPU)
    "view": 20,  # one forward pass: entropy heatmap, head pattern, feature view
    "sweep": 90,  # λ sweep: up to 21 forward passes with the dial
    "circuits": 240,  # discrete-SAE training plus activation and attribution patching
    "steer": 60,  # contrastive vector + two generations
    "lofit": 180,  # LoFiT head-offset training
    "decode": 90,  # several decoding strategies side by side
}


def gpu(event: str) -> Callable[[F], F]:
    """Decorator for an event handler that does model work of the given kind (a key of DURATIONS)."""
    if event not in DURATIONS:
        raise ValueError(f"unknown GPU event kind {event!r}; known: {', '.join(DURATIONS)}")
    try:
        return importlib.import_module("spaces").GPU(duration=DURATIONS[event])
    except ImportError:
        return lambda fn: fn


# Which kind of GPU event a job is, by its endpoint name (first match); other jobs and every view are "view" or
# their closest kind. Selection, session and cancel events do no model work and are never wrapped.
_JOB_KINDS: tuple[tuple[str, str], ...] = (
    ("circuits", "circuits"),
    ("locality_sweep", "sweep"),
    ("steer_lofit_train", "lofit"),
    ("steer", "steer"),
    ("features_steer", "steer"),
    ("features_attribute", "steer"),
    ("decode", "decode"),
)


def event_kind(api_name: str | None, concurrency_id: str | None) -> str | None:
    """The GPU event kind of an app event, or None for events that do no model work."""
    name = api_name or ""
    if concurrency_id == VIEW_CONCURRENCY_ID:
        return "view"
    if concurrency_id != JOB_CONCURRENCY_ID or name.endswith("_cancel"):
        return None
    return next((kind for prefix, kind in _JOB_KINDS if name.startswith(prefix)), "view")


def wrap_events(demo: Any) -> dict[str, str]:
    """Put every model-work event of a built app under `gpu(kind)` (a no-op without `spaces`); returns
    {api_name: kind} of the wrapped events. Called once by `build_demo`, so no tab has to remember it."""
    wrapped: dict[str, str] = {}
    for block_fn in demo.fns.values():
        kind = event_kind(block_fn.api_name, block_fn.concurrency_id)
        if block_fn.fn is None or kind is None:
            continue
        block_fn.fn = gpu(kind)(block_fn.fn)
        wrapped[str(block_fn.api_name)] = kind
    return wrapped
