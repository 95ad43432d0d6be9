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

import torch
from jaxtyping import Int
from torch import Tensor

from headscope.models.handle import Hooks, ModelHandle

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
    return len(set(ids)) / len(ids)


@dataclass(frozen=True)
class Cost:
    perplexity_unsteered: float  # the unsteered continuation, under the unsteered model
    perplexity_steered: float  # the steered continuation, under the unsteered model
    distinct_unsteered: float
    distinct_steered: float
    p_steered: tuple[float, ...]  # each steered token: p under the steered model
    p_unsteered: tuple[float, ...]  # ... and under the unsteered model

    @property
    def perplexity_ratio(self) -> float:
        return self.perplexity_steered / self.perplexity_unsteered

    @property
    def fluent(self) -> bool:
        return self.perplexity_ratio <= MAX_PERPLEXITY_RATIO and self.distinct_steered >= MIN_DISTINCT_RATIO

    @property
    def p_change(self) -> tuple[float, ...]:
        return tuple(a - b for a, b in zip(self.p_steered, self.p_unsteered, strict=True))

    def to_json(self) -> dict:
        return {
            "perplexity_unsteered": round(self.perplexity_unsteered, 4),
            "perplexity_steered": round(self.perplexity_steered, 4),
            "perplexity_ratio": round(self.perplexity_ratio, 4),
            "distinct_unsteered": round(self.distinct_unsteered, 4),
            "distinct_steered": round(self.distinct_steered, 4),
            "fluent": self.fluent,
            "bounds": {
                "max_perplexity_ratio": MAX_PERPLEXITY_RATIO,
                "min_distinct_ratio": MIN_DISTINCT_RATIO,
            },
        }


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
        perplexity(plain_lp), perplexity(read_lp), distinct_ratio(unsteered), distinct_ratio(steered),
        tuple(math.exp(x) for x in own_lp), tuple(math.exp(x) for x in read_lp),
    )  # fmt: skip
