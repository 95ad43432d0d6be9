"""SWIFT-style self-speculation: the target model with a searched set of skipped sublayers drafts for itself.

Skipping a sublayer = replacing its output (`blocks.{l}.hook_attn_out` / `hook_mlp_out`) by zeros, so the
residual stream passes it unchanged. The draft shares the target's KV cache for the committed prefix; the drafted
positions are cropped before the target verifies them, so the verifier never sees a skipped layer's keys/values.

Search (SWIFT §3, simplified): the skip set starts from the sublayers that contribute least to the residual stream
on the prompt (one extra forward); then, one iteration per decoding step, a neighbour (one skipped sublayer swapped
for a kept one) is scored by "matchness" — the fraction of the last `search_window` context positions where the
skipped model's argmax equals the token that actually followed — and kept if it scores higher. The search stops
at matchness ≥ 0.9 or after `search_steps` iterations. SWIFT's Bayesian-optimisation proposals are replaced by
this local search (no GP package here). Drafting is confidence-aware: it stops once the draft's top-1
probability falls below `min_draft_confidence`.

The skip hooks are attached once per run on every skippable sublayer and switched on only while drafting or
scoring (attaching hooks through the bridge costs tens of ms each, far more than a cached step).
The zeroed sublayers are still computed (hooks cannot skip a module's work), so the draft costs as much wall
time as a full forward: the gain shows in tokens per target forward, not in CPU wall time.
"""

from __future__ import annotations

import random

import torch
from torch import Tensor

from headscope.decoding.cache import CachedModel, common_prefix
from headscope.decoding.config import DecodeConfig
from headscope.decoding.drafters import Draft, model_draft
from headscope.models import ModelHandle, hooks
from headscope.models.handle import HookFn

MATCH_GOAL = 0.9
Sublayer = tuple[str, int]  # ("attn" | "mlp", layer)


def skippable(n_layers: int) -> list[Sublayer]:
    """Attention and MLP of every layer but the first and the last (all but the first in a ≤3-layer model)."""
    layers = range(1, n_layers - 1) if n_layers > 3 else range(1, n_layers)
    return [(kind, layer) for layer in layers for kind in ("attn", "mlp")]


def skip_hooks(skip: frozenset[Sublayer]) -> list[tuple[str, HookFn]]:
    def zero(act: Tensor, hook: object) -> Tensor:
        return torch.zeros_like(act)

    return [(hooks.sublayer_out(layer, kind), zero) for kind, layer in sorted(skip)]


def contribution_ranking(handle: ModelHandle, prompt: list[int], space: list[Sublayer]) -> list[Sublayer]:
    """Sublayers by mean ‖output‖ / ‖residual in‖ on the prompt, smallest first (the cheapest to skip)."""
    names = {s: hooks.sublayer_out(s[1], s[0]) for s in space}
    resid = {layer: hooks.resid(layer, "pre") for _, layer in space}
    ids = torch.tensor([prompt], device=handle.device)
    _, acts = handle.run_with_cache(ids, sorted(set(names.values()) | set(resid.values())))

    def score(s: Sublayer) -> float:
        out, res = acts[names[s]][0], acts[resid[s[1]]][0]
        return float((out.norm(dim=-1) / res.norm(dim=-1).clamp_min(1e-6)).mean())

    return sorted(space, key=score)


class LayerSkipDrafter:
    def __init__(self, handle: ModelHandle, target: CachedModel, cfg: DecodeConfig, gen: torch.Generator):
        self.handle, self.target, self.cfg, self.gen = handle, target, cfg, gen
        self.space = skippable(handle.facts.n_layers)
        self.n_skip = max(1, int(len(self.space) * self.cfg.skip_ratio)) if self.space else 0
        self.skip: frozenset[Sublayer] | None = None
        self.active: frozenset[Sublayer] = frozenset()  # what the switch hooks zero right now
        self.best = -1.0
        self.iterations = 0
        self.rng = random.Random(cfg.seed)
        self.setup_forwards = 0
        self.history: list[tuple[int, float]] = []  # (iteration, matchness of the kept set)

    def switch_hooks(self) -> list[tuple[str, HookFn]]:
        """Hooks on every skippable sublayer, for the whole run; each zeroes its output only while active."""

        def hook_for(sub: Sublayer) -> HookFn:
            def maybe_zero(act: Tensor, hook: object) -> Tensor:
                return torch.zeros_like(act) if sub in self.active else act

            return maybe_zero

        return [(hooks.sublayer_out(layer, kind), hook_for((kind, layer))) for kind, layer in self.space]

    def start(self, prompt: list[int]) -> None:
        ranked = contribution_ranking(self.handle, prompt, self.space) if self.space else []
        self.setup_forwards += 1 if self.space else 0
        self.skip = frozenset(ranked[: self.n_skip])

    def propose(self, context: list[int], k: int) -> Draft:
        searched = self._search_once(context)
        # Draft only on top of full-model keys/values for the whole committed prefix (not on the first step).
        if k <= 0 or common_prefix(self.target.tokens, context) < len(context) - 1:
            return Draft([], "layer_skip", [], searched)
        before = self.target.forwards
        try:
            self.active = self.skip or frozenset()
            tokens, rows = model_draft(self.target, context, k, self.cfg, self.gen)
        finally:
            self.active = frozenset()
            # Drop the skipped model's keys/values at once: the verifier must see only full-model ones.
            self.target.truncate(len(context) - 1)
        return Draft(tokens, "layer_skip", list(rows), self.target.forwards - before + searched)

    def observe(self, p_rows: Tensor, n_accepted: int, draft: Draft) -> None:
        return None

    # -- matchness search -------------------------------------------------------------------------------------
    def matchness(self, context: list[int], skip: frozenset[Sublayer]) -> float:
        w = min(self.cfg.search_window, len(context) - 1)
        start = len(context) - 1 - w
        try:
            self.active = skip
            logits = self.target.logits_on_copy(context[:-1], start)
        finally:
            self.active = frozenset()
        hits = logits.argmax(-1) == torch.tensor(context[start + 1 :], device=logits.device)
        return float(hits.float().mean())

    def _search_once(self, context: list[int]) -> int:
        """One search iteration; returns the forwards it cost."""
        if self.skip is None or not self.space or self.best >= MATCH_GOAL:
            return 0
        if self.iterations >= self.cfg.search_steps or len(context) < 8 or self.target.cache is None:
            return 0
        # Re-score the kept set on the current context too, so both are judged on the same tokens.
        self.best, forwards = self.matchness(context, self.skip), 1
        candidate = self._neighbour(self.skip)
        if candidate is not None and self.best < MATCH_GOAL:
            score = self.matchness(context, candidate)
            forwards += 1
            if score > self.best:
                self.skip, self.best = candidate, score
        self.iterations += 1
        self.history.append((self.iterations, self.best))
        return forwards

    def _neighbour(self, skip: frozenset[Sublayer]) -> frozenset[Sublayer] | None:
        kept = [s for s in self.space if s not in skip]
        if not kept or not skip:
            return None
        out = self.rng.choice(sorted(skip))
        return (skip - {out}) | {self.rng.choice(kept)}
