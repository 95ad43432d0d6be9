"""Strategies register by name; `decode` runs one on a prompt and returns its `Trace`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from headscope.decoding.cache import CachedModel
from headscope.decoding.config import DecodeConfig
from headscope.decoding.constrained import constrained_decode
from headscope.decoding.drafters import JacobiDrafter, ModelDrafter, NgramDrafter, NoDrafter
from headscope.decoding.layer_skip import LayerSkipDrafter
from headscope.decoding.loop import speculative_loop
from headscope.decoding.trace import Trace
from headscope.errors import InputError
from headscope.models import ModelHandle
from headscope.registry import Registry

Runner = Callable[[ModelHandle, list[int], DecodeConfig, "ModelHandle | None"], Trace]


@dataclass(frozen=True)
class StrategySpec:
    name: str
    run: Runner
    lossless: bool  # output identical to the target's own decoding (greedy: same tokens; sampling: same law)
    needs_draft_model: bool
    description: str


STRATEGIES: Registry[StrategySpec] = Registry("strategy")


def register_strategy(
    name: str, *, lossless: bool, description: str, needs_draft_model: bool = False
) -> Callable[[Runner], Runner]:
    def deco(fn: Runner) -> Runner:
        STRATEGIES.add(name, StrategySpec(name, fn, lossless, needs_draft_model, description))
        return fn

    return deco


def get_strategy(name: str) -> StrategySpec:
    return STRATEGIES[name]


def decode(
    handle: ModelHandle,
    prompt: list[int],
    strategy: str,
    cfg: DecodeConfig,
    draft: ModelHandle | None = None,
) -> Trace:
    """Run one registered strategy on token ids `prompt` (no BOS added: pass what `handle.tokenize` gives)."""
    return get_strategy(strategy).run(handle, list(prompt), cfg, draft)


def _gen(cfg: DecodeConfig) -> torch.Generator:
    return torch.Generator().manual_seed(cfg.seed)


def _loop(
    handle: ModelHandle, prompt: list[int], cfg: DecodeConfig, drafter, target, name: str, **kw
) -> Trace:
    return speculative_loop(
        handle, prompt, cfg, drafter, target, _gen(cfg), name=name, lossless=STRATEGIES[name].lossless, **kw
    )


@register_strategy("greedy", lossless=True, description="argmax each step, with a KV cache (the reference)")
def _greedy(handle, prompt, cfg, draft):
    return _loop(handle, prompt, replace(cfg, temperature=0.0), NoDrafter(), CachedModel(handle), "greedy")


@register_strategy("sample", lossless=False, description="temperature / top-k / top-p sampling with a seed")
def _sample(handle, prompt, cfg, draft):
    if cfg.greedy:
        raise InputError("sample needs temperature > 0 (temperature 0 is greedy)")
    return _loop(handle, prompt, cfg, NoDrafter(), CachedModel(handle), "sample")


@register_strategy(
    "speculative",
    lossless=True,
    needs_draft_model=True,
    description="a smaller model with the same tokenizer drafts; greedy or rejection-sampling verification",
)
def _speculative(handle, prompt, cfg, draft):
    if draft is None:
        raise InputError("speculative needs a draft model (draft_model) that shares the target's tokenizer")
    gen = _gen(cfg)
    drafter = ModelDrafter(handle, draft, cfg, gen)
    return speculative_loop(
        handle, prompt, cfg, drafter, CachedModel(handle), gen, name="speculative", lossless=True
    )


@register_strategy(
    "layer_skip", lossless=True, description="SWIFT-style self-speculation with searched skipped sublayers"
)
def _layer_skip(handle, prompt, cfg, draft):
    gen, target = _gen(cfg), CachedModel(handle)
    drafter = LayerSkipDrafter(handle, target, cfg, gen)
    with handle.exclusive():
        drafter.start(prompt)
        with handle.hooks(drafter.switch_hooks()):
            trace = speculative_loop(
                handle, prompt, cfg, drafter, target, gen, name="layer_skip", lossless=True
            )
    skip = sorted(f"{kind}{layer}" for kind, layer in drafter.skip or ())
    notes = (f"skipped sublayers: {', '.join(skip) or 'none'}", f"final matchness: {drafter.best:.3f}")
    return replace(trace, setup_forwards=drafter.setup_forwards, notes=notes)


@register_strategy(
    "ngram", lossless=True, description="prompt lookup, else an online trigram table (ADED-like)"
)
def _ngram(handle, prompt, cfg, draft):
    return _loop(handle, prompt, cfg, NgramDrafter(cfg), CachedModel(handle), "ngram")


@register_strategy("jacobi", lossless=True, description="fixed-point (Jacobi) iteration over a window")
def _jacobi(handle, prompt, cfg, draft):
    gen = _gen(cfg)
    return speculative_loop(
        handle, prompt, cfg, JacobiDrafter(cfg, gen), CachedModel(handle), gen, name="jacobi", lossless=True
    )


@register_strategy(
    "constrained", lossless=False, description="AWRS (or token masking) under a regex / JSON-ish constraint"
)
def _constrained(handle, prompt, cfg, draft):
    return constrained_decode(handle, prompt, cfg, name="constrained")
