"""SWIFT-style self-speculation: the target model with a searched set of skipped sublayers drafts for itself.

Skipping is real: the draft forwards run with `models.skip.ForwardSwitch.skip` set, so a skipped attention or MLP
sublayer is not computed at all (its residual branch adds nothing) and writes no keys/values. The draft shares the
target's KV cache for the committed prefix; after drafting, every cached position from the pending token on is
dropped in every layer (`crop_cache`), so the verifier sees only full-model keys and values.

Search (SWIFT §3 on the model's own output; papers.md §6.2):
- start: the `n_skip = ⌊r · |space|⌋` sublayers (space: attention and MLP of layers 1…L−2) that change the
  residual stream least, measured on the last `search_window` prompt tokens (one hooked forward);
- then one iteration per decoding step: a proposal — SWIFT's uniformly random skip set on even iterations, a
  neighbour of the kept set (one skipped sublayer swapped for a kept one) on odd ones, standing in for SWIFT's
  Bayesian-optimisation proposals (no GP package here) — scored by *matchness*: the fraction of the last
  `search_window` context positions where the skipped model's argmax equals the token that followed. Kept if it
  beats the kept set (re-scored on the same window once that has moved by half its length);
- stop once matchness ≥ 0.9, once the drafts' running acceptance over the last 8 steps reaches `accept_stop`
  (SWIFT's acceptance-driven early stop), or after `search_steps` iterations. `skip_layers` fixes a set (found
  on an earlier prompt of the same task, as SWIFT reuses its set) and skips the search; `task` takes the set
  searched once for (model, task) — a cost-aware search, cached (`skip_sets.py`) — and skips the per-step one.
Drafting is confidence-aware: it stops once the draft's top-1 probability falls below `min_draft_confidence`.

`draft_cost` in the trace: after the run (outside its wall time), alternating one-token forwards with and without
the skip set on the final context, timed; the median ratio.
"""

from __future__ import annotations

import random
import statistics
import time
from collections import deque
from collections.abc import Sequence

import torch

from headscope.decoding.cache import CachedModel, common_prefix
from headscope.decoding.config import DecodeConfig
from headscope.decoding.drafters import Draft, model_draft
from headscope.decoding.skip_sets import (
    cache_key,
    contribution_ranking,
    format_skip,
    lookup,
    parse_skip,
    search_skip_set,
    store,
)
from headscope.decoding.trace import SkipReport
from headscope.models import ModelHandle
from headscope.models.skip import Sublayer, skippable, sublayer_macs

MATCH_GOAL = 0.9
ACCEPT_WINDOW = 8  # steps in the running acceptance rate
CALIBRATION_ROUNDS = 3


class LayerSkipDrafter:
    def __init__(self, handle: ModelHandle, target: CachedModel, cfg: DecodeConfig, gen: torch.Generator):
        self.handle, self.target, self.cfg, self.gen = handle, target, cfg, gen
        self.space = skippable(handle.facts.n_layers)
        self.n_skip = max(1, int(len(self.space) * cfg.skip_ratio)) if self.space else 0
        fixed = cfg.skip_layers is not None
        self.skip: frozenset[Sublayer] | None = (
            parse_skip(cfg.skip_layers or "", handle.facts.n_layers) if fixed else None
        )
        self.task_key = cache_key(handle, cfg) if cfg.task is not None and not fixed else None
        self.source = "given (skip_layers)" if fixed else "searched in this run"
        self.cap = cfg.max_draft  # the task's set comes with the draft length that pays best
        self.searching = not fixed and self.task_key is None and cfg.search_steps > 0 and bool(self.space)
        self.best, self.scored_at, self.iterations, self.search_forwards = -1.0, -1, 0, 0
        self.rng = random.Random(cfg.seed)
        self.recent: deque[tuple[int, int]] = deque(maxlen=ACCEPT_WINDOW)  # (accepted, drafted) per step
        self.history: list[tuple[int, float]] = []  # (iteration, matchness of the kept set)
        self.stopped = "fixed skip set" if fixed else ""
        self._macs: tuple[int, dict[Sublayer, float], float] | None = None

    @property
    def token_cost(self) -> float:
        """What a drafted token costs, as a fraction of a full forward (1 − the skipped compute share; measured
        draft costs sit within a few points of it) — for the draft budget."""
        # (the attention's share grows with the keys; a step's worth of keys changes it by nothing visible)
        return 1.0 - self.skipped_share(len(self.target.tokens) // 64 * 64) if self.skip else 0.0

    def propose(self, context: list[int], k: int) -> Draft:
        # Draft only on top of full-model keys/values for the whole committed prefix (not on the first step).
        if k <= 0 or common_prefix(self.target.tokens, context) < len(context) - 1:
            return Draft([], "layer_skip", [], 0)
        before = self.search_forwards
        if self.skip is None and self.task_key is not None:
            self._from_task(context, self.task_key)
        if self.skip is None:
            self.skip = frozenset(self._ranked(context)[: self.n_skip])
        self._search_once(context)
        if not self.skip:  # no set pays: decode as greedy does
            return Draft([], "layer_skip", [], self.search_forwards - before)
        drafts_before = self.target.forwards
        try:
            tokens, rows = model_draft(
                self.target, context, min(k, self.cap), self.cfg, self.gen, skip=self.skip
            )
        finally:
            # Drop the skipped model's keys/values at once: the verifier must see only full-model ones.
            self.target.truncate(len(context) - 1)
        spent = self.target.forwards - drafts_before + self.search_forwards - before
        return Draft(tokens, "layer_skip", list(rows), spent)

    def observe(self, p_rows: torch.Tensor, n_accepted: int, draft: Draft, path: Sequence[int] = ()) -> None:
        if draft.tokens:
            self.recent.append((n_accepted, len(draft.tokens)))

    def _from_task(self, context: list[int], key: str) -> None:
        """The (model, task) set: from the cache, else searched here once (on this prompt) and stored."""
        choice = lookup(key)
        task = self.cfg.task
        if choice is None:
            choice = search_skip_set(self.handle, self.target, context, self.cfg)
            store(key, choice)
            self.search_forwards += choice.search_forwards
            self.source = f"searched for task {task!r} in this run (cached for its later prompts)"
        else:
            self.source = f"cached for task {task!r}"
        layers = choice.skip_layers
        self.skip = parse_skip(layers, self.handle.facts.n_layers) if layers else frozenset()
        self.best, self.cap = choice.agreement, max(1, choice.draft_length)
        pays = f"expected x{choice.expected_speedup:.2f} at {choice.draft_length} drafted tokens"
        self.stopped = pays if self.skip else "no skip set pays on this model (greedy steps)"

    def _ranked(self, context: list[int]) -> list[Sublayer]:
        self.search_forwards += 1
        return contribution_ranking(self.target, context, self.space, self.cfg.search_window)

    # -- matchness search -------------------------------------------------------------------------------------
    def matchness(self, context: list[int], skip: frozenset[Sublayer]) -> float:
        w = min(self.cfg.search_window, len(context) - 1)
        start = len(context) - 1 - w
        self.search_forwards += 1
        logits = self.target.logits_aside(context[:-1], start, skip=skip)
        hits = logits.argmax(-1) == torch.tensor(context[start + 1 :], device=logits.device)
        return float(hits.float().mean())

    def _stop_reason(self) -> str:
        drafted = sum(d for _, d in self.recent)
        if (
            len(self.recent) == ACCEPT_WINDOW
            and sum(a for a, _ in self.recent) >= self.cfg.accept_stop * drafted
        ):
            return f"running acceptance ≥ {self.cfg.accept_stop:g}"
        if self.best >= MATCH_GOAL:
            return f"matchness ≥ {MATCH_GOAL:g}"
        if self.iterations >= self.cfg.search_steps:
            return f"{self.cfg.search_steps} iterations"
        return ""

    def _search_once(self, context: list[int]) -> None:
        if not self.searching or len(context) < 8 or self.skip is None:
            return
        self.stopped = self._stop_reason()
        if self.stopped:
            self.searching = False
            return
        if self.scored_at < 0 or len(context) - self.scored_at >= self.cfg.search_window // 2:
            self.best, self.scored_at = self.matchness(context, self.skip), len(context)
        candidate = self._proposal(self.skip)
        if candidate is not None and self.best < MATCH_GOAL:
            score = self.matchness(context, candidate)
            if score > self.best:
                self.skip, self.best, self.scored_at = candidate, score, len(context)
        self.iterations += 1
        self.history.append((self.iterations, self.best))

    def _proposal(self, skip: frozenset[Sublayer]) -> frozenset[Sublayer] | None:
        if self.iterations % 2 == 0:  # SWIFT's random proposal
            return frozenset(self.rng.sample(self.space, self.n_skip))
        kept = [s for s in self.space if s not in skip]
        if not kept or not skip:
            return None
        out = self.rng.choice(sorted(skip))
        return (skip - {out}) | {self.rng.choice(kept)}

    # -- report -----------------------------------------------------------------------------------------------
    def draft_cost(self, context: list[int]) -> float | None:
        """Median time of a one-token draft forward / a full one at the end of `context` (cache left as is)."""
        if not self.skip or len(context) < 2:
            return None
        ratios = []
        for _ in range(CALIBRATION_ROUNDS):
            full = self._time_forward(context, frozenset())
            ratios.append(self._time_forward(context, self.skip) / full)
        return statistics.median(ratios)

    def _time_forward(self, context: list[int], skip: frozenset[Sublayer]) -> float:
        t0 = time.perf_counter()
        self.target.logits_aside(context, len(context) - 1, skip=skip)
        return time.perf_counter() - t0

    def skipped_share(self, n_keys: int) -> float:
        """The skipped sublayers' share of a one-token forward's multiply-adds at `n_keys` keys."""
        if self._macs is None or self._macs[0] != n_keys:
            self._macs = (n_keys, *sublayer_macs(self.handle, n_keys))
        _, macs, total = self._macs
        return sum(macs[s] for s in self.skip or ()) / total

    def report(self, n_keys: int) -> SkipReport:
        skip = self.skip or frozenset()
        return SkipReport(
            skip_layers=format_skip(skip),
            skipped=len(skip),
            sublayers=2 * self.handle.facts.n_layers,
            compute_share=self.skipped_share(n_keys),
            matchness=self.best if self.best >= 0 else None,
            search_iterations=self.iterations,
            search_forwards=self.search_forwards,
            stopped=self.stopped,
            source=self.source,
        )

    def notes(self, n_keys: int) -> tuple[str, ...]:
        r = self.report(n_keys)
        return (
            f"skipped sublayers ({r.skipped} of {r.sublayers}, {r.skipped_fraction:.0%}; {r.compute_share:.0%} of a "
            f"forward's multiply-adds): {r.skip_layers or 'none'}",
            "matchness not measured"
            if r.matchness is None
            else f"matchness of the kept set: {r.matchness:.3f}",
            f"skip set {r.source}; search: {r.search_iterations} iterations, {r.search_forwards} forwards"
            + (f"; stopped: {r.stopped}" if r.stopped else ""),
        )
