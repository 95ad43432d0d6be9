"""Completion scoring: (prompt, target) pairs → padded token batches, completion-only loss, log-probs, accuracy.

The prompt and the target are tokenised separately and concatenated, so the boundary is exact (targets start
with a space, where BPE tokenisers split anyway). Batches are right-padded: with causal attention and absolute
positions from 0, padding after a sequence changes nothing before it, and padded positions are masked out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from headscope.codec import JsonCodec, jfield
from headscope.errors import InputError
from headscope.models.batch import pad_id, right_pad
from headscope.models.handle import Hooks, ModelHandle
from headscope.steering.tasks import Pair

MAX_PAIR_TOKENS = 256


@dataclass(frozen=True)
class Encoded:
    """One pair as ids: prompt ids then target ids."""

    prompt_ids: tuple[int, ...]
    target_ids: tuple[int, ...]


@dataclass(frozen=True)
class Batch:
    tokens: Int[Tensor, "batch pos"]
    # target_mask[b, i] is True where logits at position i predict a target token (labels[b, i]).
    target_mask: Bool[Tensor, "batch pos"]
    labels: Int[Tensor, "batch pos"]


def encode_pairs(handle: ModelHandle, pairs: Sequence[Pair]) -> list[Encoded]:
    tok = handle.tokenizer
    out = []
    for p in pairs:
        prompt = handle.tokenize(p.prompt)[0].tolist()
        target = tok(p.target, add_special_tokens=False).input_ids
        if not target:
            raise InputError(f"target {p.target!r} has no tokens")
        if len(prompt) + len(target) > MAX_PAIR_TOKENS:
            raise InputError(f"a pair is longer than {MAX_PAIR_TOKENS} tokens")
        out.append(Encoded(tuple(prompt), tuple(target)))
    return out


def collate(encoded: Sequence[Encoded], pad: int, device: torch.device) -> Batch:
    padded = right_pad([e.prompt_ids + e.target_ids for e in encoded], pad, "cpu")
    labels = torch.zeros_like(padded.ids)
    mask = torch.zeros_like(padded.mask)
    for b, e in enumerate(encoded):
        start = len(e.prompt_ids) - 1  # the prompt's last position predicts the first target token
        labels[b, start : start + len(e.target_ids)] = torch.tensor(e.target_ids)
        mask[b, start : start + len(e.target_ids)] = True
    return Batch(padded.ids.to(device), mask.to(device), labels.to(device))


def token_logprobs(logits: Float[Tensor, "batch pos d_vocab"], batch: Batch) -> Float[Tensor, "batch pos"]:
    """log p(label) at each target position, 0 elsewhere."""
    logp = logits.float().log_softmax(-1).gather(-1, batch.labels.unsqueeze(-1)).squeeze(-1)
    return logp * batch.target_mask


def completion_loss(logits: Float[Tensor, "batch pos d_vocab"], batch: Batch) -> Tensor:
    """Completion-only cross-entropy: mean over target tokens of the whole batch."""
    return -token_logprobs(logits, batch).sum() / batch.target_mask.sum()


def target_logprob(logits: Float[Tensor, "batch pos d_vocab"], batch: Batch) -> Float[Tensor, " batch"]:
    """Sum of log-probabilities of each pair's target tokens."""
    return token_logprobs(logits, batch).sum(-1)


def exact_match(logits: Float[Tensor, "batch pos d_vocab"], batch: Batch) -> Bool[Tensor, " batch"]:
    """True where every target token is the argmax under teacher forcing (greedy decoding would produce it)."""
    hit = (logits.argmax(-1) == batch.labels) | ~batch.target_mask
    return hit.all(-1)


@dataclass(frozen=True)
class Metrics(JsonCodec):
    accuracy: float = jfield(digits=4)
    mean_target_logprob: float = jfield(digits=4)
    n: int = 0


def score_items(
    handle: ModelHandle, pairs: Sequence[Pair], *, fwd_hooks: Hooks = (), batch_size: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """Per pair: exact match (bool) and the target's log-probability, with the given steering hooks attached."""
    encoded = encode_pairs(handle, pairs)
    hits, logps = [], []
    for i in range(0, len(encoded), batch_size):
        batch = collate(encoded[i : i + batch_size], pad_id(handle.tokenizer), handle.device)
        logits = handle.forward(batch.tokens, fwd_hooks=fwd_hooks)
        hits.append(exact_match(logits, batch).cpu())
        logps.append(target_logprob(logits, batch).cpu())
    return torch.cat(hits).numpy(), torch.cat(logps).double().numpy()


def evaluate(
    handle: ModelHandle, pairs: Sequence[Pair], *, fwd_hooks: Hooks = (), batch_size: int = 16
) -> Metrics:
    """Held-out accuracy (exact match) and mean target log-prob, with the given steering hooks attached."""
    hits, logps = score_items(handle, pairs, fwd_hooks=fwd_hooks, batch_size=batch_size)
    return Metrics(float(hits.mean()), float(logps.mean()), len(hits))


def encode_texts(handle: ModelHandle, prompt_ids: Sequence[int], texts: Sequence[str]) -> list[Encoded]:
    """Each text as a continuation of exactly these prompt ids (a leading space added, as a word would follow)."""
    out = []
    for t in texts:
        target = handle.tokenizer(" " + t.strip(), add_special_tokens=False).input_ids
        if not target:
            raise InputError(f"text {t!r} has no tokens")
        if len(prompt_ids) + len(target) > MAX_PAIR_TOKENS:
            raise InputError(f"a prompt and a text are longer than {MAX_PAIR_TOKENS} tokens together")
        out.append(Encoded(tuple(int(i) for i in prompt_ids), tuple(target)))
    return out


def text_logprobs(
    handle: ModelHandle,
    prompt_ids: Sequence[int],
    texts: Sequence[str],
    *,
    fwd_hooks: Hooks = (),
    batch_size: int = 16,
) -> np.ndarray:
    """log p(text | prompt) for each text, summed over its tokens (teacher-forced, batched)."""
    encoded = encode_texts(handle, prompt_ids, texts)
    out = []
    for i in range(0, len(encoded), batch_size):
        batch = collate(encoded[i : i + batch_size], pad_id(handle.tokenizer), handle.device)
        out.append(target_logprob(handle.forward(batch.tokens, fwd_hooks=fwd_hooks), batch).cpu())
    return torch.cat(out).double().numpy()


def continuation_logprob(
    handle: ModelHandle, prompt: str, texts: Sequence[str], *, fwd_hooks: Hooks = (), batch_size: int = 16
) -> float:
    """Mean over `texts` of log p(text | prompt), each text read as a continuation (a leading space added)."""
    ids = handle.tokenize(prompt)[0].tolist()
    return float(text_logprobs(handle, ids, texts, fwd_hooks=fwd_hooks, batch_size=batch_size).mean())
