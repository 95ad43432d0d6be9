"""What steering costs: the steered continuation read by the unsteered model.

- perplexity of a continuation = exp(−mean log p_unsteered(token | prompt, earlier tokens)); the steered text's
  perplexity is compared with the unsteered text's (both read by the unsteered model): a ratio near 1 means the
  steered text is as plausible to the original model as its own output;
- distinct-token ratio = distinct token ids / tokens in the continuation (repetition loops score low);
- per token of the steered continuation: p under the steered model (what generated it) and under the unsteered
  model; their difference is the strip the app shades.

A steering effect is reported only beside its cost: a vector that moves a preference by many nats while the text
degenerates into `" the the the"` is not a result. `FLUENT` states the bounds the defaults are held to.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from jaxtyping import Int
from torch import Tensor

from headscope.codec import JsonCodec
from headscope.models.handle import Hooks, ModelHandle
from headscope.steering.generate import Generation

MAX_PERPLEXITY_RATIO = 2.0
MIN_DISTINCT_RATIO = 0.5


def continuation_logprobs(
    handle: ModelHandle, prompt_ids: Int[Tensor, "1 pos"], continuation: Sequence[int], hooks: Hooks = ()
) -> list[float]:
    """log p(continuation[i] | prompt, continuation[:i]) in one forward pass."""
    cont = torch.tensor([list(continuation)], dtype=torch.long, device=prompt_ids.device)
    logits = handle.forward(torch.cat([prompt_ids, cont], dim=1), fwd_hooks=hooks)[0].float()
    n = prompt_ids.shape[1]
    logp = logits[n - 1 : n - 1 + len(continuation)].log_softmax(-1)
    return logp.gather(-1, cont[0].unsqueeze(-1).to(logp.device)).squeeze(-1).tolist()


def perplexity(logprobs: Sequence[float]) -> float:
    return math.exp(-sum(logprobs) / len(logprobs))


def distinct_ratio(ids: Sequence[int]) -> float:
    return len(set(ids)) / len(ids) if ids else 1.0


BOUNDS = {"max_perplexity_ratio": MAX_PERPLEXITY_RATIO, "min_distinct_ratio": MIN_DISTINCT_RATIO}


@dataclass(frozen=True)
class Cost(JsonCodec):
    """Stored as the JSON carries it (perplexities and ratios to 4 decimals, probabilities to 5), so the derived
    ratio and verdict of a cost read back from JSON are the same as the original's."""

    perplexity_unsteered: float  # the unsteered continuation, under the unsteered model
    perplexity_steered: float  # the steered continuation, under the unsteered model
    distinct_unsteered: float
    distinct_steered: float
    p_steered: tuple[float, ...]  # each steered token: p under the steered model
    p_unsteered: tuple[float, ...]  # ... and under the unsteered model

    json_extra: ClassVar[tuple[str, ...]] = ("perplexity_ratio", "fluent", "bounds")

    @property
    def perplexity_ratio(self) -> float:
        return self.perplexity_steered / self.perplexity_unsteered

    @property
    def fluent(self) -> bool:
        return self.perplexity_ratio <= MAX_PERPLEXITY_RATIO and self.distinct_steered >= MIN_DISTINCT_RATIO

    @property
    def bounds(self) -> dict[str, float]:
        return dict(BOUNDS)

    @property
    def p_change(self) -> tuple[float, ...]:
        return tuple(a - b for a, b in zip(self.p_steered, self.p_unsteered, strict=True))


def token_strip(steered: Generation, cost: Cost) -> list[dict[str, Any]]:
    """Per steered token: its text, p under the steered and the unsteered model, and the change."""
    return [
        {"token": tok, "p_steered": a, "p_unsteered": b, "change": round(a - b, 5)}
        for tok, a, b in zip(steered.tokens, cost.p_steered, cost.p_unsteered, strict=True)
    ]


def steering_cost(
    handle: ModelHandle,
    prompt_ids: Int[Tensor, "1 pos"],
    unsteered: Sequence[int],
    steered: Sequence[int],
    steer_hooks: Hooks,
) -> Cost:
    """The cost of a steered continuation against the unsteered one (three forward passes).

    `steer_hooks` must be what generated `steered` (position-aware hooks built for this prompt's length)."""
    plain_lp = continuation_logprobs(handle, prompt_ids, unsteered)
    read_lp = continuation_logprobs(handle, prompt_ids, steered)
    own_lp = continuation_logprobs(handle, prompt_ids, steered, steer_hooks)
    return Cost(
        round(perplexity(plain_lp), 4), round(perplexity(read_lp), 4), round(distinct_ratio(unsteered), 4),
        round(distinct_ratio(steered), 4), tuple(round(math.exp(x), 5) for x in own_lp),
        tuple(round(math.exp(x), 5) for x in read_lp),
    )  # fmt: skip
