"""Switches on the model's own forward, for decoding: sublayers that are not computed, and runs without the
bridge's hook wrappers.

TransformerLens's bridge works by replacing, inside the Hugging Face model, each module (attention, MLP, norms,
linear layers, embeddings, …) by a bridge component that wraps the original and adds hook points.
`forward_switch(handle)` records every such slot (parent module, attribute, bridge, original) once, and for the
length of a `with` block (under the handle's lock) lets the caller choose, per run, what each slot holds:

- `skip`: a set of sublayers `("attn" | "mlp", layer)` whose slot holds a module that returns zeros without
  running anything — no projections, no attention, no MLP — so the residual stream passes the layer unchanged
  (exactly what zeroing `hook_attn_out` / `hook_mlp_out` gives, checked in the tests) at the cost of an add. A
  skipped attention writes nothing to the KV cache: that layer's cache falls behind the others, and the caller
  must crop every layer back (`crop_cache`) before a full forward reads it again (the self-speculative drafter
  drops the draft positions anyway: the verifier must see only full-model keys and values).
- `plain`: every slot holds its original Hugging Face module, i.e. the model runs as plain transformers would —
  no hook points, kwarg filtering or capture bookkeeping (about 20 % of a one-token cached step on SmolLM2). No
  hook fires then: it is for runs with no hook attached. Off = the ordinary bridge, hooks included. If any hook
  is already attached when the switch goes in (a caller observing the run through `handle.hooks`), plain runs
  are disabled for the whole block, so that hook still fires.

Everything is put back on exit. Used inside `handle.hf_attention(impl)` (enter that first), the original
attention modules run the given attention implementation.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from transformer_lens.hook_points import HookPoint
from transformer_lens.model_bridge.generalized_components.base import GeneralizedComponent
from transformers import DynamicCache

if TYPE_CHECKING:
    from headscope.models.handle import ModelHandle

Sublayer = tuple[str, int]  # ("attn" | "mlp", layer)


class _Skipped(nn.Module):
    """Stands in for a skipped sublayer: its output is zeros (an HF attention returns (output, weights))."""

    def __init__(self, attention: bool):
        super().__init__()
        self.attention = attention

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        hidden: Tensor = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        zeros = torch.zeros_like(hidden)
        return (zeros, None) if self.attention else zeros


@dataclass
class _Slot:
    parent: nn.Module
    name: str
    bridge: nn.Module
    original: nn.Module
    skipped: nn.Module | None  # the stand-in, for attention and MLP sublayers


class ForwardSwitch:
    """What the model's slots hold for the next runs; change it between runs with `setting`."""

    def __init__(self, slots: dict[Sublayer | None, list[_Slot]], allow_plain: bool = True) -> None:
        self._slots = slots
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
            self._apply()
            yield
        finally:
            self.skip, self.plain = before
            self._apply()

    def _apply(self) -> None:
        plain = self.plain and self.allow_plain
        for key, slots in self._slots.items():
            for slot in slots:
                want = slot.skipped if key in self.skip else (slot.original if plain else slot.bridge)
                if slot.parent._modules[slot.name] is not want:
                    slot.parent._modules[slot.name] = want

    def _restore(self) -> None:
        for slots in self._slots.values():
            for slot in slots:
                slot.parent._modules[slot.name] = slot.bridge


def _find_slots(handle: ModelHandle) -> dict[Sublayer | None, list[_Slot]]:
    """Every bridge component with its HF parent, found by walking the HF module tree through the originals."""
    keys: dict[int, Sublayer] = {}
    for layer, block in enumerate(handle.bridge.blocks):
        keys[id(block.attn)] = ("attn", layer)
        keys[id(block.mlp)] = ("mlp", layer)
    found: dict[Sublayer | None, list[_Slot]] = {}
    seen: set[int] = set()

    def visit(module: nn.Module) -> None:
        if id(module) in seen:
            return
        seen.add(id(module))
        for name, child in list(module._modules.items()):
            if isinstance(child, GeneralizedComponent) and child.original_component is not None:
                key = keys.get(id(child))
                stand_in = _Skipped(key[0] == "attn") if key is not None else None
                found.setdefault(key, []).append(
                    _Slot(module, name, child, child.original_component, stand_in)
                )
                visit(child.original_component)
            elif child is not None and not isinstance(child, GeneralizedComponent):
                visit(child)

    visit(handle.hf_model)
    return found


def _hooks_attached(handle: ModelHandle) -> bool:
    return any(
        isinstance(m, HookPoint) and (m._forward_hooks or m._backward_hooks) for m in handle.bridge.modules()
    )


@contextmanager
def forward_switch(handle: ModelHandle) -> Iterator[ForwardSwitch]:
    """A `ForwardSwitch` over the handle's model for the block; every slot holds its bridge again afterwards."""
    with handle.exclusive():
        switch = ForwardSwitch(_find_slots(handle), allow_plain=not _hooks_attached(handle))
        try:
            yield switch
        finally:
            switch._restore()


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


def keep_positions(cache: DynamicCache, start: int, index: Tensor) -> None:
    """Keep the first `start` positions of every layer, then the positions `index` (in that order): a tree
    draft's accepted path, the rejected nodes' keys and values dropped."""
    for layer in cache.layers:
        keys, values = layer.keys, layer.values
        if layer.is_initialized and keys is not None and values is not None:
            layer.keys = torch.cat([keys[:, :, :start], keys.index_select(2, index)], dim=2)
            layer.values = torch.cat([values[:, :, :start], values.index_select(2, index)], dim=2)
