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
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from headscope.errors import InputError
from headscope.kernels.bias import NO_BIAS, KernelBias
from headscope.kernels.dispatch import fused_attention
from headscope.kernels.reference import LN2

if TYPE_CHECKING:
    from headscope.attention.locality import LocalityDial
    from headscope.models import ModelHandle

FUSED_IMPL = "headscope_fused"


@dataclass
class _Run:
    biases: Mapping[int, KernelBias]
    backend: str
    chunk: int | None
    stop_after: int | None  # the last layer whose entropy is wanted, when the logits are not
    entropy: dict[int, Tensor] = field(default_factory=dict)


class _Done(Exception):
    """Ends a run once the last attention layer has been measured: the rest (the last MLP and the unembedding,
    whose logits alone are N × d_vocab floats — 1.6 GB at 8k tokens on SmolLM2) would be thrown away."""


_RUN: contextvars.ContextVar[_Run | None] = contextvars.ContextVar("headscope_fused_run", default=None)


@dataclass(frozen=True)
class FusedRun:
    logits: Float[Tensor, "batch pos d_vocab"]  # empty when the run stopped after the last attention
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
    layer = int(module.layer_idx)
    bias = run.biases.get(layer, NO_BIAS)
    stats = fused_attention(query, key, value, scale=scaling, bias=bias, backend=run.backend, chunk=run.chunk)
    run.entropy[layer] = (stats.entropy[0] / LN2).float().cpu()
    if layer == run.stop_after:
        raise _Done
    return stats.out.transpose(1, 2).contiguous(), None


@contextmanager
def _fused_attention_routing(handle: ModelHandle) -> Iterator[None]:
    """Every attention runs `headscope_fused` on its HF module (see `ModelHandle.hf_attention`)."""
    from transformers import AttentionInterface

    AttentionInterface.register(FUSED_IMPL, fused_attention_interface)
    with handle.hf_attention(FUSED_IMPL):
        yield


def _single_row(handle: ModelHandle, tokens: Tensor) -> Tensor:
    if tokens.dim() == 1:
        tokens = tokens[None]
    if tokens.dim() != 2 or tokens.shape[0] != 1 or tokens.shape[1] < 1:
        raise InputError(f"tokens must be one sequence [1, pos], got shape {tuple(tokens.shape)}")
    if tokens.shape[1] > handle.max_tokens_fused:
        raise InputError(f"{tokens.shape[1]} tokens; the fused path's limit is {handle.max_tokens_fused}")
    return tokens


def _layer_biases(
    handle: ModelHandle, tokens: Tensor, dial: LocalityDial | None, biases: Mapping[int, KernelBias] | None
) -> Mapping[int, KernelBias]:
    if dial is not None and biases is not None:
        raise InputError("give either a dial or per-layer biases, not both")
    if dial is not None:
        return dial.to_kernel_bias(handle, tokens)
    unknown = sorted(set(biases or {}) - set(range(handle.facts.n_layers)))
    if unknown:
        raise InputError(
            f"biases for layer {unknown[0]}: the model has layers 0..{handle.facts.n_layers - 1}"
        )
    return dict(biases or {})


def fused_run(
    handle: ModelHandle,
    tokens: Int[Tensor, "batch pos"],
    *,
    dial: LocalityDial | None = None,
    biases: Mapping[int, KernelBias] | None = None,
    chunk: int | None = None,
    backend: str = "auto",
) -> FusedRun:
    """One forward pass with fused attention: logits and per-query entropy (bits) of every layer and head.

    `dial`: a locality dial, turned into one kernel bias per layer (`LocalityDial.to_kernel_bias`); or `biases`
    directly (layer → `KernelBias`; absent layers are unbiased). Up to `handle.max_tokens_fused` tokens."""
    return _fused(handle, tokens, dial, biases, chunk, backend, logits=True)


def _fused(
    handle: ModelHandle,
    tokens: Tensor,
    dial: LocalityDial | None,
    biases: Mapping[int, KernelBias] | None,
    chunk: int | None,
    backend: str,
    *,
    logits: bool,
) -> FusedRun:
    tokens = _single_row(handle, tokens)
    last = None if logits else handle.facts.n_layers - 1
    run = _Run(_layer_biases(handle, tokens, dial, biases), backend, chunk, last)
    token = _RUN.set(run)
    out = torch.empty(0)
    try:
        with _fused_attention_routing(handle):
            out = handle.run(tokens)
    except _Done:
        pass
    finally:
        _RUN.reset(token)
    n_layers = handle.facts.n_layers
    if sorted(run.entropy) != list(range(n_layers)):
        raise RuntimeError(
            f"fused attention ran for layers {sorted(run.entropy)}, expected 0..{n_layers - 1}"
        )
    return FusedRun(out, torch.stack([run.entropy[i] for i in range(n_layers)]))


def fused_entropy_bits(
    handle: ModelHandle,
    tokens: Int[Tensor, "batch pos"],
    *,
    dial: LocalityDial | None = None,
    biases: Mapping[int, KernelBias] | None = None,
    chunk: int | None = None,
    backend: str = "auto",
) -> Float[Tensor, "layer head pos"]:
    """Per-query attention entropy in bits, [layer, head, pos] fp32 on CPU, in O(N·d) attention memory. The run
    stops after the last attention layer: no logits are formed."""
    return _fused(handle, tokens, dial, biases, chunk, backend, logits=False).entropy_bits
