"""Held-out measures of a steering effect: the teacher-forced margin between held-out positive and negative texts,
and a judge of generated text made from the unsteered model itself.

- **Margin** at a prompt = mean over positive texts of log p(text | prompt) − the same over negative texts, each
  text read as a continuation (a leading space added), in nats per text. Its change under steering (or prompting)
  is the held-out effect; texts are held out when they were never used to build the vector (`HeldOut.held_out`).
- **Judge** (nearest centroid, unsteered model): a text's embedding is the mean of the unsteered model's residual
  stream after layer `judge_layer` over its positions from 1 on (position 0 is the attention sink, see
  `direction.activations`); a continuation is "positive" when it lies closer (Euclidean) to the centroid of the
  held-out positive texts than to that of the negatives. `JUDGE_NOTE` states its weakness; its leave-one-out
  accuracy on the held-out texts themselves is reported beside every share it gives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from headscope import checks
from headscope.codec import JsonCodec, jfield
from headscope.errors import InputError
from headscope.models import hooks
from headscope.models.handle import ModelHandle

JUDGE_DEPTH = (
    0.6  # layer 17 of SmolLM2's 30: leave-one-out accuracy 0.96 at 15–18 on the sentiment held-out set
)
JUDGE_NOTE = (
    "nearest centroid of the unsteered model's mean residual (position 0 excluded) at the judge layer: it sees "
    "topic, wording and length as much as the concept, a 135M model's embedding is a weak reader of tone, and a "
    "continuation that copies words of the held-out texts scores as the concept without expressing it"
)


def judge_layer(n_layers: int) -> int:
    return round(JUDGE_DEPTH * (n_layers - 1))


@dataclass(frozen=True)
class HeldOut:
    """Positive and negative texts that measure an effect; held_out: never used to build the vector."""

    positives: tuple[str, ...]
    negatives: tuple[str, ...]
    held_out: bool = True

    def __post_init__(self) -> None:
        for side in ("positives", "negatives"):
            texts = getattr(self, side)
            ok = (
                isinstance(texts, tuple | list)
                and texts
                and all(isinstance(t, str) and t.strip() for t in texts)
            )
            if not ok:
                raise InputError(f"held-out {side} must be a non-empty list of non-blank texts")
            object.__setattr__(self, side, tuple(texts))
        checks.flag(self.held_out, "held_out")

    @property
    def texts(self) -> tuple[str, ...]:
        return self.positives + self.negatives

    @property
    def is_positive(self) -> np.ndarray:
        return np.array([True] * len(self.positives) + [False] * len(self.negatives))


@dataclass(frozen=True)
class JudgeInfo(JsonCodec):
    """What the judge is and how well it sorts the held-out texts themselves (leave-one-out)."""

    layer: int
    heldout_accuracy: float = jfield(digits=4)
    note: str = JUDGE_NOTE


class Judge:
    """Nearest-centroid reader of continuations, built from the held-out texts under the unsteered model."""

    def __init__(self, handle: ModelHandle, texts: HeldOut, layer: int | None = None) -> None:
        self.handle = handle
        self.layer = judge_layer(handle.facts.n_layers) if layer is None else layer
        self.hook = hooks.resid(self.layer, "post")
        emb = torch.stack([self.embed(handle.tokenize(t)[0].tolist()) for t in texts.texts])
        self.labels = torch.from_numpy(texts.is_positive)
        self.embeddings = emb
        self.pos, self.neg = emb[self.labels].mean(0), emb[~self.labels].mean(0)

    def embed(self, ids: Sequence[int]) -> Tensor:
        """Mean residual after the judge layer over positions 1… of the text read alone (unsteered)."""
        if len(ids) < 2:
            raise InputError("the judge needs at least two tokens (position 0 is left out)")
        _, cache = self.handle.run_with_cache(torch.tensor([list(ids)]), [self.hook])
        return cache[self.hook][0, 1:].float().mean(0).cpu()

    def positive(self, ids: Sequence[int]) -> bool:
        """True when the text is closer to the positive centroid; a continuation under two tokens is not."""
        if len(ids) < 2:
            return False
        return _closer(self.embed(ids), self.pos, self.neg)

    def info(self) -> JudgeInfo:
        return JudgeInfo(self.layer, loo_accuracy(self.embeddings, self.labels))


def _closer(x: Tensor, pos: Tensor, neg: Tensor) -> bool:
    return float((x - pos).norm()) < float((x - neg).norm())


def loo_accuracy(embeddings: Tensor, labels: Tensor) -> float:
    """Share of texts put on their own side by centroids computed without them."""
    hits = 0
    for i in range(len(embeddings)):
        keep = torch.ones(len(embeddings), dtype=torch.bool)
        keep[i] = False
        pos = embeddings[keep & labels].mean(0)
        neg = embeddings[keep & ~labels].mean(0)
        hits += _closer(embeddings[i], pos, neg) == bool(labels[i])
    return hits / len(embeddings)
