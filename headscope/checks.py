"""Value checks shared by every frozen config's `__post_init__` and every app event: one readable `InputError`
naming the field and its allowed range, never a TypeError from a comparison or a silently truncated fraction.

- `integer` accepts ints and integral floats/strings (3.0, "3"); refuses 3.5, "abc", NaN, ±inf and bools.
- `number` accepts finite ints/floats and numeric strings; refuses NaN, ±inf, bools and text.
- `choice` accepts one of a list of names.
Each returns the clean value, so a config can store what it checked.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from headscope.errors import InputError


def _as_float(value: Any, name: str) -> float:
    if isinstance(value, bool) or value is None:
        raise InputError(f"{name} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None


def number(
    value: Any, name: str, lo: float = -math.inf, hi: float = math.inf, *, lo_open: bool = False
) -> float:
    """A finite number in [lo, hi] (or (lo, hi] with lo_open)."""
    x = _as_float(value, name)
    below = x <= lo if lo_open else x < lo
    if not math.isfinite(x) or below or x > hi:
        left = "(" if lo_open else "["
        raise InputError(f"{name} must be in {left}{lo:g}, {hi:g}], got {value!r}")
    return x


def integer(value: Any, name: str, lo: int | float = -math.inf, hi: int | float = math.inf) -> int:
    """An integer in [lo, hi]; 3.0 and "3" are accepted as 3, 3.5 is refused (never truncated)."""
    x = _as_float(value, name)
    if not math.isfinite(x) or x != int(x) or not lo <= x <= hi:
        raise InputError(f"{name} must be an integer in [{_fmt(lo)}, {_fmt(hi)}], got {value!r}")
    return int(x)


def optional_integer(
    value: Any, name: str, lo: int | float = -math.inf, hi: int | float = math.inf
) -> int | None:
    return None if value is None else integer(value, name, lo, hi)


def choice(value: Any, name: str, allowed: Iterable[str]) -> str:
    allowed = list(allowed)
    if not isinstance(value, str) or value not in allowed:
        raise InputError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"{name} must be true or false, got {value!r}")
    return value


def _fmt(x: int | float) -> str:
    return str(int(x)) if math.isfinite(x) else ("∞" if x > 0 else "−∞")
