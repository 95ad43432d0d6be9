"""Server-side checks of event inputs. Gradio enforces neither slider bounds nor `max_length` for API callers, so
every value a tab receives is checked here, and a bad one is refused with one line that names the field and the
allowed range — never clamped, cut or truncated (λ typed as 5 is refused; a text over the limit is refused with
the limit; 1.7 for a layer is refused, not read as 1).

`integer` / `number` / `choice` are `headscope.checks` (the same checks the configs use)."""

from __future__ import annotations

from typing import Any

from headscope.checks import choice, integer, number
from headscope.errors import InputError

__all__ = ["choice", "integer", "layer_head", "number", "text"]


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
