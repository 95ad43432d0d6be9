"""Semantic blocks for the dial's `block` mode: a block id per token, from the token strings or from the user.

Sources (registry `BLOCK_SOURCES`):
- `sentence`: a block ends after a token ending in . ! ? (or containing a newline) when the next token starts with
  whitespace (so "3.5" or "e.g.x" do not split); `clause`: the same with , ; : as well;
- `fixed`: windows of `size` tokens;
- `spans`: user spans [start, end) in token indices (sorted, disjoint); the stretches between them are blocks too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Int
from torch import Tensor

from headscope.errors import InputError
from headscope.registry import Registry

BlockFn = Callable[[Sequence[str], "BlockSpec"], list[bool]]  # per token: does a new block start here?
BLOCK_SOURCES: Registry[BlockFn] = Registry("block source")
MAX_BLOCK_SIZE = 4096


def register_block_source(name: str) -> Callable[[BlockFn], BlockFn]:
    return BLOCK_SOURCES.register(name)


@dataclass(frozen=True)
class BlockSpec:
    source: str = "sentence"
    size: int = 16
    spans: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        if self.source not in BLOCK_SOURCES:
            raise InputError(f"blocks.source must be one of {', '.join(BLOCK_SOURCES)}, got {self.source!r}")
        if not 1 <= self.size <= MAX_BLOCK_SIZE:
            raise InputError(f"blocks.size must be in [1, {MAX_BLOCK_SIZE}], got {self.size}")
        last = 0
        for start, end in self.spans:
            if not 0 <= start < end or start < last:
                raise InputError(
                    f"blocks.spans must be sorted, disjoint [start, end) with start < end: {self.spans}"
                )
            last = end
        if self.source == "spans" and not self.spans:
            raise InputError("blocks.source 'spans' needs at least one span")


def _boundary_starts(tokens: Sequence[str], enders: str) -> list[bool]:
    starts = [True] + [False] * (len(tokens) - 1)
    for i in range(1, len(tokens)):
        prev, cur = tokens[i - 1], tokens[i]
        ends = prev.rstrip().endswith(tuple(enders)) and (cur[:1].isspace() or prev[-1:].isspace())
        starts[i] = ends or "\n" in prev
    return starts


@register_block_source("sentence")
def _sentences(tokens: Sequence[str], spec: BlockSpec) -> list[bool]:
    return _boundary_starts(tokens, ".!?")


@register_block_source("clause")
def _clauses(tokens: Sequence[str], spec: BlockSpec) -> list[bool]:
    return _boundary_starts(tokens, ".!?,;:")


@register_block_source("fixed")
def _fixed(tokens: Sequence[str], spec: BlockSpec) -> list[bool]:
    return [i % spec.size == 0 for i in range(len(tokens))]


@register_block_source("spans")
def _spans(tokens: Sequence[str], spec: BlockSpec) -> list[bool]:
    n = len(tokens)
    if spec.spans and spec.spans[-1][1] > n:
        raise InputError(f"blocks.spans reach token {spec.spans[-1][1]}, but the text has {n} tokens")
    starts = [i == 0 for i in range(n)]
    for start, end in spec.spans:
        starts[start] = True
        if end < n:
            starts[end] = True
    return starts


def block_ids(str_tokens: Sequence[str], spec: BlockSpec) -> Int[Tensor, " pos"]:
    """Block index of every token (0, 0, 1, 1, 1, 2, ...), increasing left to right."""
    if not str_tokens:
        raise InputError("no tokens to split into blocks")
    starts = BLOCK_SOURCES[spec.source](str_tokens, spec)
    return torch.tensor(starts, dtype=torch.long).cumsum(0) - 1
