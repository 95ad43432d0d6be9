"""Backend dispatch: CUDA tensors → Triton kernel, anything else → chunked torch (Triton never runs live on CPU)."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable

from torch import Tensor

from headscope.errors import InputError
from headscope.kernels.bias import NO_BIAS, KernelBias
from headscope.kernels.chunked import attention_chunked
from headscope.kernels.reference import AttentionStats, attention_reference

Backend = Callable[..., AttentionStats]


def _triton(q: Tensor, k: Tensor, v: Tensor, **kw: object) -> AttentionStats:
    from headscope.kernels.triton_attn import attention_triton  # imports triton; only where it can run

    kw.pop("chunk", None)
    return attention_triton(q, k, v, **kw)  # type: ignore[arg-type]


def _reference(q: Tensor, k: Tensor, v: Tensor, **kw: object) -> AttentionStats:
    kw.pop("chunk", None)
    return attention_reference(q, k, v, **kw)  # type: ignore[arg-type]


BACKENDS: dict[str, Backend] = {"triton": _triton, "chunked": attention_chunked, "reference": _reference}


def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def pick_backend(q: Tensor) -> str:
    return "triton" if q.is_cuda and triton_available() else "chunked"


def fused_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    scale: float | None = None,
    bias: KernelBias = NO_BIAS,
    backend: str = "auto",
    chunk: int | None = None,
) -> AttentionStats:
    """Causal attention output, LSE and per-query entropy (nats) without an [N, N] tensor (except `reference`).

    q: [batch, head, pos, d_head]; k, v: [batch, kv_head, pos, d_head] (GQA when kv_head < head). `bias`: the
    layer's locality bias (`bias.py`; a dial makes one per layer with `LocalityDial.to_kernel_bias`).
    """
    name = pick_backend(q) if backend == "auto" else backend
    if name not in BACKENDS:
        raise InputError(f"backend must be 'auto' or one of {sorted(BACKENDS)}, got {backend!r}")
    if name == "triton" and not q.is_cuda and not _interpreting():
        raise InputError("the triton backend needs CUDA tensors (or TRITON_INTERPRET=1 for tests)")
    return BACKENDS[name](q, k, v, scale=scale, bias=bias, chunk=chunk)


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
