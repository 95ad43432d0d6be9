"""Entropy-map backends: `eager` (reduce each layer's pattern in its hook) and `fused` (the kernels package computes
per-query entropy without forming the N×N pattern). `auto` picks fused above FUSED_MIN_TOKENS when it exists."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from headscope.errors import InputError
from headscope.models import hooks
from headscope.models.handle import ModelHandle
from headscope.probes.patterns import row_entropy_bits
from headscope.probes.probe import check_tokens

BACKENDS = ("auto", "eager", "fused")
FUSED_MIN_TOKENS = 512  # below this the N×N pattern is small and the eager path is as fast
EntropyFn = Callable[[ModelHandle, Tensor], Tensor]


def eager_entropy_bits(
    handle: ModelHandle, tokens: Int[Tensor, "batch pos"]
) -> Float[Tensor, "layer head pos"]:
    """Per-query entropy from each layer's `hook_pattern`, reduced inside the hook."""
    check_tokens(handle, tokens)
    rows: dict[int, Tensor] = {}

    def hook_for(layer: int) -> Callable[[Tensor, Any], Tensor]:
        def hook(pattern: Tensor, hook: Any) -> Tensor:
            rows[layer] = row_entropy_bits(pattern[0].float()).cpu()
            return pattern

        return hook

    n_layers = handle.facts.n_layers
    handle.forward(tokens, fwd_hooks=[(hooks.pattern(layer), hook_for(layer)) for layer in range(n_layers)])
    return torch.stack([rows[layer] for layer in range(n_layers)])


def _fused_fn() -> EntropyFn | None:
    # Imported lazily: the kernels package is built separately and may not provide the function yet.
    try:
        from headscope.kernels import fused_entropy_bits  # pyright: ignore[reportAttributeAccessIssue]
    except ImportError:
        return None
    return fused_entropy_bits


def resolve_backend(backend: str, n_tokens: int) -> str:
    """The backend that will run: `auto` → fused for more than FUSED_MIN_TOKENS tokens if available, else eager."""
    if backend not in BACKENDS:
        raise InputError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "fused" and _fused_fn() is None:
        raise InputError("fused backend not available (headscope.kernels.fused_entropy_bits is missing)")
    if backend == "auto":
        return "fused" if n_tokens > FUSED_MIN_TOKENS and _fused_fn() is not None else "eager"
    return backend


def entropy_bits(
    handle: ModelHandle, tokens: Int[Tensor, "batch pos"], *, backend: str = "auto"
) -> tuple[Float[Tensor, "layer head pos"], str]:
    """Per-query attention entropy in bits, and the name of the backend that computed it."""
    check_tokens(handle, tokens)
    chosen = resolve_backend(backend, tokens.shape[1])
    fused = _fused_fn()
    if chosen == "fused" and fused is not None:
        return fused(handle, tokens).float().cpu(), chosen
    return eager_entropy_bits(handle, tokens), "eager"
