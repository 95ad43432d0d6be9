"""Draft sources for the speculative loop: none, a second model, n-gram lookup, Jacobi iteration.

A drafter proposes tokens for the positions after the context; the verifier (the target model) then accepts a
prefix. `q_rows` is the distribution each drafted token was drawn from (None: deterministic draft, q = one-hot);
rejection-sampling verification needs it to stay exact.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from headscope.decoding.cache import CachedModel
from headscope.decoding.config import DecodeConfig
from headscope.decoding.sampling import pick, warp
from headscope.decoding.tree import trie
from headscope.errors import InputError
from headscope.models import ModelHandle
from headscope.models.skip import Sublayer


@dataclass(frozen=True)
class Draft:
    """Drafted tokens: a chain (`parents` None) or a tree: `parents[i]` is the index of token i's parent among
    the drafted tokens (−1: the pending token, the tree's root), always before i. `k` in `propose` bounds the
    depth (a chain's length)."""

    tokens: list[int]
    source: str
    q_rows: list[Tensor | None] | None = None  # per token; None = deterministic (one-hot) draft
    forwards: int = 0
    parents: tuple[int, ...] | None = None

    def first_chain(self) -> Draft:
        """The first branch of a tree draft (each node's first child), as a chain."""
        if self.parents is None:
            return self
        picked, at = [], -1
        while (nxt := next((i for i, p in enumerate(self.parents) if p == at), None)) is not None:
            picked.append(nxt)
            at = nxt
        rows = None if self.q_rows is None else [self.q_rows[i] for i in picked]
        return Draft([self.tokens[i] for i in picked], self.source, rows, self.forwards)


EMPTY = Draft([], "none")


class Drafter(Protocol):
    def propose(self, context: list[int], k: int) -> Draft: ...

    def observe(self, p_rows: Tensor, n_accepted: int, draft: Draft, path: Sequence[int] = ()) -> None:
        """The verifier's rows at every node (root first, then the drafted tokens in order), how many drafted
        tokens it accepted and which (`path`: their indices among the drafted tokens, in order)."""
        ...


class NoDrafter:
    """Plain decoding: every step is one verifier token."""

    def propose(self, context: list[int], k: int) -> Draft:
        return EMPTY

    def observe(self, p_rows: Tensor, n_accepted: int, draft: Draft, path: Sequence[int] = ()) -> None:
        return None


def model_draft(
    model: CachedModel,
    context: list[int],
    k: int,
    cfg: DecodeConfig,
    gen: torch.Generator,
    skip: frozenset[Sublayer] = frozenset(),
) -> tuple[list[int], list[Tensor]]:
    """Autoregressive draft of ≤k tokens; stops early once the draft's top-1 probability drops under the floor."""
    tokens: list[int] = []
    rows: list[Tensor] = []
    while len(tokens) < k:
        q = warp(model.logits_last(context + tokens, 1, skip=skip), cfg)[0]
        if tokens and float(q.max()) < cfg.min_draft_confidence:
            break
        tokens.append(pick(q, cfg, gen))
        rows.append(q)
    return tokens, rows


def check_same_tokenizer(target: ModelHandle, draft: ModelHandle) -> None:
    a, b = target.tokenizer, draft.tokenizer
    if a.get_vocab() != b.get_vocab() or a.eos_token_id != b.eos_token_id:
        raise InputError(
            f"draft model {draft.identity.name!r} does not share the tokenizer of {target.identity.name!r}; "
            "speculative decoding needs identical vocabularies (for a model with no such partner use layer_skip)"
        )


class ModelDrafter:
    """A smaller model with the same tokenizer drafts; it keeps its own KV cache (in its own decoding session)."""

    token_cost = 0.0  # unknown relative to the target (another model): the budget's cost rule does not apply

    def __init__(self, model: CachedModel, cfg: DecodeConfig, gen: torch.Generator):
        self.model = model
        self.cfg, self.gen = cfg, gen

    def propose(self, context: list[int], k: int) -> Draft:
        before = self.model.forwards
        tokens, rows = model_draft(self.model, context, k, self.cfg, self.gen)
        return Draft(tokens, "draft_model", list(rows), self.model.forwards - before)

    def observe(self, p_rows: Tensor, n_accepted: int, draft: Draft, path: Sequence[int] = ()) -> None:
        return None


class NgramDrafter:
    """Prompt lookup (earlier occurrences of the context's suffix), else an online trigram table; several
    candidate continuations at once, merged into a tree (a trie) and verified in one forward.

    Candidates, best first: the continuations of the longest suffix (≥ 2 tokens) that occurs earlier, most
    recent occurrence first (distinct ones only), then shorter suffixes; then the trigram chain (ADED-like,
    without the tree search: it counts continuations of every token pair seen in the prompt and in the model's
    own output so far and chains the most frequent ones); then single-token matches, a weak cue. The first
    `ngram_branches` go into the tree; with 1 it is the classic prompt-lookup chain.
    """

    def __init__(self, cfg: DecodeConfig):
        self.cfg = cfg
        self.table: defaultdict[tuple[int, int], Counter[int]] = defaultdict(Counter)
        self.counted = 0  # context positions already in the table

    def propose(self, context: list[int], k: int) -> Draft:
        if k <= 0:
            return EMPTY
        self._update(context)
        want = self.cfg.ngram_branches
        longest = min(self.cfg.ngram_max, len(context) - 1)
        found = [(c, "lookup") for c in self._lookups(context, k, range(longest, 1, -1), want)]
        if len(found) < want and (chain := self._chain(context, k)):
            found.append((chain, "trigram"))
        if len(found) < want:
            found += [(c, "lookup") for c in self._lookups(context, k, range(1, 0, -1), want - len(found))]
        found = [f for i, f in enumerate(found) if f[0] not in [g for g, _ in found[:i]]][:want]
        if not found:
            return EMPTY
        if len(found) == 1:
            return Draft(found[0][0], found[0][1])
        tokens, parents = trie([c for c, _ in found])
        return Draft(tokens, found[0][1], parents=parents)

    def _lookups(self, context: list[int], k: int, lengths: range, want: int) -> list[list[int]]:
        """Distinct continuations of earlier occurrences of the context's suffix, for each suffix length in
        `lengths` (longest first), most recent occurrence first."""
        out: list[list[int]] = []
        for n in lengths:
            suffix = context[-n:]
            for i in range(len(context) - n - 1, -1, -1):  # most recent earlier occurrence first
                if context[i : i + n] == suffix:
                    cont = context[i + n : i + n + k]
                    if cont not in out:
                        out.append(cont)
                    if len(out) >= want:
                        return out
        return out

    def _chain(self, context: list[int], k: int) -> list[int]:
        out: list[int] = []
        a, b = (context[-2], context[-1]) if len(context) >= 2 else (-1, context[-1])
        while len(out) < k and self.table.get((a, b)):
            nxt = self.table[(a, b)].most_common(1)[0][0]
            out.append(nxt)
            a, b = b, nxt
        return out

    def _update(self, context: list[int]) -> None:
        for i in range(max(self.counted, 2), len(context)):
            self.table[(context[i - 2], context[i - 1])][context[i]] += 1
        self.counted = max(self.counted, len(context))

    def observe(self, p_rows: Tensor, n_accepted: int, draft: Draft, path: Sequence[int] = ()) -> None:
        return None


class JacobiDrafter:
    """Jacobi / fixed-point iteration: the verifier's own predictions past the accepted point become the next
    window's guesses (greedy: exact Jacobi decoding; sampling: SJD, verified against the rows that drew them)."""

    adaptive = False  # a fixed window: Jacobi iteration needs its width

    def __init__(self, cfg: DecodeConfig, gen: torch.Generator):
        self.cfg, self.gen = cfg, gen
        self.guesses: list[int] = []
        self.rows: list[Tensor] = []

    def propose(self, context: list[int], k: int) -> Draft:
        w = min(self.cfg.window, k)
        if w <= 0:
            return EMPTY
        guesses: list[int] = self.guesses[:w]
        rows: list[Tensor | None] = list(self.rows[:w])
        while len(guesses) < w:  # fresh positions start as a copy of the last token (deterministic, no q)
            guesses.append(guesses[-1] if guesses else context[-1])
            rows.append(None)
        return Draft(guesses, "jacobi", rows)

    def observe(self, p_rows: Tensor, n_accepted: int, draft: Draft, path: Sequence[int] = ()) -> None:
        later = range(n_accepted + 1, len(draft.tokens) + 1)
        self.guesses = [pick(p_rows[j], self.cfg, self.gen) for j in later]
        self.rows = [p_rows[j] for j in later]
