"""Entropy-map backends, each optionally under a locality dial: `eager` (the dial's score hooks, each layer's
pattern reduced in its hook; up to `handle.max_tokens` tokens) and `fused` (`headscope.kernels`: the dial as the
kernels' per-layer bias, per-query entropy without forming the N×N pattern; up to `handle.max_tokens_fused`, the
model's context). `auto` picks fused above FUSED_MIN_TOKENS."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from headscope import checks
from headscope.attention.locality import LocalityDial, dial_hooks
from headscope.attention.patterns import row_entropy_bits
from headscope.errors import InputError
from headscope.kernels import fused_entropy_bits
from headscope.models import hooks
from headscope.models.handle import ModelHandle
from headscope.probes.probe import check_tokens

BACKENDS = ("auto", "eager", "fused")
FUSED_MIN_TOKENS = 512  # below this the N×N pattern is small and the eager path is as fast


def eager_entropy_bits(
    handle: ModelHandle, tokens: Int[Tensor, "batch pos"], *, dial: LocalityDial | None = None
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
    fwd = dial_hooks(handle, tokens, dial) if dial is not None else []
    fwd += [(hooks.pattern(layer), hook_for(layer)) for layer in range(n_layers)]
    handle.forward(tokens, fwd_hooks=fwd)
    return torch.stack([rows[layer] for layer in range(n_layers)])


def resolve_backend(backend: str, n_tokens: int) -> str:
    """The backend that will run: `auto` → fused for more than FUSED_MIN_TOKENS tokens, else eager."""
    checks.choice(backend, "backend", BACKENDS)
    if backend == "auto":
        return "fused" if n_tokens > FUSED_MIN_TOKENS else "eager"
    return backend


def token_limit(handle: ModelHandle, backend: str) -> int:
    """The most tokens `backend` takes on this model (`auto` can go as far as fused)."""
    checks.choice(backend, "backend", BACKENDS)
    return handle.max_tokens if backend == "eager" else handle.max_tokens_fused


def entropy_bits(
    handle: ModelHandle,
    tokens: Int[Tensor, "batch pos"],
    *,
    backend: str = "auto",
    dial: LocalityDial | None = None,
) -> tuple[Float[Tensor, "layer head pos"], str]:
    """Per-query attention entropy in bits (under `dial` if given), and the name of the backend that computed it."""
    chosen = resolve_backend(backend, tokens.shape[-1])
    limit = token_limit(handle, chosen)
    if chosen == "eager" and limit < tokens.shape[-1] <= handle.max_tokens_fused:
        raise InputError(
            f"{tokens.shape[-1]} tokens; the eager backend's limit is {limit} "
            f"(the fused backend takes up to {handle.max_tokens_fused})"
        )
    check_tokens(handle, tokens, limit=limit)
    if chosen == "fused":
        return fused_entropy_bits(handle, tokens, dial=dial).float().cpu(), chosen
    return eager_entropy_bits(handle, tokens, dial=dial), chosen
