"""headscope.app.gpu: the `spaces` GPU decorator with the event's duration where the package is present, and the
function itself (unchanged) where it is not."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

from headscope.app import gpu


def _work(x: int) -> int:
    return x + 1


def test_without_spaces_the_function_is_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "spaces", None)  # import spaces → ImportError
    assert gpu.gpu("circuits")(_work) is _work


def test_with_spaces_the_decorator_gets_the_events_duration(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def fake_gpu(*, duration: int) -> Any:
        calls.append(duration)
        return lambda fn: lambda *a, **k: ("on gpu", fn(*a, **k))

    monkeypatch.setitem(sys.modules, "spaces", types.SimpleNamespace(GPU=fake_gpu))
    assert gpu.gpu("sweep")(_work)(1) == ("on gpu", 2)
    assert gpu.gpu("circuits")(_work)(2) == ("on gpu", 3)
    assert calls == [gpu.DURATIONS["sweep"], gpu.DURATIONS["circuits"]]


def test_unknown_event_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown GPU event kind"):
        gpu.gpu("everything")


def test_the_built_app_puts_model_work_under_the_decorator(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every model-work event of the real app is wrapped with its kind's duration; selection, session and cancel
    events (no model work) are not."""
    from headscope.app.main import build_demo

    durations: list[int] = []

    def fake_gpu(*, duration: int) -> Any:
        def wrap(fn: Any) -> Any:
            durations.append(duration)
            fn.__gpu_duration__ = duration
            return fn

        return wrap

    monkeypatch.setitem(sys.modules, "spaces", types.SimpleNamespace(GPU=fake_gpu))
    demo = build_demo()
    on_gpu = {
        f.api_name: getattr(f.fn, "__gpu_duration__", None) for f in demo.fns.values() if f.fn is not None
    }
    assert on_gpu["circuits_run"] == gpu.DURATIONS["circuits"]
    assert on_gpu["locality_sweep"] == gpu.DURATIONS["sweep"]
    assert on_gpu["steer_lofit_train"] == gpu.DURATIONS["lofit"]
    assert on_gpu["steer_contrastive"] == gpu.DURATIONS["steer"]
    assert on_gpu["decode_compare"] == gpu.DURATIONS["decode"]
    assert on_gpu["features_top"] == on_gpu["locality_pattern"] == gpu.DURATIONS["view"]
    for name in ("session_export", "session_import", "circuits_run_cancel"):
        assert on_gpu[name] is None, name
    assert not any(d for n, d in on_gpu.items() if n and n.startswith(("_on_cell", "on_click"))), on_gpu
