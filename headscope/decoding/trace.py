"""One trace format for every strategy: what was drafted, what was accepted, what it cost, what the attention did,
step by step."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

# Where a step's drafted tokens came from. "none" = no draft: the verifier alone produced the step's token.
DRAFT_SOURCES = ("none", "draft_model", "layer_skip", "lookup", "trigram", "jacobi", "lookahead")


def _rounded(x: Tensor, digits: int) -> list[Any]:
    return torch.round(x.float(), decimals=digits).tolist()


@dataclass(frozen=True)
class Step:
    """One verifier pass (or one constrained sampling step).

    `accepted` = the drafted tokens the verifier accepted, then the one token the verifier itself produced (the
    correction or bonus token), so `len(accepted) == n_draft_accepted + 1` except where generation stopped early.
    `attention_bits` [accepted, layer, head]: the attention entropy (bits) of the query row that produced each
    accepted token (recorded with `attention_entropy=True`).
    """

    index: int
    draft_tokens: tuple[int, ...]
    draft_source: str
    accepted: tuple[int, ...]
    n_draft_accepted: int
    verifier_probs: tuple[float, ...]  # the verifier's probability of each accepted token
    entropies_bits: tuple[float, ...]  # entropy of the next-token distribution at each accepted position
    target_forwards: int
    draft_forwards: int
    wall_ms: float
    constraint_evals: int = 0
    log_weight: float | None = None  # constrained decoding: log of this step's importance weight
    draft_ms: float = 0.0  # of wall_ms, the time spent drafting
    attention_bits: Float[Tensor, "tok layer head"] | None = field(default=None, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "draft_tokens": list(self.draft_tokens),
            "draft_source": self.draft_source,
            "accepted": list(self.accepted),
            "n_draft_accepted": self.n_draft_accepted,
            "verifier_probs": [round(p, 6) for p in self.verifier_probs],
            "entropies_bits": [round(h, 4) for h in self.entropies_bits],
            "target_forwards": self.target_forwards,
            "draft_forwards": self.draft_forwards,
            "wall_ms": round(self.wall_ms, 3),
            "draft_ms": round(self.draft_ms, 3),
            "constraint_evals": self.constraint_evals,
            "log_weight": None if self.log_weight is None else round(self.log_weight, 6),
            "attention_entropy_bits": None
            if self.attention_bits is None
            else _rounded(self.attention_bits, 4),
        }


@dataclass(frozen=True)
class SmcStep:
    """One SMC step over all particles: the log weights after it, the effective sample size, and whether the
    particles were resampled (then `ancestors[i]` is the particle that particle i continues)."""

    index: int
    log_weights: tuple[float, ...]
    ess: float
    resampled: bool
    ancestors: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "log_weights": [round(w, 6) for w in self.log_weights],
            "ess": round(self.ess, 4),
            "resampled": self.resampled,
            "ancestors": list(self.ancestors),
        }


@dataclass(frozen=True)
class SkipReport:
    """layer_skip: the skip set used for drafting (reusable as `skip_layers`), its share of the model, the search."""

    skip_layers: str  # "a3,m5,..." (a = attention, m = MLP sublayer of that layer)
    skipped: int  # sublayers skipped
    sublayers: int  # sublayers in the model (2 per layer)
    compute_share: float  # the skipped sublayers' share of a one-token forward's multiply-adds
    matchness: float | None
    search_iterations: int
    search_forwards: int
    stopped: str

    @property
    def fraction(self) -> float:
        return self.skipped / self.sublayers

    def to_json(self) -> dict[str, Any]:
        return {
            "skip_layers": self.skip_layers,
            "skipped": self.skipped,
            "sublayers": self.sublayers,
            "skipped_fraction": round(self.fraction, 4),
            "compute_share": round(self.compute_share, 4),
            "matchness": None if self.matchness is None else round(self.matchness, 4),
            "search_iterations": self.search_iterations,
            "search_forwards": self.search_forwards,
            "stopped": self.stopped,
        }


@dataclass(frozen=True)
class Trace:
    """A whole run of one strategy on one prompt."""

    strategy: str
    lossless: bool
    prompt_ids: tuple[int, ...]
    token_ids: tuple[int, ...]
    text: str
    steps: tuple[Step, ...]
    wall_s: float
    setup_forwards: int = (
        0  # forwards spent outside steps (layer-skip search, mean ablation), counted as draft
    )
    notes: tuple[str, ...] = ()
    draft_cost: float | None = (
        None  # layer_skip: a draft forward's measured time / a full forward's, same context
    )
    intervention: str | None = None  # the head set ablated or dialled during the run, if any
    smc: tuple[SmcStep, ...] = ()
    layer_skip: SkipReport | None = None

    @property
    def target_forwards(self) -> int:
        return sum(s.target_forwards for s in self.steps)

    @property
    def draft_forwards(self) -> int:
        return sum(s.draft_forwards for s in self.steps) + self.setup_forwards

    @property
    def n_drafted(self) -> int:
        return sum(len(s.draft_tokens) for s in self.steps)

    @property
    def acceptance_rate(self) -> float | None:
        """Accepted drafted tokens / drafted tokens; None where nothing was drafted."""
        n = self.n_drafted
        return sum(s.n_draft_accepted for s in self.steps) / n if n else None

    @property
    def tokens_per_target_forward(self) -> float:
        """MAT: mean accepted tokens per target forward."""
        return len(self.token_ids) / self.target_forwards if self.target_forwards else 0.0

    @property
    def tokens_per_second(self) -> float:
        return len(self.token_ids) / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def constraint_evals(self) -> int:
        return sum(s.constraint_evals for s in self.steps)

    @property
    def constraint_evals_per_token(self) -> float | None:
        n = self.constraint_evals
        return n / len(self.token_ids) if n and self.token_ids else None

    @property
    def attention_entropy(self) -> Float[Tensor, "tok layer head"] | None:
        """Per generated token, the entropy (bits) of every head's attention in the row that produced it."""
        rows = [s.attention_bits for s in self.steps]
        if not rows or any(r is None for r in rows):
            return None
        return torch.cat([r for r in rows if r is not None])

    def to_json(self) -> dict[str, Any]:
        rate = self.acceptance_rate
        cpt = self.constraint_evals_per_token
        return {
            "name": self.strategy,
            "lossless": self.lossless,
            "token_ids": list(self.token_ids),
            "text": self.text,
            "target_forwards": self.target_forwards,
            "draft_forwards": self.draft_forwards,
            "acceptance_rate": None if rate is None else round(rate, 4),
            "tokens_per_target_forward": round(self.tokens_per_target_forward, 4),
            "tokens_per_second": round(self.tokens_per_second, 3),
            "wall_s": round(self.wall_s, 4),
            "draft_cost": None if self.draft_cost is None else round(self.draft_cost, 4),
            "constraint_evals_per_token": None if cpt is None else round(cpt, 3),
            "intervention": self.intervention,
            "notes": list(self.notes),
            "steps": [s.to_json() for s in self.steps],
            "smc": [s.to_json() for s in self.smc],
            "layer_skip": None if self.layer_skip is None else self.layer_skip.to_json(),
        }
