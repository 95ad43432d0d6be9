"""Incremental (KV-cached) runs of a handle's model, with rollback and a forward-pass counter.

The cache is a transformers `DynamicCache` handed to `handle.run(..., cache=...)` (which knows how the bridge
wants it; checked against the full recompute in the tests).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from jaxtyping import Float
from torch import Tensor
from transformers import DynamicCache

from headscope.models import ModelHandle
from headscope.models.handle import Hooks


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class CachedModel:
    """A handle's model run incrementally on a growing token sequence; rolls back to any earlier length."""

    def __init__(self, handle: ModelHandle):
        self.handle = handle
        self.cache: DynamicCache | None = None
        self.tokens: list[int] = []  # what the cache holds, position by position
        self.forwards = 0

    def logits_last(self, seq: Sequence[int], n: int, *, hooks: Hooks = ()) -> Float[Tensor, "n d_vocab"]:
        """Logits at the last `n` positions of `seq`, reusing whatever cached prefix still matches."""
        keep = min(common_prefix(self.tokens, seq), len(seq) - n)
        self.truncate(keep)
        feed = torch.tensor([list(seq[keep:])], dtype=torch.long, device=self.handle.device)
        logits = self._run(feed, self._cache(), hooks)
        self.tokens = list(seq)
        return logits[0, -n:].float()

    def truncate(self, n: int) -> None:
        """Forget every cached position from `n` on."""
        if len(self.tokens) > n and self.cache is not None:
            self.cache.crop(n - len(self.tokens))
        self.tokens = self.tokens[:n]

    def logits_on_copy(
        self, seq: Sequence[int], start: int, *, hooks: Hooks = ()
    ) -> Float[Tensor, "pos d_vocab"]:
        """Logits for seq[start:] on a throwaway copy of the cache (left untouched): for scoring variants."""
        keep = min(common_prefix(self.tokens, seq), start)
        cache = copy.deepcopy(self._cache())
        if len(self.tokens) > keep:
            cache.crop(keep - len(self.tokens))
        feed = torch.tensor([list(seq[keep:])], dtype=torch.long, device=self.handle.device)
        return self._run(feed, cache, hooks)[0, start - keep :].float()

    def _cache(self) -> DynamicCache:
        if self.cache is None:
            self.cache = DynamicCache(config=self.handle.hf_model.config)
        return self.cache

    def _run(self, feed: Tensor, cache: DynamicCache, hooks: Hooks) -> Tensor:
        self.forwards += 1
        return self.handle.run(feed, fwd_hooks=hooks, cache=cache)
