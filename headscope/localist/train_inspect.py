"""Reading a (shipped) localist model's attention on a text: per layer × head entropy and the raw patterns.

Patterns come from `blocks.{l}.attn.hook_pattern` through the handle (the same address space as every other
capability); entropy per head is the mean over query positions of the row entropy in bits, computed with the
`headscope.attention.patterns.row_entropy_bits`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from jaxtyping import Float

from headscope.attention.patterns import row_entropy_bits
from headscope.codec import JsonCodec, jfield
from headscope.errors import InputError
from headscope.models import ModelHandle, hooks

SHIPPED_MODELS = ("localist-2l-lambda0", "localist-2l-lambda0.6", "localist-2l-lambda1.0")
DISTRIBUTED_MODEL = "localist-2l-lambda0"


@dataclass(frozen=True, eq=False)
class AttentionReading(JsonCodec):
    """JSON: model, tokens, entropy per head and its mean; the N×N patterns stay out (empty when read back)."""

    model: str
    str_tokens: tuple[str, ...]
    entropy_bits: Float[np.ndarray, "layer head"] = jfield(digits=5, decode=np.asarray)
    patterns: Float[np.ndarray, "layer head pos pos"] = jfield(
        skip=True, default_factory=lambda: np.zeros((0,) * 4)
    )

    json_extra = ("n_tokens", "mean_entropy_bits")

    @property
    def n_tokens(self) -> int:
        return len(self.str_tokens)

    @property
    def mean_entropy_bits(self) -> float:
        return float(self.entropy_bits.mean())


def read_attention(handle: ModelHandle, text: str, *, max_tokens: int = 256) -> AttentionReading:
    """Every layer's attention pattern on `text` and its per-head mean row entropy (bits)."""
    tokens = handle.tokenize(text, max_tokens=max_tokens)
    if tokens.shape[1] < 2:
        raise InputError("text must be at least 2 tokens long")
    names = [hooks.pattern(layer) for layer in range(handle.facts.n_layers)]
    _, cache = handle.run_with_cache(tokens, names)
    patterns = np.stack([cache[n][0].float().cpu().numpy() for n in names])
    entropy = np.stack([row_entropy_bits(cache[n][0].float()).mean(-1).cpu().numpy() for n in names])
    return AttentionReading(handle.identity.name, tuple(handle.str_tokens(tokens)), entropy, patterns)
