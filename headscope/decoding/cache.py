"""Incremental (KV-cached) runs of a handle's model, with rollback, a forward counter and the live internals.

A decoding run opens one `session` per model. While the session holds the model, every attention module runs the
decoding attention function (`live.decode_attention`, SDPA underneath, the implementation `generate` uses) and a
`models.skip.ForwardSwitch` is installed; each forward then runs *plain* (the original HF modules, no hook
wrappers) when no hook is asked for — the common case, and the reason greedy here keeps pace with `generate` —
and through the bridge, hooks firing, when one is. The session holds the model in slices of at most `SLICE_S`
seconds and puts everything back between them, so in the app other visitors' views get the (unchanged) model
between two steps of a long decode. The cache is a transformers `DynamicCache` handed to `handle.run(cache=)`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor
from transformers import DynamicCache

from headscope.decoding.intervene import Intervention
from headscope.decoding.live import DECODE_IMPL, ForwardPlan, ScoreFn, planned, register
from headscope.decoding.tree import TokenTree
from headscope.models import ModelHandle
from headscope.models.handle import Hooks
from headscope.models.skip import ForwardSwitch, Sublayer, crop_cache, forward_switch, keep_positions

Snapshot = list[tuple[Any, Any] | None]


def tree_layout(tree: TokenTree, keep: int, fed: int) -> tuple[Tensor, Tensor]:
    """The 4-D boolean attention mask [1, 1, q, keep + q] and the position ids [1, q] of a forward that feeds
    `fed` context tokens after `keep` cached ones, then the tree's nodes: the context rows are causal, each node
    sees the whole context and its own ancestors, at position (keep + fed) + its depth."""
    n = len(tree)
    q = fed + n
    mask = torch.zeros(q, keep + q, dtype=torch.bool)
    mask[:, :keep] = True
    mask[:fed, keep : keep + fed] = torch.ones(fed, fed, dtype=torch.bool).tril()
    mask[fed:, keep : keep + fed] = True
    mask[fed:, keep + fed :] = tree.mask()
    depths = torch.tensor(tree.depths)
    positions = torch.cat([torch.arange(keep, keep + fed), keep + fed + depths])
    return mask[None, None], positions[None]


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


SLICE_S = 0.25  # longest hold on the model before it is handed back (and set up again on the next forward)


class Session:
    """The decoding set-up on one model (decoding attention + forward switch, model held), entered on a forward
    and released once it has been held `SLICE_S` seconds; `release()` at the end."""

    def __init__(self, handle: ModelHandle):
        register()
        self.handle = handle
        self._stack: ExitStack | None = None
        self._switch: ForwardSwitch | None = None
        self._since = 0.0

    @contextmanager
    def forward(self, *, skip: frozenset[Sublayer] = frozenset(), plain: bool = True) -> Iterator[None]:
        """One run with these sublayers skipped, plain or hooked."""
        switch = self._switch or self._enter()
        try:
            with switch.setting(skip=skip, plain=plain):
                yield
        finally:
            if time.perf_counter() - self._since >= SLICE_S:
                self.release()

    def _enter(self) -> ForwardSwitch:
        stack = ExitStack()
        try:
            stack.enter_context(self.handle.exclusive())
            stack.enter_context(self.handle.hf_attention(DECODE_IMPL))
            self._switch = stack.enter_context(forward_switch(self.handle))
        except BaseException:
            stack.close()
            raise
        self._stack, self._since = stack, time.perf_counter()
        return self._switch

    def release(self) -> None:
        """Put the model back as it was and let other runs have it."""
        if self._stack is not None:
            stack, self._stack, self._switch = self._stack, None, None
            stack.close()
            time.sleep(0)  # a thread waiting for the model may take it now


@contextmanager
def session(handle: ModelHandle) -> Iterator[Session]:
    """A decoding session on `handle`, released at the end of the block (also on an error)."""
    s = Session(handle)
    try:
        yield s
    finally:
        s.release()


class CachedModel:
    """A handle's model run incrementally on a growing token sequence; rolls back to any earlier length.

    Runs through a `Session` on the handle. `intervention` (a head set ablated or dialled) applies to every
    forward; `record=True` on a call leaves the per-head attention entropy of the returned rows in `last_entropy`
    ([rows, layer, head], bits)."""

    def __init__(self, handle: ModelHandle, session: Session, intervention: Intervention | None = None):
        self.handle, self.session, self.intervention = handle, session, intervention
        self.cache: DynamicCache | None = None
        self.tokens: list[int] = []  # what the cache holds, position by position
        self.forwards = 0
        self.means: dict[int, Tensor] = {}
        self.last_entropy: Tensor | None = None
        self._dial: dict[int, ScoreFn] | None = (
            None  # the dial's score functions, when they serve every forward
        )
        self._tree: tuple[int, TokenTree] | None = None  # the last tree fed (its root's position), until kept

    def logits_last(
        self,
        seq: Sequence[int],
        n: int,
        *,
        hooks: Hooks = (),
        record: bool = False,
        skip: frozenset[Sublayer] = frozenset(),
    ) -> Float[Tensor, "n d_vocab"]:
        """Logits at the last `n` positions of `seq`, reusing whatever cached prefix still matches."""
        keep = min(common_prefix(self.tokens, seq), len(seq) - n)
        self.truncate(keep)
        logits = self._run(seq, keep, self._cache(), hooks, record=record, rows=n, skip=skip)
        self.tokens = list(seq)
        return logits[0, -n:].float()

    def logits_tree(
        self, context: Sequence[int], tree: TokenTree, *, record: bool = False, context_rows: bool = False
    ) -> Float[Tensor, "rows d_vocab"]:
        """Logits at every node of `tree` (its root is `context[-1]`) from one forward under the tree mask
        (`tree.py`); with `context_rows`, first the rows of the fed context positions before the root (what a
        drafter that learns from every position reads). Call `keep_path` next: the cache then holds every node."""
        start = len(context) - 1
        if tree.is_chain and not context_rows:  # the causal layout: no mask, SDPA's own causal path
            logits = self.logits_last([*context[:-1], *tree.tokens], len(tree), record=record)
            self._tree = (start, tree)
            return logits
        keep = min(common_prefix(self.tokens, context), start)
        self.truncate(keep)
        fed = start - keep
        mask, positions = tree_layout(tree, keep, fed)
        seq = [*context[:-1], *tree.tokens]
        logits = self._run(seq, keep, self._cache(), (), record=record, rows=len(tree), mask=mask,
                           positions=positions)  # fmt: skip
        self.tokens = seq
        self._tree = (start, tree)
        return logits[0, (0 if context_rows else fed) :].float()

    def keep_path(self, nodes: Sequence[int]) -> None:
        """After `logits_tree`: keep only the root-to-node path `nodes` (node indices, root first) in the cache."""
        assert self._tree is not None, "keep_path follows logits_tree"
        (start, tree), self._tree = self._tree, None
        if list(nodes) == list(range(len(nodes))):  # a prefix of the fed order (any chain): a crop
            self.truncate(start + len(nodes))
            return
        index = torch.tensor([start + i for i in nodes], device=self.handle.device)
        keep_positions(self._cache(), start, index)
        self.tokens = [*self.tokens[:start], *(tree.tokens[i] for i in nodes)]

    def truncate(self, n: int) -> None:
        """Forget every cached position from `n` on (in every layer: a skipped layer may hold fewer)."""
        if self.cache is not None and len(self.tokens) > n:
            crop_cache(self.cache, n)
        self.tokens = self.tokens[:n]

    def snapshot(self) -> Snapshot:
        """The cache's tensors as they are now (updates build new tensors, so restoring these is a rollback)."""
        cache = self._cache()
        return [(layer.keys, layer.values) if layer.is_initialized else None for layer in cache.layers]

    def restore(self, snap: Snapshot, tokens: list[int]) -> None:
        for layer, kv in zip(self._cache().layers, snap, strict=True):
            if kv is not None:
                layer.keys, layer.values = kv
        self.tokens = tokens

    def logits_aside(
        self, seq: Sequence[int], start: int, *, hooks: Hooks = (), skip: frozenset[Sublayer] = frozenset()
    ) -> Float[Tensor, "pos d_vocab"]:
        """Logits for seq[start:], leaving the cache as it was (for scoring variants: layer-skip search)."""
        keep = min(common_prefix(self.tokens, seq), start)
        snap, tokens = self.snapshot(), list(self.tokens)
        try:
            crop_cache(self._cache(), keep)
            logits = self._run(seq, keep, self._cache(), hooks, skip=skip)
        finally:
            self.restore(snap, tokens)
        return logits[0, start - keep :].float()

    def collect_means(self, prompt: Sequence[int]) -> int:
        """Mean ablation: the selected heads' mean output over the prompt, from a clean run. Returns forwards."""
        iv = self.intervention
        if iv is None or not iv.needs_means():
            return 0
        plan = ForwardPlan(ablate=iv.ablated(), collect=True)
        feed = torch.tensor([list(prompt)], dtype=torch.long, device=self.handle.device)
        with self.session.forward(), planned(plan):
            self.handle.run(feed)
        self.means = plan.collected
        return 1

    def _cache(self) -> DynamicCache:
        if self.cache is None:
            self.cache = DynamicCache(config=self.handle.hf_model.config)
        return self.cache

    def _plan(self, seq: Sequence[int], rows: int, record: bool) -> ForwardPlan | None:
        iv = self.intervention
        if iv is None and not record:
            return None
        plan = ForwardPlan(record_rows=rows if record else 0)
        if iv is not None:
            plan.ablate, plan.means = iv.ablated(), self.means
            if iv.per_forward or self._dial is None:
                self._dial = iv.dial_fns(self.handle, list(seq))
            plan.dial = self._dial
        return plan

    def _run(
        self, seq: Sequence[int], keep: int, cache: DynamicCache, hooks: Hooks, *, record: bool = False,
        rows: int = 1, skip: frozenset[Sublayer] = frozenset(), mask: Tensor | None = None,
        positions: Tensor | None = None,
    ) -> Tensor:  # fmt: skip
        self.forwards += 1
        feed = torch.tensor([list(seq[keep:])], dtype=torch.long, device=self.handle.device)
        plan = self._plan(seq, rows, record)
        with self.session.forward(skip=skip, plain=not hooks), planned(plan):
            logits = self.handle.run(
                feed, fwd_hooks=hooks, cache=cache, attention_mask=mask, position_ids=positions
            )
        if record and plan is not None:
            ent = torch.stack([plan.entropy[layer] for layer in range(self.handle.facts.n_layers)])
            self.last_entropy = ent.permute(2, 0, 1).cpu()  # [rows, layer, head]
        return logits
