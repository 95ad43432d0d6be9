"""Per-query attention entropy for every layer and head of a model run, without an [N, N] tensor anywhere.

Hooks cannot do this: TransformerLens' bridge reimplements attention eagerly (scores → softmax → pattern), so a
hook on `hook_rot_q`/`hook_rot_k` still pays for the [head, N, N] product in every layer. Instead, for the
length of one run (under the handle's lock), each attention bridge is routed to its own Hugging Face module, and
the model's attention implementation is switched to `headscope_fused`, a function registered with transformers'
`AttentionInterface`. HF calls it with exactly what its attention product uses — queries and keys after rotary
embedding (GPT-2: plain projections), un-repeated KV heads (GQA), the module's own `scaling` — and it returns the
fused kernel's output, keeping the entropy. As the name is not a mask implementation, HF builds no [N, N] mask.

Unsupported (refused with an InputError): attention soft-capping, sliding windows, attention sinks, dropout.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from headscope.errors import InputError
from headscope.kernels.bias import NO_BIAS, LocalityBias
from headscope.kernels.dispatch import fused_attention
from headscope.kernels.reference import LN2

if TYPE_CHECKING:
    from headscope.models import ModelHandle

FUSED_IMPL = "headscope_fused"


@dataclass
class _Run:
    bias: LocalityBias
    lam: Tensor | None
    backend: str
    chunk: int | None
    entropy: dict[int, Tensor] = field(default_factory=dict)


_RUN: contextvars.ContextVar[_Run | None] = contextvars.ContextVar("headscope_fused_run", default=None)


@dataclass(frozen=True)
class FusedRun:
    logits: Float[Tensor, "batch pos d_vocab"]
    entropy_bits: Float[Tensor, "layer head pos"]


def _refuse_unsupported(module: Any, kwargs: dict[str, Any]) -> None:
    for name in ("sliding_window", "softcap"):
        if kwargs.get(name) is not None:
            raise InputError(
                f"the fused entropy path does not support attention {name} (use --backend eager)"
            )
    if getattr(module, "sinks", None) is not None:
        raise InputError("the fused entropy path does not support attention sinks (use --backend eager)")
    if kwargs.get("dropout", 0.0):
        raise InputError("the fused entropy path runs in eval mode only (attention dropout is on)")


def fused_attention_interface(
    module: Any,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[Tensor, None]:
    """An HF attention function: causal attention via the fused kernel, recording per-query entropy."""
    run = _RUN.get()
    if run is None:
        raise RuntimeError(f"{FUSED_IMPL} attention called outside fused_run()")
    _refuse_unsupported(module, kwargs)
    if attention_mask is not None:  # only a padding/custom mask would arrive here; we run one unpadded row
        raise InputError("the fused entropy path takes one unpadded sequence (no attention mask)")
    stats = fused_attention(
        query, key, value, scale=scaling, bias=run.bias, lam=run.lam, backend=run.backend, chunk=run.chunk
    )
    run.entropy[int(module.layer_idx)] = (stats.entropy[0] / LN2).float().cpu()
    return stats.out.transpose(1, 2).contiguous(), None


@contextmanager
def _fused_attention_routing(handle: ModelHandle) -> Iterator[None]:
    """Every attention runs `headscope_fused` on its HF module (see `ModelHandle.hf_attention`)."""
    from transformers import AttentionInterface

    AttentionInterface.register(FUSED_IMPL, fused_attention_interface)
    with handle.hf_attention(FUSED_IMPL):
        yield


def _single_row(tokens: Tensor) -> Tensor:
    if tokens.dim() == 1:
        tokens = tokens[None]
    if tokens.dim() != 2 or tokens.shape[0] != 1 or tokens.shape[1] < 1:
        raise InputError(f"tokens must be one sequence [1, pos], got shape {tuple(tokens.shape)}")
    return tokens


def fused_run(
    handle: ModelHandle,
    tokens: Int[Tensor, "batch pos"],
    *,
    chunk: int | None = None,
    bias: LocalityBias = NO_BIAS,
    lam: Tensor | None = None,
    backend: str = "auto",
) -> FusedRun:
    """One forward pass with fused attention: logits and per-query entropy (bits) of every layer and head."""
    tokens = _single_row(tokens)
    run = _Run(bias, lam, backend, chunk)
    token = _RUN.set(run)
    try:
        with _fused_attention_routing(handle):
            logits = handle.run(tokens)
    finally:
        _RUN.reset(token)
    n_layers = handle.facts.n_layers
    if sorted(run.entropy) != list(range(n_layers)):
        raise RuntimeError(
            f"fused attention ran for layers {sorted(run.entropy)}, expected 0..{n_layers - 1}"
        )
    return FusedRun(logits, torch.stack([run.entropy[i] for i in range(n_layers)]))


def fused_entropy_bits(
    handle: ModelHandle,
    tokens: Int[Tensor, "batch pos"],
    *,
    chunk: int | None = None,
    bias: LocalityBias = NO_BIAS,
    lam: Tensor | None = None,
    backend: str = "auto",
) -> Float[Tensor, "layer head pos"]:
    """Per-query attention entropy in bits, [layer, head, pos] fp32 on CPU, in O(N·d) attention memory."""
    return fused_run(handle, tokens, chunk=chunk, bias=bias, lam=lam, backend=backend).entropy_bits
