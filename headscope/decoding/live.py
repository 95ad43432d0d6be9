"""What the attention does while the model decodes: one attention function for every cached decoding forward.

`decode_attention` is registered with transformers' `AttentionInterface` (and, for its masks, with
`AttentionMaskInterface` under the same name, using HF's SDPA mask builder), and the decoding session routes every
attention module to it through `handle.hf_attention`. HF calls it with the step's queries (the fed positions
only), all keys/values (cache + fed, after rotary embedding, un-repeated KV heads) and the module's own scaling.
Per forward it reads a `ForwardPlan` from a context variable:

- no plan, no dial on this layer: HF's own `sdpa_attention_forward` — exactly the computation `generate` runs with
  `attn_implementation="sdpa"`, so greedy here and `generate` agree token for token and in wall time;
- `record_rows = r`: the per-head entropy (bits) of the last r query rows, from those rows' q·K scores only
  (softmax over the keys each row may see: O(r · N · d) per layer, never an N × N tensor during decoding);
- `dial[layer]`: a transform of pre-softmax scores laid out [batch, head, query, key] (scaled, causally masked with
  the dtype's minimum — TransformerLens's `hook_attn_scores`), i.e. the locality dial's own score hook; the layer
  is then computed explicitly for the fed rows (softmax(dial(q·K)) · V), and its entropy comes from those rows;
- `ablate[layer] = heads`: the heads' outputs (what TransformerLens calls `hook_z`, the per-head attention output
  before `o_proj`) are replaced by `means[layer]` (mean ablation) or zero;
- `collect`: store the mean over the fed positions of the ablated heads' outputs (a clean run over the prompt
  fills `means`).
"""

from __future__ import annotations

import contextvars
import functools
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from headscope.attention.patterns import row_entropy_bits

DECODE_IMPL = "headscope_decode"
ScoreFn = Callable[[Tensor], Tensor]  # [batch, head, query, key] scores → same shape


@dataclass
class ForwardPlan:
    """What `decode_attention` does in one forward, and what it leaves behind."""

    record_rows: int = 0
    dial: dict[int, ScoreFn] = field(default_factory=dict)
    ablate: dict[int, tuple[int, ...]] = field(default_factory=dict)
    means: dict[int, Tensor] = field(
        default_factory=dict
    )  # layer → [len(heads), d_head]; absent = zero ablation
    collect: bool = False
    entropy: dict[int, Tensor] = field(default_factory=dict)  # out: layer → [head, rows], bits
    collected: dict[int, Tensor] = field(default_factory=dict)  # out: layer → [len(heads), d_head]


_PLAN: contextvars.ContextVar[ForwardPlan | None] = contextvars.ContextVar(
    "headscope_decode_plan", default=None
)


@contextmanager
def planned(plan: ForwardPlan | None) -> Iterator[ForwardPlan | None]:
    token = _PLAN.set(plan)
    try:
        yield plan
    finally:
        _PLAN.reset(token)


@functools.cache
def register() -> str:
    """Register the attention function (and SDPA's mask builder) under `DECODE_IMPL`; returns the name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(DECODE_IMPL, decode_attention)
    AttentionMaskInterface.register(DECODE_IMPL, sdpa_mask)
    return DECODE_IMPL


def _grouped_scores(query: Tensor, key: Tensor, scale: float) -> Tensor:
    """q·K · scale for every query head, [batch, head, q, k], without repeating the KV heads in memory."""
    b, h, q, d = query.shape
    kvh, k = key.shape[1], key.shape[2]
    grouped = query.reshape(b, kvh, h // kvh, q, d).float()
    scores = torch.matmul(grouped, key.float()[:, :, None].transpose(-1, -2))
    return scores.reshape(b, h, q, k) * scale


def causal_fill(scores: Tensor, value: float, mask: Tensor | None = None) -> Tensor:
    """Mask the keys each query may not see: `mask` [q, k] (True = seen: a tree draft's mask), else causal with
    the q query rows as the last q positions of the k keys."""
    q, k = scores.shape[-2:]
    if mask is not None:
        return scores.masked_fill(~mask[-q:], value)
    rows = torch.arange(k - q, k, device=scores.device)[:, None]
    cols = torch.arange(k, device=scores.device)[None, :]
    return scores.masked_fill(cols > rows, value)


def seen_keys(attention_mask: Tensor | None, q: int, k: int) -> Tensor | None:
    """The boolean [q, k] mask HF handed the attention function, when it is one (a tree forward's); None for
    the plain causal layout (no mask, or one the causal rule reproduces)."""
    if attention_mask is None or attention_mask.dtype != torch.bool or attention_mask.dim() != 4:
        return None
    if tuple(attention_mask.shape[-2:]) != (q, k):
        return None
    return attention_mask[0, 0]


def _grouped_apply(probs: Tensor, value: Tensor) -> Tensor:
    b, h, q, k = probs.shape
    kvh = value.shape[1]
    out = torch.matmul(probs.reshape(b, kvh, h // kvh, q, k), value.float()[:, :, None])
    return out.reshape(b, h, q, -1)


def _explicit(
    query: Tensor, key: Tensor, value: Tensor, scale: float, fn: ScoreFn, mask: Tensor | None
) -> tuple[Tensor, Tensor]:
    """softmax(fn(masked q·K)) · V for the fed rows: output [batch, q, head, d_head] and probabilities."""
    scores = causal_fill(_grouped_scores(query, key, scale), torch.finfo(torch.float32).min, mask)
    probs = torch.softmax(fn(scores), dim=-1)
    out = _grouped_apply(probs, value).to(query.dtype)
    return out.transpose(1, 2).contiguous(), probs


def _row_entropy(query: Tensor, key: Tensor, scale: float, rows: int, mask: Tensor | None) -> Tensor:
    scores = _grouped_scores(query[:, :, -rows:], key, scale)
    if rows > 1:  # the last row sees every key; earlier rows of a multi-token step do not see later ones
        scores = causal_fill(scores, -math.inf, mask)
    return row_entropy_bits(torch.softmax(scores, dim=-1))[0]


def _ablated(out: Tensor, plan: ForwardPlan, layer: int) -> Tensor:
    heads = list(plan.ablate[layer])
    if plan.collect:
        plan.collected[layer] = out[0, :, heads].float().mean(0)
        return out
    out = out.clone()
    mean = plan.means.get(layer)
    out[:, :, heads] = 0.0 if mean is None else mean.to(out.dtype)
    return out


def decode_attention(
    module: Any,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[Tensor, None]:
    """An HF attention function (see the module docstring); returns [batch, q, head, d_head] and no weights."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    plan = _PLAN.get()
    layer = int(module.layer_idx)
    fn = plan.dial.get(layer) if plan is not None else None
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    if fn is None:
        out, _ = sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
        if plan is not None and plan.record_rows:
            mask = seen_keys(attention_mask, query.shape[2], key.shape[2])
            plan.entropy[layer] = _row_entropy(query, key, scale, plan.record_rows, mask)
    else:
        assert plan is not None
        mask = seen_keys(attention_mask, query.shape[2], key.shape[2])
        out, probs = _explicit(query, key, value, scale, fn, mask)
        if plan.record_rows:
            plan.entropy[layer] = row_entropy_bits(probs[0, :, -plan.record_rows :])
    if plan is not None and layer in plan.ablate:
        out = _ablated(out, plan, layer)
    return out, None
