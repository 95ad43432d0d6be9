"""Server-side checks of numeric event inputs (Gradio does not enforce slider bounds for API callers): the same
checks the configs use (`headscope.checks`), with the app's argument order (value, name, lo, hi)."""

from __future__ import annotations

from headscope.checks import integer, number

__all__ = ["integer", "number"]
