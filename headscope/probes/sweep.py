"""λ sweep: for each λ on a grid, one dialed forward of an evaluation text → entropy, pointer fidelity, perplexity,
next-token accuracy and KL(undialed ‖ dialed).

Definitions (per λ point, one forward; patterns are reduced inside their hooks, never stored):
- mean_entropy_bits: mean over (layer, head, every query) of the row entropy in bits;
- pointer_fidelity / hit_rate: mean over (layer, head, queries 1..n−1) of the attention mass on the target
  (`local` = {i−1, i} by default, `block` = the query's own block in block mode) / of 1[argmax ∈ target];
- perplexity = exp(mean next-token cross-entropy) over positions 0..n−2, accuracy = share of argmax hits there;
- kl: mean over all positions of KL(p_undialed ‖ p_dialed) of the next-token distributions, in nats.
The undialed run is the λ = 0 point when the grid has one (the dial attaches no hooks there), else one extra
plain forward. The evaluation text defaults to the shipped Wikipedia excerpt (`headscope.data.excerpt_text`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from headscope import checks
from headscope.attention.locality import LocalityDial, dial_hooks
from headscope.attention.patterns import TARGETS, target_mask
from headscope.codec import JsonCodec, jfield
from headscope.data import excerpt_text
from headscope.errors import InputError
from headscope.models.handle import ModelHandle
from headscope.probes.probe import probe_blocks, run_row_stats
from headscope.progress import Progress, steps

MAX_POINTS = 21
DEFAULT_EVAL_TOKENS = 256


@dataclass(frozen=True)
class SweepConfig(JsonCodec):
    """lambdas: 1..21 values in [0, 1]; dial: mode/schedule/heads/... (its own λ is replaced per point);
    target: pointer-fidelity target (None: `block` in block mode, else `local`)."""

    lambdas: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    dial: LocalityDial = field(default_factory=LocalityDial)
    target: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.lambdas, tuple | list) or not 1 <= len(self.lambdas) <= MAX_POINTS:
            raise InputError(f"lambdas must have 1 to {MAX_POINTS} values, got {self.lambdas!r}")
        lams = tuple(checks.number(lam, "each lambda", 0.0, 1.0) for lam in self.lambdas)
        object.__setattr__(self, "lambdas", lams)
        if not isinstance(self.dial, LocalityDial):
            raise InputError(f"dial must be a LocalityDial, got {type(self.dial).__name__}")
        if self.target is not None:
            TARGETS.check(self.target, field="target")

    @property
    def target_name(self) -> str:
        return self.target or ("block" if self.dial.mode == "block" else "local")


@dataclass(frozen=True)
class SweepRow(JsonCodec):
    lam: float = jfield(name="lambda")
    mean_entropy_bits: float = jfield(digits=6)
    pointer_fidelity: float = jfield(digits=6)
    hit_rate: float = jfield(digits=6)
    perplexity: float = jfield(digits=6)
    accuracy: float = jfield(digits=6)
    kl: float = jfield(digits=8)


def _dial_without_lambda(dial: LocalityDial) -> dict[str, Any]:
    return {k: v for k, v in dial.to_json().items() if k != "lambda"}  # a sweep's λ is in its rows


@dataclass(frozen=True)
class SweepResult(JsonCodec):
    """`headscope locality sweep --json`; `n_tokens` is derived (written, not read)."""

    model: str
    token_ids: tuple[int, ...]
    target: str
    dial: LocalityDial = jfield(encode=_dial_without_lambda, decode=LocalityDial.from_json)
    rows: tuple[SweepRow, ...] = ()
    truncated_from: int | None = None

    json_extra = ("n_tokens",)

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)


def eval_tokens(
    handle: ModelHandle, text: str | None = None, *, max_tokens: int = DEFAULT_EVAL_TOKENS
) -> tuple[Int[Tensor, "batch pos"], int | None]:
    """The evaluation ids (the shipped excerpt when `text` is None), cut to `max_tokens`; and the length before
    cutting when it was cut (None otherwise)."""
    max_tokens = checks.integer(max_tokens, "max_tokens", 2, handle.max_tokens)
    text = excerpt_text() if text is None else text
    if not isinstance(text, str) or not text.strip():
        raise InputError("text is empty")
    if len(text) > 40 * handle.max_tokens:  # refuse before tokenising megabytes
        raise InputError(f"text is too long: {len(text)} characters (limit {40 * handle.max_tokens})")
    ids = handle.tokenizer(text, add_special_tokens=True).input_ids
    if len(ids) < 2:
        raise InputError("the text must be at least 2 tokens long to score next-token predictions")
    cut = len(ids) if len(ids) > max_tokens else None
    return torch.tensor([ids[:max_tokens]], dtype=torch.long, device=handle.device), cut


def _next_token_scores(logits: Float[Tensor, "pos d_vocab"], ids: Int[Tensor, " pos"]) -> tuple[float, float]:
    """(perplexity, accuracy) of predicting ids[1:] from logits[:-1]."""
    pred = logits[:-1].double()
    ce = F.cross_entropy(pred, ids[1:])
    return math.exp(float(ce)), float((pred.argmax(-1) == ids[1:]).double().mean())


def _kl(
    base_logp: Float[Tensor, "pos d_vocab"], logits: Float[Tensor, "pos d_vocab"], chunk: int = 256
) -> float:
    """Mean over positions of KL(base ‖ dialed), in float64, a chunk of positions at a time (2048 × 49k floats
    in float64 are 0.8 GB per copy)."""
    total = 0.0
    for start in range(0, logits.shape[0], chunk):
        base = base_logp[start : start + chunk]
        logp = F.log_softmax(logits[start : start + chunk].double(), -1)
        total += float((base.exp() * (base - logp)).sum())
    return total / logits.shape[0]


def _point(
    handle: ModelHandle, tokens: Tensor, dial: LocalityDial, target: Tensor, blocks: Tensor | None
) -> tuple[Float[Tensor, "pos d_vocab"], dict[str, Float[np.ndarray, "layer head pos"]]]:
    fwd = dial_hooks(handle, tokens, dial, block_ids=blocks)
    logits, stats = run_row_stats(handle, tokens, target, fwd_hooks=fwd)
    return logits[0], stats


def sweep_locality(
    handle: ModelHandle,
    tokens: Int[Tensor, "batch pos"],
    cfg: SweepConfig,
    *,
    progress: Progress | None = None,
    truncated_from: int | None = None,
) -> SweepResult:
    """One dialed forward per λ (plus one plain forward when λ = 0 is not on the grid); `progress` sees
    "λ point i/n" after each."""
    cfg.dial.check(handle)
    if tokens.shape[-1] < 2:
        raise InputError("the evaluation text must be at least 2 tokens long")
    blocks = probe_blocks(handle, tokens, cfg.target_name, cfg.dial, None)
    target = target_mask(cfg.target_name, tokens.shape[-1], blocks)
    order = sorted(
        range(len(cfg.lambdas)), key=lambda k: cfg.lambdas[k] != 0
    )  # λ = 0 first: it is the baseline
    base_logp: Tensor | None = None
    if cfg.lambdas[order[0]] != 0:
        base_logp = F.log_softmax(handle.forward(tokens)[0].double(), -1)
    rows: dict[int, SweepRow] = {}
    tick = steps(progress, "λ point")
    for done, k in enumerate(order):
        logits, stats = _point(handle, tokens, cfg.dial.with_lambda(cfg.lambdas[k]), target, blocks)
        if base_logp is None:
            base_logp = F.log_softmax(logits.double(), -1)
        rows[k] = _row(cfg.lambdas[k], logits, stats, tokens[0], base_logp)
        tick(done + 1, len(order))
    ids = tuple(int(i) for i in tokens[0].tolist())
    ordered = tuple(rows[k] for k in range(len(rows)))
    return SweepResult(handle.identity.name, ids, cfg.target_name, cfg.dial, ordered, truncated_from)


def _row(
    lam: float, logits: Tensor, stats: dict[str, np.ndarray], ids: Tensor, base_logp: Tensor
) -> SweepRow:
    ppl, acc = _next_token_scores(logits, ids)
    rest = slice(1, None)  # row 0 has a single key: no information on fidelity
    return SweepRow(
        lam=float(lam),
        mean_entropy_bits=float(stats["entropy_bits"].mean()),
        pointer_fidelity=float(stats["target_mass"][..., rest].mean()),
        hit_rate=float(stats["target_hit"][..., rest].mean()),
        perplexity=ppl,
        accuracy=acc,
        kl=max(0.0, _kl(base_logp, logits)),
    )
