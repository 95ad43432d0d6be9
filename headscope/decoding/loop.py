"""The draft-then-verify loop every lossless strategy shares (greedy and sample are the no-draft case).

Each step: the drafter proposes a token tree of depth ≤ k (a chain is the one-branch case; `tree.py`); one target
forward over [pending token, drafted nodes] under the tree mask gives the verifier's distribution at every node;
the verifier accepts a root-to-node path (greedy: the longest whose tokens are the argmax at each parent; sampling:
the speculative sampling rule along the path) and adds one token of its own. The target's KV cache keeps exactly
the accepted path, so each forward feeds only new tokens. Under a locality dial, trees are verified as their first
branch (the dial's score hooks take the causal layout: queries at the last positions).

Per-step bookkeeping stays off the hot path: a step keeps its tensors (two small reductions of the verifier's
rows, the attention entropy when recorded) and becomes floats only after the last forward.
"""

from __future__ import annotations

import contextvars
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

from headscope.attention.patterns import row_entropy_bits
from headscope.decoding.cache import CachedModel
from headscope.decoding.config import DecodeConfig
from headscope.decoding.drafters import Draft, Drafter
from headscope.decoding.sampling import warp
from headscope.decoding.trace import Step, Trace
from headscope.decoding.tree import TokenTree, verify_tree
from headscope.errors import InputError
from headscope.models import ModelHandle
from headscope.progress import StepCounter

# on_step(tokens generated, max_new_tokens): a step counter (headscope/progress.py `steps` makes one from a
# `(stage, fraction)` progress).
_ON_STEP: contextvars.ContextVar[StepCounter | None] = contextvars.ContextVar(
    "headscope_decode_step", default=None
)


@contextmanager
def stepping(on_step: StepCounter | None) -> Iterator[None]:
    """Call `on_step(done, total)` after every decoding step in the block (progress, and a place to cancel: an
    exception it raises stops the run, and the session hands the model back)."""
    token = _ON_STEP.set(on_step)
    try:
        yield
    finally:
        _ON_STEP.reset(token)


def notify_step(done: int, total: int) -> None:
    callback = _ON_STEP.get()
    if callback is not None:
        callback(done, total)


def check_room(handle: ModelHandle, prompt: list[int], cfg: DecodeConfig) -> None:
    if not prompt:
        raise InputError("the prompt is empty")
    need = len(prompt) + cfg.max_new_tokens + cfg.max_draft + cfg.window + cfg.lookahead_n
    if need > handle.facts.n_ctx:
        raise InputError(
            f"prompt ({len(prompt)} tokens) + max_new_tokens + draft window exceed the model's context "
            f"({handle.facts.n_ctx}); shorten the prompt or ask for fewer tokens"
        )


class DraftBudget:
    """How many tokens the next draft may have: Hugging Face assisted generation's heuristic schedule (+2 after a
    draft accepted in full, −1 after a partly accepted one), extended down to 0: a draft with no token accepted
    pauses drafting for 1, 2, 4, … (at most `MAX_PAUSE`) steps, doubling with each such miss in a row, after
    which one token is tried again. On a CPU a forward over k tokens costs well over a one-token one (about 2× at
    9 tokens for SmolLM2 on two cores) and a layer-skip draft costs most of a full forward, so drafts that are
    not accepted cost more wall time than accepted ones save: a drafter that keeps failing is left to rest, and
    the run falls back to plain greedy steps until it is tried again.

    A drafter whose tokens cost forwards (`token_cost` c > 0, a fraction of a full forward: layer skip) also
    rests while its running acceptance over the last `WINDOW` drafts is below c + `MARGIN`: a drafted token is
    worth its forward only if it is accepted more often than it costs."""

    MAX_PAUSE = 32
    WINDOW = 8
    MARGIN = 0.1

    def __init__(self, cap: int, start: int = 4, token_cost: float = 0.0):
        self.cap, self.cost = cap, token_cost
        self.k = min(cap, start)
        self.misses = 0  # drafts in a row that did not pay
        self.pause = 0  # steps left without drafting
        self.recent: deque[tuple[int, int]] = deque(maxlen=self.WINDOW)

    def update(self, n_accepted: int, n_drafted: int) -> None:
        if n_drafted == 0:
            if self.k == 0:
                self.pause -= 1
                self.k = 1 if self.pause <= 0 else 0
            return
        self.recent.append((n_accepted, n_drafted))
        if n_accepted == 0 or not self._pays():
            self.misses += 1
            self.k, self.pause = 0, min(2 ** (self.misses - 1), self.MAX_PAUSE)
        elif n_accepted == n_drafted:
            self.k, self.misses = min(self.cap, self.k + 2), 0
        else:
            self.k, self.misses = max(1, self.k - 1), 0

    def _pays(self) -> bool:
        drafted = sum(d for _, d in self.recent)
        if self.cost <= 0 or len(self.recent) < 2:
            return True
        return sum(a for a, _ in self.recent) >= (self.cost + self.MARGIN) * drafted


@dataclass
class _Raw:
    draft: Draft
    path: list[int]  # accepted drafted tokens (indices among the drafted tokens)
    new: list[int]
    probs: Tensor  # verifier probability of each accepted token
    entropy: Tensor  # next-token entropy (bits) at each accepted position
    attention: Tensor | None
    t0: float
    t_draft: float
    t_end: float


class _Run:
    """One decoding run's moving parts: the drafter proposes a tree (a chain is one), one target forward
    verifies it, the cache keeps the accepted path."""

    def __init__(self, cfg: DecodeConfig, drafter: Drafter, target: CachedModel, gen: torch.Generator):
        self.cfg, self.drafter, self.target, self.gen = cfg, drafter, target, gen
        adaptive = cfg.adaptive_draft and getattr(drafter, "adaptive", True)
        self.budget = DraftBudget(cfg.max_draft) if adaptive else None
        # the dial's score hooks take the causal layout (a query at the last positions): trees go as chains
        iv = target.intervention
        self.chains_only = iv is not None and iv.dials
        self.primed = not getattr(drafter, "reads_context", False)

    def propose(self, context: list[int], left: int) -> Draft:
        room = min(left - 1, self.budget.k if self.budget else self.cfg.max_draft)
        draft = self.drafter.propose(context, max(room, 0))  # (k = 0: no draft; a drafter may still look)
        return draft.first_chain() if self.chains_only else draft

    def verify(self, context: list[int], draft: Draft) -> tuple[list[int], int, Tensor]:
        """One forward over the draft tree; the accepted path, the verifier's own token, every node's row."""
        tree = TokenTree.build(context[-1], draft.tokens, draft.parents)
        logits = self.target.logits_tree(
            context, tree, record=self.cfg.attention_entropy, context_rows=not self.primed
        )
        if not self.primed:  # a drafter that learns from every position reads the prompt's rows once
            fed = len(logits) - len(tree)
            self.drafter.prime(context[len(context) - 1 - fed : -1], logits[:fed])
            logits, self.primed = logits[fed:], True
        p_rows = warp(logits, self.cfg)
        nodes, nxt = verify_tree(tree, draft.q_rows, p_rows, self.cfg.greedy, self.gen)
        self.target.keep_path([0, *nodes])
        path = [i - 1 for i in nodes]
        self.drafter.observe(p_rows, len(path), draft, path)
        if self.budget is not None:
            self.budget.cost = getattr(self.drafter, "token_cost", 0.0)  # may change as a drafter learns
            self.budget.update(len(path), max(tree.depths))  # a tree's "length" is its depth
        return path, nxt, p_rows

    def step(self, context: list[int], left: int, eos: int | None) -> _Raw:
        t0 = time.perf_counter()
        draft = self.propose(context, left)
        t_draft = time.perf_counter()
        path, nxt, p_rows = self.verify(context, draft)
        new = [*(draft.tokens[i] for i in path), nxt]
        if eos in new:
            new = new[: new.index(eos) + 1]
        rows_at = [0, *(i + 1 for i in path)][: len(new)]  # the node whose row produced each new token
        rows = p_rows[rows_at]
        probs = rows.gather(1, torch.tensor(new, device=rows.device)[:, None])[:, 0]
        recorded = self.target.last_entropy if self.cfg.attention_entropy else None
        attention = recorded[rows_at] if recorded is not None else None
        ent = row_entropy_bits(rows)
        return _Raw(draft, path, new, probs, ent, attention, t0, t_draft, time.perf_counter())


def speculative_loop(
    handle: ModelHandle,
    prompt: list[int],
    cfg: DecodeConfig,
    drafter: Drafter,
    target: CachedModel,
    gen: torch.Generator,
    *,
    name: str,
    lossless: bool,
) -> Trace:
    """Decode with `drafter` proposing and `target` verifying; the caller holds the decoding session."""
    check_room(handle, prompt, cfg)
    eos = handle.tokenizer.eos_token_id
    eos = eos if isinstance(eos, int) else None
    out: list[int] = []
    raw: list[_Raw] = []
    run = _Run(cfg, drafter, target, gen)
    t_start = time.perf_counter()
    while len(out) < cfg.max_new_tokens and not (out and out[-1] == eos):
        raw.append(run.step(prompt + out, cfg.max_new_tokens - len(out), eos))
        out += raw[-1].new
        notify_step(len(out), cfg.max_new_tokens)
    wall = time.perf_counter() - t_start
    return Trace(
        strategy=name,
        lossless=lossless,
        prompt_ids=tuple(prompt),
        token_ids=tuple(out),
        text=handle.decode(out),
        steps=tuple(_step(i, r) for i, r in enumerate(raw)),
        wall_s=wall,
    )


def _step(index: int, r: _Raw) -> Step:
    return Step(
        index=index,
        draft_tokens=tuple(r.draft.tokens),
        draft_source=r.draft.source if r.draft.tokens else "none",
        accepted=tuple(r.new),
        n_draft_accepted=min(len(r.path), len(r.new)),
        verifier_probs=tuple(r.probs.tolist()),
        entropies_bits=tuple(r.entropy.tolist()),
        target_forwards=1,
        draft_forwards=r.draft.forwards,
        wall_ms=(r.t_end - r.t0) * 1e3,
        draft_ms=(r.t_draft - r.t0) * 1e3,
        attention_bits=r.attention,
        draft_parents=r.draft.parents,
        accepted_path=tuple(r.path[: len(r.new)]),
    )
