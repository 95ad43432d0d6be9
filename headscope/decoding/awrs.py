"""Adaptive weighted rejection sampling of one token under a boolean constraint (Lipkin et al. 2025, papers.md
§6.2 and §9.5), and token masking as the exact baseline.

AWRS visits tokens in Gumbel-top-k order — sampling *without replacement* from the LM's distribution p — and
tests the constraint only on visited tokens. The first accepted token is an exact sample from p·c / Z, where
Z = Σ p(x)·c(x) is the constrained mass. There is no rejection cap: the walk ends at the first accepted token, and
only a walk through the whole vocabulary with nothing accepted says the constraint admits no token (one clear
error). It also returns an unbiased estimate of Z, the step's importance weight for SMC:

- **recursive** (used when max p < 2/3): along the walk keep the rejected mass R and Σ log(1 − q_k) with
  q_k = p_k / (1 − R_{k−1}); at the first accepted token x test one more: the estimate is that product × 1 if it
  is accepted too, × q_x if not;
- **geometric** (peaked distributions): simulate sampling *with replacement* — between two new tokens of the walk
  a with-replacement sampler would redraw seen tokens, a Geometric number of times (rejected ones: phantom
  rejections, the accepted one: a repeat accept) — until `max_accepts` accepts; with n trials in all, the
  negative-binomial estimate (max_accepts − 1) / (n − 1) is unbiased. If the walk exhausts the vocabulary first,
  Z is known exactly (the accepted mass seen).
Masking tests every token, samples among the allowed ones, and knows Z exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from headscope.errors import InputError

Accept = Callable[[int], bool]
PEAKED = (
    2.0 / 3.0
)  # above this top probability the recursive estimator's variance grows: use the geometric one


class Unsatisfiable(InputError):
    """The constraint admits no token at this step (every token of the vocabulary was tested)."""


@dataclass(frozen=True)
class Choice:
    token: int
    log_weight: float | None  # log of the estimate of Z (None: greedy, no weight)
    evals: int  # constraint evaluations
    estimator: str  # "recursive" | "geometric" | "exact" | "greedy"


def _gumbel(shape: torch.Size, gen: torch.Generator) -> Tensor:
    u = torch.rand(shape, generator=gen, dtype=torch.float64).clamp(1e-300, 1.0 - 1e-16)
    return -torch.log(-torch.log(u))


def _order(logp: Tensor, gen: torch.Generator | None) -> list[int]:
    """Visiting order: Gumbel-top-k (a sample without replacement from p), or plain descending p when greedy."""
    lp = logp.double()
    keys = lp if gen is None else lp + _gumbel(lp.shape, gen)
    keys = keys.masked_fill(~torch.isfinite(lp), -math.inf)
    n_finite = int(torch.isfinite(lp).sum())
    return torch.argsort(keys, descending=True)[:n_finite].tolist()


def _uniform(gen: torch.Generator) -> float:
    return float(torch.rand((), generator=gen, dtype=torch.float64))


def _geometric_failures(success: float, gen: torch.Generator) -> int:
    """Failures before the first success of Bernoulli(success) trials."""
    if success >= 1.0:
        return 0
    u = max(_uniform(gen), 1e-300)
    return math.floor(math.log(u) / math.log1p(-success))


def _nothing(prefix_hint: str) -> Unsatisfiable:
    return Unsatisfiable(
        f"the constraint admits no token here{prefix_hint}: every token of the vocabulary was tested"
    )


def recursive_choice(p: list[float], order: list[int], accept: Accept, hint: str = "") -> Choice:
    rejected, log_mult, evals = 0.0, 0.0, 0
    for i, tok in enumerate(order):
        q = min(1.0, p[tok] / max(1.0 - rejected, 1e-300))
        evals += 1
        if accept(tok):
            tail = q
            if i + 1 < len(order):
                evals += 1
                tail = 1.0 if accept(order[i + 1]) else q
            return Choice(tok, log_mult + math.log(max(tail, 1e-300)), evals, "recursive")
        log_mult += math.log1p(-q) if q < 1.0 else -math.inf
        rejected += p[tok]
    raise _nothing(hint)


def geometric_choice(
    p: list[float],
    order: list[int],
    accept: Accept,
    gen: torch.Generator,
    max_accepts: int = 2,
    hint: str = "",
) -> Choice:
    seen = accepted_mass = 0.0
    trials = n_acc = evals = 0
    first: int | None = None
    walk: Iterator[int] = iter(order)
    while n_acc < max_accepts:
        # Next event of the with-replacement sampler other than redrawing a rejected token.
        success = min(1.0, 1.0 - seen + accepted_mass)
        trials += (_geometric_failures(success, gen) if success > 1e-15 else 0) + 1
        if accepted_mass > 0 and _uniform(gen) < accepted_mass / success:
            n_acc += 1  # redrew an accepted token
            continue
        tok = next(walk, None)
        if tok is None:  # the whole vocabulary was visited: Z is the accepted mass, exactly
            if first is None:
                raise _nothing(hint)
            return Choice(first, math.log(accepted_mass), evals, "exact")
        evals += 1
        seen += p[tok]
        if accept(tok):
            accepted_mass += p[tok]
            n_acc += 1
            first = tok if first is None else first
    assert first is not None
    return Choice(first, math.log((max_accepts - 1) / (trials - 1)), evals, "geometric")


def awrs_choice(
    logp: Tensor, accept: Accept, gen: torch.Generator | None, *, max_accepts: int = 2, hint: str = ""
) -> Choice:
    """One AWRS step over log-probabilities `logp` [vocab]; `gen` None = greedy (the most likely allowed token)."""
    order = _order(logp, gen)
    p = logp.double().exp().tolist()
    if gen is None:
        for evals, tok in enumerate(order, start=1):
            if accept(tok):
                return Choice(tok, None, evals, "greedy")
        raise _nothing(hint)
    if max(p) < PEAKED and max_accepts <= 2:
        return recursive_choice(p, order, accept, hint)
    return geometric_choice(p, order, accept, gen, max_accepts, hint)


def mask_choice(logp: Tensor, accept: Accept, gen: torch.Generator | None, *, hint: str = "") -> Choice:
    """Test every token; sample (or take the argmax) among the allowed ones; the weight is the exact log Z."""
    lp = logp.tolist()
    finite = [t for t, v in enumerate(lp) if math.isfinite(v)]
    allowed = [t for t in finite if accept(t)]
    if not allowed:
        raise _nothing(hint)
    sub = logp[allowed].double()
    if gen is None:
        return Choice(allowed[int(sub.argmax())], None, len(finite), "greedy")
    keys = sub + _gumbel(sub.shape, gen)
    return Choice(allowed[int(keys.argmax())], float(torch.logsumexp(sub, 0)), len(finite), "exact")
