"""Fused attention with locality bias and per-query entropy in O(N) memory (see README.md).

Importing this package pulls in torch only: Triton is imported when the Triton backend first runs, and
transformers / TransformerLens only inside `fused_run` / `fused_entropy_bits` (the GPU bench machine has no TL).
"""

from headscope.kernels.bias import KERNEL_MODES, NO_BIAS, KernelBias, bias_scores
from headscope.kernels.chunked import attention_chunked
from headscope.kernels.dispatch import BACKENDS, fused_attention, pick_backend
from headscope.kernels.model import FusedRun, fused_entropy_bits, fused_run
from headscope.kernels.reference import AttentionStats, attention_reference, naive_entropy_nats

__all__ = [
    "BACKENDS",
    "KERNEL_MODES",
    "NO_BIAS",
    "AttentionStats",
    "FusedRun",
    "KernelBias",
    "attention_chunked",
    "attention_reference",
    "bias_scores",
    "fused_attention",
    "fused_entropy_bits",
    "fused_run",
    "naive_entropy_nats",
    "pick_backend",
]
