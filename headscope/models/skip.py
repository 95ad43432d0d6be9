"""Switches on the model's own forward, for decoding: sublayers that are not computed, and runs without the
bridge's hook wrappers.

`forward_switch(handle)` patches, for the length of a `with` block (under the handle's lock), the forward of every
TransformerLens bridge component of the model. Each patched forward reads the `ForwardSwitch` on every call:

- `skip`: a set of sublayers `("attn" | "mlp", layer)`. A skipped sublayer returns zeros without running its
  module — no projections, no attention, no MLP — so the residual stream passes the layer unchanged (exactly what
  zeroing `hook_attn_out` / `hook_mlp_out` gives, checked in the tests) at the cost of an add. A skipped attention
  writes nothing to the KV cache: that layer's cache falls behind the others, and the caller must crop every
  layer back (`crop_cache`) before a full forward reads it again (the self-speculative drafter drops the draft
  positions anyway: the verifier must see only full-model keys and values).
- `plain`: run every component's own Hugging Face module directly, skipping the bridge's wrappers (hook points,
  kwarg filtering, capture bookkeeping). No hook fires while it is on: it is for runs with no hook attached, where
  the wrappers are pure overhead (about 20 % of a one-token cached step on SmolLM2). Off = the ordinary bridge
  path, hooks included. If any hook is already attached when the switch goes in (a caller observing the run
  through `handle.hooks`), plain runs are disabled for the whole block, so that hook still fires.

Nested inside `handle.hf_attention(impl)`, the attention bridges already run their HF module; the switch wraps
that forward and puts it back on exit (enter `hf_attention` first, leave it last).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from transformer_lens.hook_points import HookPoint
from transformer_lens.model_bridge.generalized_components.base import GeneralizedComponent
from transformers import DynamicCache

if TYPE_CHECKING:
    from headscope.models.handle import ModelHandle

Sublayer = tuple[str, int]  # ("attn" | "mlp", layer)


class ForwardSwitch:
    """What the patched forwards do right now; change it between runs (not during one)."""

    def __init__(self, allow_plain: bool = True) -> None:
        self.skip: frozenset[Sublayer] = frozenset()
        self.plain = False
        # False when hooks were already attached as the switch went in: a plain run would silently skip them.
        self.allow_plain = allow_plain

    @contextmanager
    def setting(
        self, *, skip: frozenset[Sublayer] | None = None, plain: bool | None = None
    ) -> Iterator[None]:
        """Change the switch for a block of runs; the previous setting comes back after it."""
        before = (self.skip, self.plain)
        self.skip = before[0] if skip is None else skip
        self.plain = before[1] if plain is None else plain
        try:
            yield
        finally:
            self.skip, self.plain = before


def _hidden(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Tensor:
    return kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]


def _patched(module: Any, switch: ForwardSwitch, key: Sublayer | None) -> Callable[..., Any]:
    own = module.original_component
    bridged = module.__dict__.get("forward") or type(module).forward.__get__(module)

    def forward(*args: Any, **kwargs: Any) -> Any:
        if key is not None and key in switch.skip:
            zeros = torch.zeros_like(_hidden(args, kwargs))
            return (zeros, None) if key[0] == "attn" else zeros  # HF attention returns (output, weights)
        plain = switch.plain and switch.allow_plain
        return own(*args, **kwargs) if plain else bridged(*args, **kwargs)

    return forward


def _hooks_attached(handle: ModelHandle) -> bool:
    return any(
        isinstance(m, HookPoint) and (m._forward_hooks or m._backward_hooks) for m in handle.bridge.modules()
    )


@contextmanager
def forward_switch(handle: ModelHandle) -> Iterator[ForwardSwitch]:
    """Install a `ForwardSwitch` on every bridge component of the handle's model for the block."""
    switch = ForwardSwitch(allow_plain=not _hooks_attached(handle))
    keys: dict[int, Sublayer] = {}
    for layer, block in enumerate(handle.bridge.blocks):
        keys[id(block.attn)] = ("attn", layer)
        keys[id(block.mlp)] = ("mlp", layer)
    patched: list[tuple[Any, Any]] = []
    with handle.exclusive():
        try:
            for module in handle.bridge.modules():
                if isinstance(module, GeneralizedComponent) and module.original_component is not None:
                    before = module.__dict__.get("forward")
                    object.__setattr__(module, "forward", _patched(module, switch, keys.get(id(module))))
                    patched.append((module, before))
            yield switch
        finally:
            for module, before in reversed(patched):
                if before is None:
                    object.__delattr__(module, "forward")
                else:
                    object.__setattr__(module, "forward", before)


def skippable(n_layers: int) -> list[Sublayer]:
    """Attention and MLP of every layer but the first and the last (SWIFT's skip space); in a model of ≤ 3 layers,
    all but the first."""
    layers = range(1, n_layers - 1) if n_layers > 3 else range(1, n_layers)
    return [(kind, layer) for layer in layers for kind in ("attn", "mlp")]


def sublayer_macs(handle: ModelHandle, n_keys: int) -> tuple[dict[Sublayer, float], float]:
    """Multiply-adds per generated token: each sublayer's (its weights; an attention also q·K and p·V over
    `n_keys` keys) and the whole forward's (the sublayers plus the unembedding), for a skipped-compute share."""

    def n_params(module: Any) -> int:
        return sum(p.numel() for p in {id(p): p for p in module.parameters()}.values() if p.dim() > 1)

    facts = handle.facts
    over_keys = 2.0 * facts.n_heads * facts.d_head * n_keys
    macs: dict[Sublayer, float] = {}
    for layer, block in enumerate(handle.bridge.blocks):
        macs[("attn", layer)] = n_params(block.attn) + over_keys
        macs[("mlp", layer)] = float(n_params(block.mlp))
    return macs, sum(macs.values()) + float(facts.d_model * facts.d_vocab)


def crop_cache(cache: DynamicCache, n: int) -> None:
    """Keep the first `n` positions of every layer of `cache` (layers skipped in a draft may hold fewer)."""
    for layer in cache.layers:
        extra = layer.get_seq_length() - n
        if extra > 0:
            layer.crop(-extra)
