"""The localist training corpus: a fixed split of the offline Wikipedia summaries, a compact BPE, packed windows.

- **Split** (by article, deterministic): the first 8 hex digits of sha256(title) mod 100 → train < 80 ≤
  validation < 90 ≤ test. No article's text is ever in two splits.
- **Tokenizer**: byte-level BPE (GPT-2 pre-tokeniser, `tokenizers` library) trained on the train split only, one
  special token `<|endoftext|>` (BOS = EOS = PAD, like GPT-2). It adds **no** BOS, like the default model.
- **Semantic blocks** = sentences, by the one sentence rule of `headscope.attention.blocks` (the dial's `sentence`
  blocks): a token belongs to the sentence holding its last character; an article boundary always ends a block;
  the `<|endoftext|>` after an article belongs to the article's last sentence.
- **Windows**: the train (or test) articles, each followed by `<|endoftext|>`, concatenated in title order and cut
  into non-overlapping windows of `ctx` tokens; block ids are renumbered from 0 inside each window.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Int
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from torch import Tensor
from transformers import PreTrainedTokenizerFast

from headscope.attention.blocks import blocks_at, sentence_starts
from headscope.data import Article, wiki_articles
from headscope.errors import InputError

Split = Literal["train", "validation", "test"]
SPLITS: tuple[Split, ...] = ("train", "validation", "test")
EOT = "<|endoftext|>"


def split_of(title: str) -> Split:
    """The split an article belongs to, from a hash of its title (stable across machines and orderings)."""
    bucket = int(hashlib.sha256(title.encode("utf-8")).hexdigest()[:8], 16) % 100
    return "train" if bucket < 80 else "validation" if bucket < 90 else "test"


def split_articles(split: Split, articles: Sequence[Article] | None = None) -> tuple[Article, ...]:
    if split not in SPLITS:
        raise InputError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    pool = wiki_articles() if articles is None else articles
    return tuple(a for a in pool if split_of(a.title) == split)


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2048) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on `texts` (deterministic for the same texts in the same order)."""
    if not 260 <= vocab_size <= 65536:
        raise InputError(f"vocab_size must be in [260, 65536], got {vocab_size}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return wrap_tokenizer(tok)


def wrap_tokenizer(tok: Tokenizer) -> PreTrainedTokenizerFast:
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOT, eos_token=EOT, pad_token=EOT)
    fast.model_max_length = 1 << 20  # windows are cut by us, never by the tokenizer
    return fast


def encode_with_blocks(tok: PreTrainedTokenizerFast, text: str) -> tuple[list[int], list[int]]:
    """Token ids of `text` (no special tokens) and each token's sentence index."""
    enc = tok.backend_tokenizer.encode(text, add_special_tokens=False)
    return list(enc.ids), blocks_at(sentence_starts(text), [end for _, end in enc.offsets])


@dataclass(frozen=True)
class Windows:
    """Packed training/evaluation windows and the sentence block of every token."""

    ids: Int[Tensor, "batch pos"]
    blocks: Int[Tensor, "batch pos"]

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def slice(self, start: int, stop: int) -> Windows:
        return Windows(self.ids[start:stop], self.blocks[start:stop])


def pack_windows(
    tok: PreTrainedTokenizerFast, articles: Sequence[Article], ctx: int, max_windows: int | None = None
) -> Windows:
    """Concatenate articles (each + EOT) and cut into `ctx`-token windows; stops early at `max_windows`."""
    if ctx < 8:
        raise InputError(f"ctx must be ≥ 8, got {ctx}")
    eot = tok.convert_tokens_to_ids(EOT)
    ids: list[int] = []
    blocks: list[int] = []
    offset = 0
    limit = None if max_windows is None else max_windows * ctx
    for art in articles:
        a_ids, a_blocks = encode_with_blocks(tok, art.text)
        ids += [*a_ids, eot]
        blocks += [b + offset for b in a_blocks] + [a_blocks[-1] + offset if a_blocks else offset]
        offset = blocks[-1] + 1  # a new article always opens a new block
        if limit is not None and len(ids) >= limit:
            break
    n = len(ids) // ctx if limit is None else min(len(ids) // ctx, max_windows or 0)
    if n == 0:
        raise InputError(f"the articles give fewer than {ctx} tokens: no full window")
    id_t = torch.tensor(ids[: n * ctx], dtype=torch.long).view(n, ctx)
    bl_t = torch.tensor(blocks[: n * ctx], dtype=torch.long).view(n, ctx)
    return Windows(id_t, bl_t - bl_t[:, :1])
