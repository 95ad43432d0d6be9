"""Reading a (shipped) localist model's attention on a text: per layer × head entropy and the raw patterns.

Patterns come from `blocks.{l}.attn.hook_pattern` through the handle (the same address space as every other
capability); entropy per head is the mean over query positions of the row entropy in bits, computed with the
`headscope.attention.patterns.row_entropy_bits`.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    token_ids: tuple[int, ...]
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
    ids = tuple(int(i) for i in tokens[0].tolist())
    return AttentionReading(handle.identity.name, tuple(handle.str_tokens(tokens)), ids, entropy, patterns)


@dataclass(frozen=True, eq=False)
class AttentionComparison(JsonCodec):
    """Localist checkpoint(s) vs the distributed model on one text: each model's reading (entropy per head) and
    the chosen head's N×N pattern per model (`head_patterns[i]` belongs to `readings[i]`) — what the app's
    Localist tab draws from JSON."""

    readings: tuple[AttentionReading, ...]
    layer: int
    head: int
    head_patterns: tuple[Float[np.ndarray, "query key"], ...] = jfield(digits=5, decode=lambda v: tuple(
        np.asarray(p, dtype=np.float64) for p in v))  # fmt: skip

    @property
    def same_tokens(self) -> bool:
        """Whether every model read the same tokens (the shipped models share one tokenizer)."""
        return all(r.str_tokens == self.readings[0].str_tokens for r in self.readings)


def compare_attention(
    handles: Sequence[ModelHandle], text: str, layer: int, head: int, *, max_tokens: int = 256
) -> AttentionComparison:
    """`read_attention` of each model on `text`, with the (layer, head) pattern of each kept for the viewer."""
    readings = [read_attention(h, text, max_tokens=max_tokens) for h in handles]
    for r in readings:
        n_layers, n_heads = r.entropy_bits.shape
        if not (0 <= layer < n_layers and 0 <= head < n_heads):
            raise InputError(
                f"{r.model} has {n_layers} layers × {n_heads} heads; got layer {layer}, head {head}"
            )
    pats = tuple(np.asarray(r.patterns[layer, head], dtype=np.float64) for r in readings)
    return AttentionComparison(tuple(readings), layer, head, pats)
