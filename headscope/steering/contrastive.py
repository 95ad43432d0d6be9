"""Contrastive steering vectors (GLOV, Mirza et al. 2024; CAA): v = mean act(positives) − mean act(negatives).

Two sites:
- a layer's residual stream (`blocks.L.hook_resid_post`, GLOV's site; papers.md §5.4), one d_model vector;
- the outputs of selected heads (`blocks.l.attn.hook_z`, before `o_proj`), one d_head vector per head: the same
  contrast read and written per head, so steering touches only those heads' contributions.

Each text is pooled on its own (mean over its positions from 1 on, or its last position) so no padding enters a
mean and the attention sink at position 0 does not dominate it (see `direction.activations`); the pooled vectors
are averaged per side. Steering adds α · r · v/‖v‖ with α relative to the activation norm r at the site
(`direction.SteeringVector`), and every comparison reports the effect beside its cost (`cost.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor

from headscope import checks
from headscope.codec import JsonCodec, jfield
from headscope.errors import InputError
from headscope.models import hooks
from headscope.models.handle import Hooks, ModelHandle
from headscope.progress import Progress, part, silent, steps
from headscope.selection import HeadSet
from headscope.steering.comparison import SideBySide, SideBySideConfig, check_prompt, side_by_side
from headscope.steering.cost import Cost, steering_cost
from headscope.steering.direction import SteerConfig, SteeringVector, activations, check_alpha
from headscope.steering.generate import GenConfig, Generation, HookFactory, generate
from headscope.steering.heldout import HeldOut
from headscope.steering.hooks import Position
from headscope.steering.scoring import continuation_logprob
from headscope.steering.tasks import texts_hash

Pooling = Literal["mean", "last"]
POOLINGS: tuple[str, ...] = ("mean", "last")
MAX_TEXTS = 256
MAX_TEXT_CHARS = 2000
DEFAULT_DEPTH = (
    0.3  # default layer = round(0.3 · (n_layers − 1)): layer 9 of SmolLM2's 30 (README "Defaults")
)
DEFAULT_GEN = GenConfig()


def default_layer(n_layers: int) -> int:
    return round(DEFAULT_DEPTH * (n_layers - 1))


def check_layer(layer: int, n_layers: int) -> None:
    if not isinstance(layer, int) or not 0 <= layer < n_layers:
        raise InputError(f"layer {layer} is out of range: the model has layers 0..{n_layers - 1}")


def check_texts(texts: Sequence[str], side: str) -> list[str]:
    """The non-blank texts, unchanged (blank entries are skipped: one example a line)."""
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise InputError(f"the {side} list must be a list of texts")
    kept = [t for t in texts if t.strip()]
    if not kept:
        raise InputError(f"the {side} list is empty: give at least one text")
    if len(kept) > MAX_TEXTS:
        raise InputError(f"the {side} list has {len(kept)} texts; the limit is {MAX_TEXTS}")
    for i, t in enumerate(kept, start=1):
        if len(t) > MAX_TEXT_CHARS:
            raise InputError(f"{side} text {i} is {len(t)} characters; the limit is {MAX_TEXT_CHARS}")
    return kept


@dataclass(frozen=True)
class ContrastiveConfig:
    """layer: the residual stream after this block (None: `default_layer`); heads: steer these heads' outputs
    instead (a resolved `HeadSet`; then `layer` must be None)."""

    layer: int | None = None
    pooling: Pooling = "mean"
    heads: HeadSet | None = None

    def __post_init__(self) -> None:
        if self.layer is not None:
            object.__setattr__(self, "layer", checks.integer(self.layer, "layer", 0, 10_000))
        checks.choice(self.pooling, "pooling", POOLINGS)
        if self.heads is not None:
            if not isinstance(self.heads, HeadSet) or not self.heads:
                raise InputError("heads must be a non-empty head selection")
            if self.layer is not None:
                raise InputError("give a layer (residual stream) or heads (their outputs), not both")


def _contrast(
    texts: tuple[list[str], list[str]], read: Callable[[str], Tensor], pooling: str
) -> tuple[Tensor, Tensor]:
    """(mean pooled positives − mean pooled negatives, mean activation norm over every position read), for `read`
    giving a text's activations [pos, d] or [pos, k, d] (position 0 already dropped)."""
    sides, norms = [], []
    for side in texts:
        acts = [read(t) for t in side]
        sides.append(torch.stack([a.mean(0) if pooling == "mean" else a[-1] for a in acts]).mean(0))
        norms += [a.norm(dim=-1) for a in acts]
    return sides[0] - sides[1], torch.cat(norms).mean(0)


def _at_layer(handle: ModelHandle, layer: int) -> tuple[str, Callable[[str], Tensor]]:
    name = hooks.resid(layer, "post")
    return name, lambda text: activations(handle, text, [name])[name]


def _at_heads(handle: ModelHandle, heads: HeadSet) -> Callable[[str], Tensor]:
    names = [hooks.z(layer) for layer in heads.layers]

    def read(text: str) -> Tensor:  # [pos, k, d_head], heads in HeadSet order
        acts = activations(handle, text, names)
        return torch.stack([acts[hooks.z(layer)][:, head] for layer, head in heads], dim=1)

    return read


def contrastive_vector(
    handle: ModelHandle,
    positives: Sequence[str],
    negatives: Sequence[str],
    cfg: ContrastiveConfig,
    *,
    progress: Progress | None = None,
) -> SteeringVector:
    pos, neg = check_texts(positives, "positive"), check_texts(negatives, "negative")
    say, total, done = progress or silent, len(pos) + len(neg), [0]
    f, hook = handle.facts, None
    if cfg.heads is not None:
        if (cfg.heads.n_layers, cfg.heads.n_heads) != (f.n_layers, f.n_heads):
            raise InputError(f"the head selection is for a {cfg.heads.n_layers}×{cfg.heads.n_heads} model")
        read = _at_heads(handle, cfg.heads)
    else:
        layer = default_layer(f.n_layers) if cfg.layer is None else cfg.layer
        check_layer(layer, f.n_layers)
        hook, read = _at_layer(handle, layer)

    def counted(text: str) -> Tensor:
        say(f"reading texts {done[0] + 1}/{total}", done[0] / total)
        done[0] += 1
        return read(text)

    direction, ref = _contrast((pos, neg), counted, cfg.pooling)
    source = {"pooling": cfg.pooling, "n_positive": len(pos), "n_negative": len(neg),
              "data_hash": texts_hash(pos, neg)}  # fmt: skip
    return SteeringVector(direction, ref, "contrastive", hook=hook, heads=cfg.heads, source=source)


@dataclass(frozen=True)
class Comparison(SideBySide):
    """`side_by_side` for a steering vector, with where it sits and how strongly it was added."""

    site: str  # the hook, or "heads" (their outputs, hook_z)
    layer: int | None
    heads: str | None
    alpha: float
    position: str
    added_norm: float  # |α| · r: the norm of what the hooks add (4 digits, as `SteeringVector.to_json`)
    ref_norm: float
    natural_alpha: float
    vector: SteeringVector | None = jfield(skip=True, default=None, compare=False)

    @staticmethod
    def of(sv: SteeringVector, cfg: SteerConfig, sbs: SideBySide) -> Comparison:
        v = sv.to_json()
        return Comparison(
            **sbs.parts(), site=v["sites"][0] if sv.heads is None else "heads", layer=v["layer"],
            heads=v["heads"], alpha=cfg.alpha, position=cfg.position, ref_norm=v["ref_norm"],
            added_norm=round(abs(cfg.alpha) * v["ref_norm"], 4), natural_alpha=v["natural_alpha"], vector=sv,
        )  # fmt: skip


def preference(
    handle: ModelHandle, prompt: str, positives: Sequence[str], negatives: Sequence[str], hooks: Hooks = ()
) -> float:
    return continuation_logprob(handle, prompt, positives, fwd_hooks=hooks) - continuation_logprob(
        handle, prompt, negatives, fwd_hooks=hooks
    )


def held_out_by_hash(sv: SteeringVector, positives: Sequence[str], negatives: Sequence[str]) -> HeldOut:
    """Texts that measure a vector: held out unless they are exactly the texts that built it (by data hash)."""
    same = texts_hash(list(positives), list(negatives)) == sv.source.get("data_hash")
    return HeldOut(tuple(positives), tuple(negatives), held_out=not same)


def compare_vector(
    handle: ModelHandle,
    sv: SteeringVector,
    prompts: Sequence[str],
    cfg: SteerConfig,
    sbs: SideBySideConfig | None = None,
    *,
    texts: HeldOut | None = None,
    progress: Progress | None = None,
) -> Comparison:
    """`side_by_side` with this vector added at strength `cfg` (the prompting rows when `sbs` has an
    instruction; the held-out effect and the judge when `texts` are given)."""
    res = side_by_side(handle, _factory(sv, cfg), prompts, sbs, texts=texts, progress=progress)
    return Comparison.of(sv, cfg, res)


def compare(
    handle: ModelHandle,
    sv: SteeringVector,
    prompt: str,
    positives: Sequence[str] | None,
    negatives: Sequence[str] | None,
    cfg: SteerConfig,
    gen: GenConfig = DEFAULT_GEN,
    *,
    progress: Progress | None = None,
) -> Comparison:
    """One prompt, no prompting rows; the margin effect on the given texts (marked in-sample when they are the
    texts that built the vector)."""
    texts = None
    if positives is not None and negatives is not None:
        pos, neg = check_texts(positives, "positive"), check_texts(negatives, "negative")
        texts = held_out_by_hash(sv, pos, neg)
    return compare_vector(handle, sv, [prompt], cfg, SideBySideConfig(gen), texts=texts, progress=progress)


@dataclass(frozen=True)
class SweepRow(JsonCodec):
    alpha: float
    generation: Generation
    cost: Cost
    logit_diff: float = jfield(digits=5)
    change: float = jfield(digits=5)  # logit_diff − logit_diff at α = 0

    json_extra: ClassVar[tuple[str, ...]] = ("text", "perplexity_ratio", "distinct_steered", "fluent")

    @property
    def text(self) -> str:
        return self.generation.text

    @property
    def perplexity_ratio(self) -> float:
        return round(self.cost.perplexity_ratio, 4)

    @property
    def distinct_steered(self) -> float:
        return round(self.cost.distinct_steered, 4)

    @property
    def fluent(self) -> bool:
        return self.cost.fluent


def first_token(handle: ModelHandle, text: str) -> int:
    ids = handle.tokenizer(text, add_special_tokens=False).input_ids if isinstance(text, str) else []
    if not ids:
        raise InputError(f"{text!r} has no tokens")
    return int(ids[0])


def alpha_sweep(
    handle: ModelHandle,
    sv: SteeringVector,
    prompt: str,
    alphas: Sequence[float],
    token_pair: tuple[str, str],
    position: Position = "last",
    gen: GenConfig = DEFAULT_GEN,
    *,
    progress: Progress | None = None,
) -> list[SweepRow]:
    """logit[token_a] − logit[token_b] at the prompt's last position, a generation and its cost, for each α."""
    if not alphas or len(alphas) > 21:
        raise InputError("give between 1 and 21 alpha values")
    a, b = first_token(handle, token_pair[0]), first_token(handle, token_pair[1])
    ids = handle.tokenize(check_prompt(prompt))
    start = ids.shape[1] - 1
    base = _logit_diff(handle, ids, a, b, ())
    n = len(alphas) + 1
    plain = generate(handle, ids, gen, on_token=steps(progress, "unsteered token", 0.0, 1 / n))
    rows = []
    for i, alpha in enumerate(alphas, start=1):
        cfg = SteerConfig(check_alpha(alpha), position)
        diff = _logit_diff(handle, ids, a, b, sv.hooks(cfg, start))
        say = part(progress, i / n, (i + 1) / n)
        g = generate(handle, ids, gen, _factory(sv, cfg), on_token=steps(say, f"α = {cfg.alpha:g}: token"))
        cost = steering_cost(handle, ids, plain.token_ids, g.token_ids, sv.hooks(cfg, start))
        rows.append(SweepRow(cfg.alpha, g, cost, logit_diff=diff, change=diff - base))
    return rows


def _factory(sv: SteeringVector, cfg: SteerConfig) -> HookFactory:
    return lambda start: sv.hooks(cfg, start)


def _logit_diff(handle: ModelHandle, ids: Tensor, a: int, b: int, hooks: Hooks) -> float:
    last = handle.forward(ids, fwd_hooks=hooks)[0, -1].float()
    return float(last[a] - last[b])
