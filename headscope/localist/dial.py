"""The locality dial (inference time): a frozen config and the hooks that bias pre-softmax attention scores.

Where: `blocks.{l}.attn.hook_attn_scores`, laid out [batch, head, query, key] with one slice per *query* head (GQA
models too), already scaled by 1/√d_head and already causally masked (masked keys hold the dtype's minimum), so
softmax of the hooked scores is exactly `hook_pattern` (checked on TL 3.9, eager attention, in the tests).

Modes (registry `MODES`), with λ_l the layer's dial value and s = `strength`:
- `distance`: bias −s·λ_l·|i−j| (s in nats per token of distance; s = 1 at λ = 1 makes a key 3 tokens back
  e³ ≈ 20× less attractive than the query itself);
- `block`: bias −s·BLOCK_NATS·λ_l on keys outside the query's block (`blocks.py`), i.e. 10 nats at s = 1, λ = 1;
- `window`: hard band: key j is kept iff i−j < w with w = max(1, round(n^(1−λ_l))) for n keys — the log of the
  width, i.e. the entropy ceiling, falls linearly in λ; at λ_l = 1 a query sees only itself (never an empty row).
Schedules (registry `SCHEDULES`) give per-layer weights w_l ∈ [0, 1] and λ_l = λ·w_l: `uniform` (w_l = 1),
`progressive` (w_l = (l/(L−1))^β, β ≥ 1, so layer 0 is untouched; a one-layer model gets w = 1), `explicit`
(`layer_weights`, one per layer). Layers with λ_l = 0 get no hook at all, so λ = 0 is the model, bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from headscope.errors import InputError
from headscope.localist.blocks import BlockSpec, block_ids
from headscope.models import hooks
from headscope.models.handle import HookFn, ModelHandle
from headscope.registry import Registry

BLOCK_NATS = 10.0
MAX_STRENGTH = 100.0
MAX_BETA = 20.0


@dataclass(frozen=True)
class DialGeometry:
    """What the bias builders need for one token sequence: |i−j| and whether j lies outside i's block."""

    distance: Float[Tensor, "query key"]
    off_block: Float[Tensor, "query key"] | None


ModeFn = Callable[[float, DialGeometry, "LocalityDial"], Float[Tensor, "query key"]]
ScheduleFn = Callable[["LocalityDial", int], tuple[float, ...]]
MODES: Registry[ModeFn] = Registry("locality mode")
SCHEDULES: Registry[ScheduleFn] = Registry("layer schedule")


def register_mode(name: str) -> Callable[[ModeFn], ModeFn]:
    return MODES.register(name)


def register_schedule(name: str) -> Callable[[ScheduleFn], ScheduleFn]:
    return SCHEDULES.register(name)


def _unit_interval(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise InputError(f"{name} must be a number in [0, 1], got {value!r}")  # NaN fails the range test too


@dataclass(frozen=True)
class LocalityDial:
    """λ (`lam`) in [0, 1]; see the module docstring for modes and schedules."""

    lam: float = 0.0
    mode: str = "distance"
    schedule: str = "uniform"
    beta: float = 1.0
    layer_weights: tuple[float, ...] = ()
    heads: tuple[int, ...] | None = None
    strength: float = 1.0
    blocks: BlockSpec = field(default_factory=BlockSpec)

    def __post_init__(self) -> None:
        _unit_interval("lambda", self.lam)
        if self.mode not in MODES:
            raise InputError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.schedule not in SCHEDULES:
            raise InputError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if not (isinstance(self.beta, int | float) and 1.0 <= self.beta <= MAX_BETA):
            raise InputError(f"beta must be in [1, {MAX_BETA:g}], got {self.beta!r}")
        if not (isinstance(self.strength, int | float) and 0.0 < self.strength <= MAX_STRENGTH):
            raise InputError(f"strength must be in (0, {MAX_STRENGTH:g}], got {self.strength!r}")
        for w in self.layer_weights:
            _unit_interval("each layer weight", w)
        if (self.schedule == "explicit") != bool(self.layer_weights):
            raise InputError("layer_weights are given exactly when schedule is 'explicit'")
        self._check_heads()

    def _check_heads(self) -> None:
        if self.heads is None:
            return
        if not self.heads or any(isinstance(h, bool) or not isinstance(h, int) or h < 0 for h in self.heads):
            raise InputError(f"heads must be a non-empty list of head indices ≥ 0, got {self.heads!r}")
        if len(set(self.heads)) != len(self.heads):
            raise InputError(f"heads has duplicates: {self.heads!r}")

    def with_lambda(self, lam: float) -> LocalityDial:
        return replace(self, lam=lam)

    def layer_lambdas(self, n_layers: int) -> tuple[float, ...]:
        """λ_l for each layer (λ times the schedule's weight)."""
        return tuple(self.lam * w for w in SCHEDULES[self.schedule](self, n_layers))

    def check(self, handle: ModelHandle) -> None:
        """What the config alone cannot know: the model's layer and head counts."""
        self.layer_lambdas(handle.facts.n_layers)
        bad = [h for h in self.heads or () if h >= handle.facts.n_heads]
        if bad:
            raise InputError(f"head index {bad[0]} out of range: the model has {handle.facts.n_heads} heads")

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["lambda"] = out.pop("lam")
        out["heads"] = list(self.heads) if self.heads is not None else None
        return out


@register_schedule("uniform")
def _uniform(dial: LocalityDial, n_layers: int) -> tuple[float, ...]:
    return (1.0,) * n_layers


@register_schedule("progressive")
def _progressive(dial: LocalityDial, n_layers: int) -> tuple[float, ...]:
    if n_layers == 1:
        return (1.0,)
    return tuple((layer / (n_layers - 1)) ** dial.beta for layer in range(n_layers))


@register_schedule("explicit")
def _explicit(dial: LocalityDial, n_layers: int) -> tuple[float, ...]:
    if len(dial.layer_weights) != n_layers:
        raise InputError(
            f"layer_weights has {len(dial.layer_weights)} entries; the model has {n_layers} layers"
        )
    return tuple(float(w) for w in dial.layer_weights)


@register_mode("distance")
def _distance(lam: float, geo: DialGeometry, dial: LocalityDial) -> Float[Tensor, "query key"]:
    return geo.distance * (-dial.strength * lam)


@register_mode("block")
def _block(lam: float, geo: DialGeometry, dial: LocalityDial) -> Float[Tensor, "query key"]:
    assert geo.off_block is not None  # dial_geometry builds it for this mode
    return geo.off_block * (-dial.strength * BLOCK_NATS * lam)


@register_mode("window")
def _window(lam: float, geo: DialGeometry, dial: LocalityDial) -> Float[Tensor, "query key"]:
    width = window_width(lam, geo.distance.shape[-1])
    outside = geo.distance >= width
    return torch.zeros_like(geo.distance).masked_fill(outside, -math.inf)


def window_width(lam: float, n_keys: int) -> int:
    return max(1, round(n_keys ** (1.0 - lam)))


def dial_geometry(
    handle: ModelHandle, tokens: Int[Tensor, "batch pos"], dial: LocalityDial
) -> tuple[DialGeometry, Int[Tensor, " pos"] | None]:
    n = tokens.shape[-1]
    i = torch.arange(n, device=handle.device)
    distance = (i[:, None] - i[None, :]).abs().float()
    if dial.mode != "block":
        return DialGeometry(distance, None), None
    blocks = block_ids(handle.str_tokens(tokens[0]), dial.blocks)
    on = blocks.to(handle.device)
    return DialGeometry(distance, (on[:, None] != on[None, :]).float()), blocks


ScoreFn = Callable[[Tensor], Tensor]


def _score_fn(lam: float, geo: DialGeometry, dial: LocalityDial) -> ScoreFn:
    mode = MODES[dial.mode]
    heads = list(dial.heads) if dial.heads is not None else None

    def apply(scores: Float[Tensor, "batch head query key"]) -> Float[Tensor, "batch head query key"]:
        q, k = scores.shape[-2:]
        if k > geo.distance.shape[-1]:
            raise InputError(f"the dial was built for {geo.distance.shape[-1]} tokens, the run has {k}")
        bias = mode(lam, geo, dial)[k - q : k, :k].to(scores.dtype)
        if heads is None:
            return scores + bias
        out = scores.clone()  # out of place: the same hooks may run under autograd
        out[:, heads] = out[:, heads] + bias
        return out

    return apply


def score_transforms(
    handle: ModelHandle, tokens: Int[Tensor, "batch pos"], dial: LocalityDial
) -> dict[int, ScoreFn]:
    """layer → what the dial does to that layer's pre-softmax scores; layers whose λ_l is 0 are absent."""
    dial.check(handle)
    lams = dial.layer_lambdas(handle.facts.n_layers)
    if not any(lams):
        return {}
    geo, _ = dial_geometry(handle, tokens, dial)
    return {layer: _score_fn(lam, geo, dial) for layer, lam in enumerate(lams) if lam > 0}


def dial_hooks(
    handle: ModelHandle, tokens: Int[Tensor, "batch pos"], dial: LocalityDial
) -> list[tuple[str, HookFn]]:
    """Forward hooks that apply `dial` to a run of `tokens`; none at all for layers whose λ_l is 0."""

    def as_hook(fn: ScoreFn) -> HookFn:
        return lambda scores, hook: fn(scores)

    return [
        (hooks.scores(layer), as_hook(fn)) for layer, fn in score_transforms(handle, tokens, dial).items()
    ]
