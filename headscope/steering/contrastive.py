"""Contrastive steering vectors (GLOV / CAA): v = mean act(positives) − mean act(negatives) at one residual point.

Each text is pooled on its own (mean over its positions, or its last position) at `blocks.{L}.hook_resid_post`,
so no padding enters a mean; the pooled vectors are then averaged per side. Steering adds α·v during generation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from headscope.errors import InputError
from headscope.models import hooks
from headscope.models.handle import Hooks, ModelHandle
from headscope.steering.generate import GenConfig, Generation, HookFactory, generate
from headscope.steering.hooks import POSITIONS, Position, resid_add_hook
from headscope.steering.scoring import continuation_logprob
from headscope.steering.tasks import texts_hash

Pooling = Literal["mean", "last"]
POOLINGS: tuple[str, ...] = ("mean", "last")
MAX_ALPHA = 100.0  # documented range of α: [-100, 100]
MAX_TEXTS = 256
MAX_TEXT_CHARS = 2000
DEFAULT_GEN = GenConfig()


def check_layer(layer: int, n_layers: int) -> None:
    if not isinstance(layer, int) or not 0 <= layer < n_layers:
        raise InputError(f"layer {layer} is out of range: the model has layers 0..{n_layers - 1}")


def check_alpha(alpha: float) -> float:
    if not isinstance(alpha, int | float) or not math.isfinite(alpha):
        raise InputError(f"alpha must be a finite number; got {alpha!r}")
    if abs(alpha) > MAX_ALPHA:
        raise InputError(f"alpha must be in [-{MAX_ALPHA:g}, {MAX_ALPHA:g}]; got {alpha:g}")
    return float(alpha)


def check_texts(texts: Sequence[str], side: str) -> list[str]:
    kept = [t.strip() for t in texts if isinstance(t, str) and t.strip()]
    if not kept:
        raise InputError(f"the {side} list is empty: give at least one text")
    if len(kept) > MAX_TEXTS:
        raise InputError(f"the {side} list has {len(kept)} texts; the limit is {MAX_TEXTS}")
    for t in kept:
        if len(t) > MAX_TEXT_CHARS:
            raise InputError(f"a {side} text is {len(t)} characters; the limit is {MAX_TEXT_CHARS}")
    return kept


@dataclass(frozen=True)
class ContrastiveConfig:
    layer: int
    pooling: Pooling = "mean"

    def __post_init__(self) -> None:
        if not isinstance(self.layer, int) or self.layer < 0:
            raise InputError(f"layer must be a non-negative integer; got {self.layer!r}")
        if self.pooling not in POOLINGS:
            raise InputError(f"pooling must be one of {', '.join(POOLINGS)}; got {self.pooling!r}")


@dataclass(frozen=True)
class SteerConfig:
    alpha: float
    position: Position = "last"

    def __post_init__(self) -> None:
        check_alpha(self.alpha)
        if self.position not in POSITIONS:
            raise InputError(f"position must be one of {', '.join(POSITIONS)}; got {self.position!r}")


@dataclass(frozen=True)
class ContrastiveVector:
    vector: Float[Tensor, " d_model"]
    layer: int
    pooling: Pooling
    n_positive: int
    n_negative: int
    data_hash: str

    def hooks(self, steer: SteerConfig, start: int) -> Hooks:
        return [resid_add_hook(self.layer, self.vector, steer.alpha, steer.position, start)]

    def to_json(self) -> dict:
        return {
            "layer": self.layer, "pooling": self.pooling, "n_positive": self.n_positive,
            "n_negative": self.n_negative, "norm": round(float(self.vector.norm()), 4), "data_hash": self.data_hash,
        }  # fmt: skip


def pooled_activations(
    handle: ModelHandle, texts: Sequence[str], layer: int, pooling: Pooling
) -> Float[Tensor, "n d_model"]:
    name = hooks.resid(layer, "post")
    rows = []
    for text in texts:
        _, cache = handle.run_with_cache(handle.tokenize(text), [name])
        act = cache[name][0]
        rows.append(act.mean(0) if pooling == "mean" else act[-1])
    return torch.stack(rows).float()


def contrastive_vector(
    handle: ModelHandle, positives: Sequence[str], negatives: Sequence[str], cfg: ContrastiveConfig
) -> ContrastiveVector:
    pos, neg = check_texts(positives, "positive"), check_texts(negatives, "negative")
    check_layer(cfg.layer, handle.facts.n_layers)
    mean_pos = pooled_activations(handle, pos, cfg.layer, cfg.pooling).mean(0)
    mean_neg = pooled_activations(handle, neg, cfg.layer, cfg.pooling).mean(0)
    return ContrastiveVector(
        mean_pos - mean_neg, cfg.layer, cfg.pooling, len(pos), len(neg), texts_hash(pos, neg)
    )


@dataclass(frozen=True)
class Comparison:
    """Unsteered vs steered generation, plus the effect on the positive-vs-negative preference."""

    layer: int
    alpha: float
    position: Position
    unsteered: Generation
    steered: Generation
    effect: (
        float  # Δ(steered − unsteered) of [mean log p(positives | prompt) − mean log p(negatives | prompt)]
    )

    def to_json(self) -> dict:
        return {
            "layer": self.layer, "alpha": self.alpha, "unsteered": self.unsteered.to_json(),
            "steered": self.steered.to_json(), "effect": round(self.effect, 5),
        }  # fmt: skip


def preference(
    handle: ModelHandle, prompt: str, positives: Sequence[str], negatives: Sequence[str], hooks: Hooks = ()
) -> float:
    return continuation_logprob(handle, prompt, positives, fwd_hooks=hooks) - continuation_logprob(
        handle, prompt, negatives, fwd_hooks=hooks
    )


def compare(
    handle: ModelHandle,
    cv: ContrastiveVector,
    prompt: str,
    positives: Sequence[str],
    negatives: Sequence[str],
    steer: SteerConfig,
    gen: GenConfig = DEFAULT_GEN,
) -> Comparison:
    pos, neg = check_texts(positives, "positive"), check_texts(negatives, "negative")
    ids = handle.tokenize(prompt)
    start = ids.shape[1] - 1
    plain = generate(handle, ids, gen)
    steered = generate(handle, ids, gen, _factory(cv, steer))
    effect = preference(handle, prompt, pos, neg, cv.hooks(steer, start)) - preference(
        handle, prompt, pos, neg
    )
    return Comparison(cv.layer, steer.alpha, steer.position, plain, steered, effect)


@dataclass(frozen=True)
class SweepRow:
    alpha: float
    logit_diff: float
    change: float  # logit_diff − logit_diff at α = 0
    generation: Generation

    def to_json(self) -> dict:
        return {"alpha": self.alpha, "logit_diff": round(self.logit_diff, 5), "change": round(self.change, 5),
                "text": self.generation.text}  # fmt: skip


def first_token(handle: ModelHandle, text: str) -> int:
    ids = handle.tokenizer(text, add_special_tokens=False).input_ids
    if not text or not ids:
        raise InputError(f"{text!r} has no tokens")
    return int(ids[0])


def alpha_sweep(
    handle: ModelHandle,
    cv: ContrastiveVector,
    prompt: str,
    alphas: Sequence[float],
    token_pair: tuple[str, str],
    position: Position = "last",
    gen: GenConfig = DEFAULT_GEN,
) -> list[SweepRow]:
    """logit[token_a] − logit[token_b] at the prompt's last position, and a generation, for each α."""
    if not alphas or len(alphas) > 21:
        raise InputError("give between 1 and 21 alpha values")
    a, b = first_token(handle, token_pair[0]), first_token(handle, token_pair[1])
    ids = handle.tokenize(prompt)
    start = ids.shape[1] - 1
    base = _logit_diff(handle, ids, a, b, ())
    rows = []
    for alpha in alphas:
        steer = SteerConfig(check_alpha(alpha), position)
        diff = _logit_diff(handle, ids, a, b, cv.hooks(steer, start))
        rows.append(SweepRow(steer.alpha, diff, diff - base, generate(handle, ids, gen, _factory(cv, steer))))
    return rows


def _factory(cv: ContrastiveVector, steer: SteerConfig) -> HookFactory:
    return lambda start: cv.hooks(steer, start)


def _logit_diff(handle: ModelHandle, ids: Tensor, a: int, b: int, hooks: Hooks) -> float:
    last = handle.forward(ids, fwd_hooks=hooks)[0, -1].float()
    return float(last[a] - last[b])
