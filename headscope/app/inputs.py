"""Server-side checks of event inputs, refused with one line that names the field and the range: never
clamped or cut (README: Inputs never changed silently). `integer` / `number` / `choice` are
`headscope.checks`."""

from __future__ import annotations

from typing import Any

import gradio as gr

from headscope.checks import choice, integer, number
from headscope.errors import InputError

__all__ = ["choice", "integer", "layer_head", "number", "ranged_number", "text"]


def text(value: Any, name: str, limit: int, *, allow_empty: bool = False) -> str:
    """A text of at most `limit` characters (refused beyond, with the limit: never cut)."""
    if value is None and allow_empty:
        return ""
    if not isinstance(value, str):
        raise InputError(f"{name} must be text, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise InputError(f"{name} is empty")
    if len(value) > limit:
        raise InputError(f"{name} is {len(value):,} characters long; the limit is {limit:,}")
    return value


def layer_head(layer: Any, head: Any, n_layers: int, n_heads: int) -> tuple[int, int]:
    """A (layer, head) pair from two fields, each an integer inside the model's shape ("abc", NaN, inf and 1.7
    are refused with the allowed range)."""
    return integer(layer, "layer", 0, n_layers - 1), integer(head, "head", 0, n_heads - 1)


def _g(x: float) -> str:
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:g}"


def ranged_number(
    label: str, lo: float, hi: float, value: float, *, integer: bool = False, **kw: Any
) -> gr.Number:
    """A number field for a value in [lo, hi], the range in its label, used instead of `gr.Slider` (which
    snaps a typed value in the browser without a word; README). The handler still checks it with `number` /
    `integer`."""
    kw.setdefault("precision", 0 if integer else None)
    return gr.Number(value=value, label=f"{label} ({_g(lo)} … {_g(hi)})", **kw)
