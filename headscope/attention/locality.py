"""The locality model, defined once: layer schedules (shared with localist training), modes, the head selection,
and the bias they imply — as hooks on the eager path and as the kernels' bias on the fused path.

Where the eager dial acts: `blocks.{l}.attn.hook_attn_scores`, laid out [batch, head, query, key] with one slice
per *query* head (GQA models too), already scaled by 1/√d_head and causally masked (masked keys hold the dtype's
minimum), so softmax of the hooked scores is exactly `hook_pattern` (checked on TL 3.9, eager attention, in the
tests). The fused path (`headscope.kernels`) gets the same bias per layer from `LocalityDial.to_kernel_bias`.

Modes (registry `MODES`), with λ_l the layer's dial value and s = `strength`; each builds the layer's
`kernels.KernelBias`, whose forms are evaluated in one place (`kernels/bias.py`):
- `distance`: bias −s·λ_l·|i−j| (s in nats per token of distance; s = 1 at λ = 1 makes a key 3 tokens back
  e³ ≈ 20× less attractive than the query itself);
- `block`: bias −s·BLOCK_NATS·λ_l on keys outside the query's block (`blocks.py`), i.e. 10 nats at s = 1, λ = 1;
- `window`: hard band: key j is kept iff i−j < w with w = max(1, round(n^(1−λ_l))) for n keys — the log of the
  width, i.e. the entropy ceiling, falls linearly in λ; at λ_l = 1 a query sees only itself (never an empty row).
Schedules (registry `SCHEDULES`, also the localist training objective's λ_l) give per-layer weights w_l ∈ [0, 1]
and λ_l = λ·w_l: `uniform` (w_l = 1), `progressive` (w_l = (l/(L−1))^β, β ≥ 1, so layer 0 is untouched; a
one-layer model gets w = 1), `explicit` (`layer_weights`, one per layer).
Heads: `heads` is a head selection in the `HeadSet` grammar ("9.4, 12.*", "*.3"; None = every head), resolved
against the model in `check`. A layer gets a hook only if λ_l > 0 and it has a selected head; unselected heads of a
dialed layer are left bit for bit. So λ = 0 attaches no hook at all: the model, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from headscope import checks
from headscope.attention.blocks import BlockSpec, block_ids
from headscope.codec import JsonCodec, jfield
from headscope.errors import InputError
from headscope.kernels.bias import UNBOUNDED, KernelBias, bias_scores
from headscope.models import hooks
from headscope.models.handle import HookFn, ModelHandle
from headscope.registry import Registry
from headscope.selection import HeadSet, pattern_text

BLOCK_NATS = 10.0
MAX_STRENGTH = 100.0
MAX_BETA = 20.0
MAX_LAYERS = 1024

# -- schedules ---------------------------------------------------------------------------------------------------
ScheduleFn = Callable[["LayerSchedule", int], tuple[float, ...]]  # (schedule, n_layers) -> w_l
SCHEDULES: Registry[ScheduleFn] = Registry("layer schedule")


def register_schedule(name: str) -> Callable[[ScheduleFn], ScheduleFn]:
    return SCHEDULES.register(name)


@dataclass(frozen=True)
class LayerSchedule:
    """Per-layer weights w_l ∈ [0, 1]; λ_l = λ·w_l. The inference dial and localist training both use this."""

    name: str = "uniform"
    beta: float = 1.0
    layer_weights: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        SCHEDULES.check(self.name, field="schedule")
        object.__setattr__(self, "beta", checks.number(self.beta, "beta", 1.0, MAX_BETA))
        if not isinstance(self.layer_weights, tuple | list) or len(self.layer_weights) > MAX_LAYERS:
            raise InputError(f"layer_weights must be a list of at most {MAX_LAYERS} numbers in [0, 1]")
        weights = tuple(checks.number(w, "each layer weight", 0.0, 1.0) for w in self.layer_weights)
        object.__setattr__(self, "layer_weights", weights)
        if (self.name == "explicit") != bool(weights):
            raise InputError("layer_weights are given exactly when schedule is 'explicit'")

    def weights(self, n_layers: int) -> tuple[float, ...]:
        return SCHEDULES[self.name](self, n_layers)

    def lambdas(self, lam: float, n_layers: int) -> tuple[float, ...]:
        """λ_l for each layer (λ times the schedule's weight)."""
        return tuple(lam * w for w in self.weights(n_layers))


@register_schedule("uniform")
def _uniform(schedule: LayerSchedule, n_layers: int) -> tuple[float, ...]:
    return (1.0,) * n_layers


@register_schedule("progressive")
def _progressive(schedule: LayerSchedule, n_layers: int) -> tuple[float, ...]:
    if n_layers == 1:
        return (1.0,)
    return tuple((layer / (n_layers - 1)) ** schedule.beta for layer in range(n_layers))


@register_schedule("explicit")
def _explicit(schedule: LayerSchedule, n_layers: int) -> tuple[float, ...]:
    if len(schedule.layer_weights) != n_layers:
        raise InputError(
            f"layer_weights has {len(schedule.layer_weights)} entries; the model has {n_layers} layers"
        )
    return schedule.layer_weights


# -- modes -------------------------------------------------------------------------------------------------------
# (λ_l, dial, selected heads of the layer, number of keys, block ids or None) -> the layer's kernel bias
ModeFn = Callable[[float, "LocalityDial", Bool[Tensor, " head"], int, "Tensor | None"], KernelBias]
MODES: Registry[ModeFn] = Registry("locality mode")


def register_mode(name: str) -> Callable[[ModeFn], ModeFn]:
    return MODES.register(name)


@register_mode("distance")
def _distance(lam: float, dial: LocalityDial, on: Tensor, n_keys: int, blocks: Tensor | None) -> KernelBias:
    return KernelBias("distance", coef=on.float() * (dial.strength * lam))


@register_mode("block")
def _block(lam: float, dial: LocalityDial, on: Tensor, n_keys: int, blocks: Tensor | None) -> KernelBias:
    if blocks is None:
        raise InputError("the block mode needs block ids for every token")
    return KernelBias("block", coef=on.float() * (dial.strength * BLOCK_NATS * lam), block_ids=blocks)


@register_mode("window")
def _window(lam: float, dial: LocalityDial, on: Tensor, n_keys: int, blocks: Tensor | None) -> KernelBias:
    width = torch.where(on, window_width(lam, n_keys), UNBOUNDED)
    return KernelBias("window", width=width)


def window_width(lam: float, n_keys: int) -> int:
    return max(1, round(n_keys ** (1.0 - lam)))


# -- the dial ----------------------------------------------------------------------------------------------------
HeadsLike = str | HeadSet | Sequence[tuple[int, int]] | None  # what `LocalityDial(heads=...)` accepts


@dataclass(frozen=True)
class LocalityDial(JsonCodec):
    """λ (`lam`, "lambda" in JSON) in [0, 1]; see the module docstring for modes, schedules and heads."""

    lam: float = jfield(name="lambda", default=0.0)
    mode: str = "distance"
    schedule: str = "uniform"
    beta: float = 1.0
    layer_weights: tuple[float, ...] = ()
    heads: HeadsLike = jfield(default=None, decode=str)  # stored as grammar text ("9.4, 12.*") or None
    strength: float = 1.0
    blocks: BlockSpec = field(default_factory=BlockSpec)

    def __post_init__(self) -> None:
        object.__setattr__(self, "lam", checks.number(self.lam, "lambda", 0.0, 1.0))
        MODES.check(self.mode, field="mode")
        sched = LayerSchedule(self.schedule, self.beta, self.layer_weights)
        object.__setattr__(self, "beta", sched.beta)
        object.__setattr__(self, "layer_weights", sched.layer_weights)
        strength = checks.number(self.strength, "strength", 0.0, MAX_STRENGTH, lo_open=True)
        object.__setattr__(self, "strength", strength)
        heads = pattern_text(self.heads)
        if heads == "":
            raise InputError("heads selects no head (leave it out to dial every head)")
        object.__setattr__(self, "heads", heads)
        if not isinstance(self.blocks, BlockSpec):
            raise InputError(f"blocks must be a BlockSpec, got {type(self.blocks).__name__}")

    @property
    def heads_text(self) -> str | None:
        """The head selection as grammar text (None: every head)."""
        return self.heads if isinstance(self.heads, str) else None

    @property
    def layer_schedule(self) -> LayerSchedule:
        return LayerSchedule(self.schedule, self.beta, self.layer_weights)

    def with_lambda(self, lam: float) -> LocalityDial:
        return replace(self, lam=lam)

    def layer_lambdas(self, n_layers: int) -> tuple[float, ...]:
        """λ_l for each layer (λ times the schedule's weight)."""
        return self.layer_schedule.lambdas(self.lam, n_layers)

    def head_set(self, n_layers: int, n_heads: int) -> HeadSet:
        """The selected heads of a model of this shape (every head when `heads` is None)."""
        return HeadSet.parse(self.heads_text or "*.*", n_layers, n_heads)

    def check(self, handle: ModelHandle) -> HeadSet:
        """What the config alone cannot know: the layer count (explicit schedule) and the head indices."""
        self.layer_lambdas(handle.facts.n_layers)
        return self.head_set(handle.facts.n_layers, handle.facts.n_heads)

    def token_blocks(self, handle: ModelHandle, tokens: Int[Tensor, "batch pos"]) -> Int[Tensor, " pos"]:
        """Block ids of `tokens` (first row) from this dial's `blocks` spec."""
        return block_ids(handle.str_tokens(tokens[0]), self.blocks)

    def layer_biases(
        self, n_layers: int, n_heads: int, n_keys: int, blocks: Int[Tensor, " pos"] | None = None
    ) -> dict[int, KernelBias]:
        """layer → its kernel bias for a run over `n_keys` keys; layers with λ_l = 0 or no selected head are
        absent. `blocks` (block mode): one id per position."""
        lams = self.layer_lambdas(n_layers)
        if not any(lams):
            return {}
        on = torch.from_numpy(self.head_set(n_layers, n_heads).mask())
        mode = MODES[self.mode]
        return {
            layer: mode(lam, self, on[layer], n_keys, blocks)
            for layer, lam in enumerate(lams)
            if lam > 0 and on[layer].any()
        }

    def to_kernel_bias(
        self, handle: ModelHandle, tokens: Int[Tensor, "batch pos"], *, block_ids: Tensor | None = None
    ) -> dict[int, KernelBias]:
        """The dial as the fused kernels' per-layer bias for a run of `tokens` (`kernels.fused_run(biases=...)`)."""
        self.check(handle)
        blocks = self.blocks_for(handle, tokens, block_ids)
        return self.layer_biases(handle.facts.n_layers, handle.facts.n_heads, tokens.shape[-1], blocks)

    def blocks_for(
        self, handle: ModelHandle, tokens: Int[Tensor, "batch pos"], given: Tensor | None = None
    ) -> Int[Tensor, " pos"] | None:
        """The block ids the block mode uses on `tokens` (`given`, else from the `blocks` spec); None when the dial
        needs none."""
        if self.mode != "block" or self.lam == 0:
            return None
        blocks = self.token_blocks(handle, tokens) if given is None else given
        if blocks.dim() != 1 or blocks.shape[0] < tokens.shape[-1]:
            raise InputError(
                f"block_ids must hold one id per token ({tokens.shape[-1]}), got {tuple(blocks.shape)}"
            )
        return blocks


# -- eager hooks -------------------------------------------------------------------------------------------------
def _score_hook(dial: LocalityDial, lam: float, on: Tensor, blocks: Tensor | None) -> HookFn:
    mode = MODES[dial.mode]
    last: dict[int, KernelBias] = {}  # the bias for the last key count seen (it changes only while decoding)

    def hook(scores: Tensor, hook: Any) -> Tensor:
        q, k = scores.shape[-2:]
        if blocks is not None and k > blocks.shape[0]:
            raise InputError(f"the dial's blocks cover {blocks.shape[0]} tokens, the run has {k}")
        if k not in last:
            last.clear()
            last[k] = mode(lam, dial, on, k, blocks)
        pos = torch.arange(k, device=scores.device)
        return bias_scores(scores, last[k], pos[k - q :], pos)

    return hook


def dial_hooks(
    handle: ModelHandle,
    tokens: Int[Tensor, "batch pos"],
    dial: LocalityDial,
    *,
    block_ids: Int[Tensor, " pos"] | None = None,
) -> list[tuple[str, HookFn]]:
    """Forward hooks (on `hook_attn_scores`) that apply `dial` to a run; none for layers with λ_l = 0 or no
    selected head, so λ = 0 gives [] and the model bit for bit.

    Each hook reads its scores' shape [batch, head, q, k]: the queries are the last q of k positions, so the same
    hooks serve a full forward (q = k) and KV-cached decoding steps (q < k: the new tokens after k − q cached
    ones); the window width follows the key count k. `tokens` matter only for the block mode, whose ids come from
    them (or from `block_ids`): there they must cover every position a run will see."""
    heads = dial.check(handle)
    lams = dial.layer_lambdas(handle.facts.n_layers)
    if not any(lams):
        return []
    blocks = dial.blocks_for(handle, tokens, block_ids)
    on = torch.from_numpy(heads.mask())
    return [
        (hooks.scores(layer), _score_hook(dial, lam, on[layer], blocks))
        for layer, lam in enumerate(lams)
        if lam > 0 and on[layer].any()
    ]
