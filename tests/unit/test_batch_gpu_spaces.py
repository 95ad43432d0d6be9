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
