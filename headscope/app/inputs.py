"""Server-side checks of numeric event inputs, shared by the tabs (Gradio does not enforce slider bounds for
API callers). Each raises an `InputError` with one line naming the field and its allowed range."""

from __future__ import annotations

import math
from typing import Any

from headscope.errors import InputError


def number(value: Any, name: str, lo: float, hi: float) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(x) or not lo <= x <= hi:
        raise InputError(f"{name} must be in [{lo:g}, {hi:g}], got {value!r}")
    return x


def integer(value: Any, name: str, lo: int, hi: int) -> int:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None
    # isfinite before int(): int(inf) would raise OverflowError, not a user-facing error
    if not math.isfinite(x) or x != int(x) or not lo <= x <= hi:
        raise InputError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    return int(x)
