"""Padded token batches: one right-padding rule and one pad id for every capability that batches prompts.

Right padding: with causal attention and absolute positions from 0, tokens after a sequence's end change nothing
at or before its last real token, so each row's real positions are exact and results are read at `last`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Int
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from headscope.errors import InputError


def pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The tokenizer's pad id, else its EOS id, else 0 (any id works after the last real token)."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if isinstance(candidate, int):
            return candidate
    return 0


@dataclass(frozen=True)
class Padded:
    ids: Int[Tensor, "batch pos"]
    last: Int[Tensor, " batch"]  # index of each row's last real token
    mask: Bool[Tensor, "batch pos"]  # True on real tokens


def right_pad(
    rows: Sequence[Sequence[int]], pad: int, device: torch.device | str, *, width: int | None = None
) -> Padded:
    """Rows of token ids → one right-padded batch at least `width` wide."""
    if not rows or any(len(r) == 0 for r in rows):
        raise InputError("cannot batch an empty list of prompts or an empty prompt")
    width = max([width or 0, *(len(r) for r in rows)])
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.as_tensor(list(r), dtype=torch.long)
        mask[i, : len(r)] = True
    last = torch.tensor([len(r) - 1 for r in rows], dtype=torch.long)
    return Padded(ids.to(device), last.to(device), mask.to(device))
