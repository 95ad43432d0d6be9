"""One trace format for every strategy: what was drafted (a chain or a tree), what was accepted, what it cost, what
the attention did, step by step. Every type here goes to JSON and back through `headscope.codec`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from headscope.codec import JsonCodec, jfield

# Where a step's drafted tokens came from. "none" = no draft: the verifier alone produced the step's token.
DRAFT_SOURCES = (
    "none", "draft_model", "layer_skip", "lookup", "trigram", "jacobi", "lookahead", "recycling", "ngram_tree",
)  # fmt: skip


def _tensor(data: Any) -> Tensor:
    return torch.tensor(data, dtype=torch.float32)


@dataclass(frozen=True)
class Step(JsonCodec):
    """One verifier pass (or one constrained sampling step).

    `draft_tokens` are the drafted nodes; `draft_parents` (None: a chain) gives each node's parent among them
    (−1: the pending token, the tree's root), so the drafted tree is (draft_tokens, draft_parents).
    `accepted_path` = the indices of the drafted tokens the verifier accepted, root to leaf (a chain's: 0, 1, …).
    `accepted` = those tokens, then the one token the verifier itself produced (the correction or bonus token),
    so `len(accepted) == n_draft_accepted + 1` except where generation stopped early.
    `attention_bits` [accepted, layer, head]: the attention entropy (bits) of the query row that produced each
    accepted token (recorded with `attention_entropy=True`).
    """

    index: int
    draft_tokens: tuple[int, ...]
    draft_source: str
    accepted: tuple[int, ...]
    n_draft_accepted: int
    verifier_probs: tuple[float, ...] = jfield(digits=6)  # the verifier's probability of each accepted token
    # entropy of the next-token distribution at each accepted position
    entropies_bits: tuple[float, ...] = jfield(digits=4)
    target_forwards: int = 1
    draft_forwards: int = 0
    wall_ms: float = jfield(digits=3, default=0.0)
    constraint_evals: int = 0
    log_weight: float | None = jfield(digits=6, default=None)  # constrained: log of this step's weight
    draft_ms: float = jfield(digits=3, default=0.0)  # of wall_ms, the time spent drafting
    attention_bits: Float[Tensor, "tok layer head"] | None = jfield(
        name="attention_entropy_bits", digits=4, decode=_tensor, default=None, compare=False, repr=False
    )
    draft_parents: tuple[int, ...] | None = None
    accepted_path: tuple[int, ...] = ()

    json_extra = ("accepted_length",)

    @property
    def accepted_length(self) -> int:
        """Tokens this step added (the accepted path and the verifier's own token)."""
        return len(self.accepted)


@dataclass(frozen=True)
class SmcStep(JsonCodec):
    """One SMC step over all particles: the log weights after it, the effective sample size, and whether the
    particles were resampled (then `ancestors[i]` is the particle that particle i continues)."""

    index: int
    log_weights: tuple[float, ...] = jfield(digits=6)
    ess: float = jfield(digits=4)
    resampled: bool = False
    ancestors: tuple[int, ...] = ()


@dataclass(frozen=True)
class SkipReport(JsonCodec):
    """layer_skip: the skip set used for drafting (reusable as `skip_layers`), its share of the model, the search,
    and where the set came from (searched in this run, or the cached set of its model and task)."""

    skip_layers: str  # "a3,m5,..." (a = attention, m = MLP sublayer of that layer)
    skipped: int  # sublayers skipped
    sublayers: int  # sublayers in the model (2 per layer)
    # the skipped sublayers' share of a one-token forward's multiply-adds
    compute_share: float = jfield(digits=4)
    matchness: float | None = jfield(digits=4)
    search_iterations: int = 0
    search_forwards: int = 0
    stopped: str = ""
    source: str = "searched in this run"  # or "cached for (model, task)", "given (skip_layers)"

    json_extra = ("skipped_fraction",)

    @property
    def skipped_fraction(self) -> float:
        return round(self.skipped / self.sublayers, 4)


@dataclass(frozen=True)
class Trace(JsonCodec):
    """A whole run of one strategy on one prompt."""

    strategy: str = jfield(name="name")
    lossless: bool = True
    prompt_ids: tuple[int, ...] = ()
    token_ids: tuple[int, ...] = ()
    text: str = ""
    steps: tuple[Step, ...] = ()
    wall_s: float = jfield(digits=4, default=0.0)
    setup_forwards: int = (
        0  # forwards spent outside steps (layer-skip search, mean ablation), counted as draft
    )
    notes: tuple[str, ...] = ()
    # layer_skip: a draft forward's measured time / a full forward's, same context
    draft_cost: float | None = jfield(digits=4, default=None)
    intervention: str | None = None  # the heads ablated or dialled during the run, if any
    smc: tuple[SmcStep, ...] = ()
    layer_skip: SkipReport | None = None

    json_extra = (
        "target_forwards", "draft_forwards", "acceptance_rate", "tokens_per_target_forward", "tokens_per_second",
        "constraint_evals_per_token",
    )  # fmt: skip

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
        """Accepted drafted tokens / drafted tokens; None where nothing was drafted (a tree drafts many nodes
        of which one path at most is accepted: its rate is low by construction — compare MAT instead)."""
        n = self.n_drafted
        return round(sum(s.n_draft_accepted for s in self.steps) / n, 4) if n else None

    @property
    def tokens_per_target_forward(self) -> float:
        """MAT: mean accepted tokens per target forward."""
        return round(len(self.token_ids) / self.target_forwards, 4) if self.target_forwards else 0.0

    @property
    def tokens_per_second(self) -> float:
        return round(len(self.token_ids) / self.wall_s, 3) if self.wall_s > 0 else 0.0

    @property
    def constraint_evals(self) -> int:
        return sum(s.constraint_evals for s in self.steps)

    @property
    def constraint_evals_per_token(self) -> float | None:
        n = self.constraint_evals
        return round(n / len(self.token_ids), 3) if n and self.token_ids else None

    @property
    def attention_entropy(self) -> Float[Tensor, "tok layer head"] | None:
        """Per generated token, the entropy (bits) of every head's attention in the row that produced it."""
        rows = [s.attention_bits for s in self.steps]
        if not rows or any(r is None for r in rows):
            return None
        return torch.cat([r for r in rows if r is not None])
