"""One trace format for every strategy: what was drafted, what was accepted, what it cost, step by step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Where a step's drafted tokens came from. "none" = no draft: the verifier alone produced the step's token.
DRAFT_SOURCES = ("none", "draft_model", "layer_skip", "lookup", "trigram", "jacobi")


@dataclass(frozen=True)
class Step:
    """One verifier pass (or one constrained sampling step).

    `accepted` = the drafted tokens the verifier accepted, then the one token the verifier itself produced (the
    correction or bonus token), so `len(accepted) == n_draft_accepted + 1` except where generation stopped early.
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
            "constraint_evals": self.constraint_evals,
            "log_weight": None if self.log_weight is None else round(self.log_weight, 6),
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
    setup_forwards: int = 0  # draft-side forwards spent outside steps (layer-skip search), counted as draft
    notes: tuple[str, ...] = ()

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
            "constraint_evals_per_token": None if cpt is None else round(cpt, 3),
            "notes": list(self.notes),
            "steps": [s.to_json() for s in self.steps],
        }
