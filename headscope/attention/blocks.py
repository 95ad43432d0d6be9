"""Blocks: a block id per token, the one meaning of "block" in headscope — the dial's `block` mode, the `block`
pointer target, the kernels' block bias and the localist training objective all take these ids.

Sources (registry `BLOCK_SOURCES`):
- `sentence`: a sentence ends at `.`, `!` or `?` (optionally followed by a closing quote or bracket) followed by
  whitespace and an upper-case letter, digit, quote or bracket (so "3.5" and "e.g. the" do not split; "Dr.
  Smith" does). A token belongs to the block holding its **last** character, so " The" belongs to the sentence
  it opens and "." to the one it closes. The localist corpus uses the same rule on article text.
- `clause`: sentence ends, and also `,`, `;` or `:` followed by whitespace;
- `fixed`: windows of `size` tokens (⌊i/size⌋: the kernels' former fixed blocks are this source);
- `spans`: user spans [start, end) in token indices (sorted, disjoint); the stretches between them are blocks too.
From token strings, the text is their concatenation (a token's characters are the ones it decodes to).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Int
from torch import Tensor

from headscope import checks
from headscope.errors import InputError
from headscope.registry import Registry

BlockFn = Callable[[Sequence[str], "BlockSpec"], list[bool]]  # per token: does a new block start here?
BLOCK_SOURCES: Registry[BlockFn] = Registry("block source")
MAX_BLOCK_SIZE = 4096
MAX_SPANS = 4096
SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[A-Z0-9\"'(\[])")
CLAUSE_END = re.compile(r"(?<=[,;:])[\"')\]]?\s+")


def register_block_source(name: str) -> Callable[[BlockFn], BlockFn]:
    return BLOCK_SOURCES.register(name)


@dataclass(frozen=True)
class BlockSpec:
    source: str = "sentence"
    size: int = 16
    spans: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        BLOCK_SOURCES.check(self.source, field="blocks.source")
        object.__setattr__(self, "size", checks.integer(self.size, "blocks.size", 1, MAX_BLOCK_SIZE))
        object.__setattr__(self, "spans", _checked_spans(self.spans))
        if self.source == "spans" and not self.spans:
            raise InputError("blocks.source 'spans' needs at least one span")


def _checked_spans(spans: object) -> tuple[tuple[int, int], ...]:
    if not isinstance(spans, tuple | list) or len(spans) > MAX_SPANS:
        raise InputError(f"blocks.spans must be a list of at most {MAX_SPANS} [start, end) pairs")
    out, last = [], 0
    for span in spans:
        if not isinstance(span, tuple | list) or len(span) != 2:
            raise InputError(f"blocks.spans must hold [start, end) pairs, got {span!r}")
        start, end = (checks.integer(x, "blocks.spans entry", 0) for x in span)
        if not start < end or start < last:
            raise InputError(f"blocks.spans must be sorted, disjoint [start, end) with start < end: {spans}")
        out.append((start, end))
        last = end
    return tuple(out)


def sentence_starts(text: str) -> list[int]:
    """Character offsets where sentences start (always including 0)."""
    return [0, *(m.end() for m in SENTENCE_END.finditer(text))]


def clause_starts(text: str) -> list[int]:
    """Character offsets where clauses start: sentence starts and the starts after `,` `;` `:` + whitespace."""
    return sorted({*sentence_starts(text), *(m.end() for m in CLAUSE_END.finditer(text))})


def blocks_at(starts: Sequence[int], token_ends: Sequence[int]) -> list[int]:
    """Block index of each token (given its end offset) from the blocks' start offsets: the block holding the
    token's last character."""
    return [max(bisect.bisect_right(starts, end - 1) - 1, 0) for end in token_ends]


def _text_starts(tokens: Sequence[str], starts_of: Callable[[str], list[int]]) -> list[bool]:
    ends, total = [], 0
    for tok in tokens:
        total += len(tok)
        ends.append(total)
    blocks = blocks_at(starts_of("".join(tokens)), ends)
    return [i == 0 or blocks[i] != blocks[i - 1] for i in range(len(tokens))]


@register_block_source("sentence")
def _sentences(tokens: Sequence[str], spec: BlockSpec) -> list[bool]:
    return _text_starts(tokens, sentence_starts)


@register_block_source("clause")
def _clauses(tokens: Sequence[str], spec: BlockSpec) -> list[bool]:
    return _text_starts(tokens, clause_starts)


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
