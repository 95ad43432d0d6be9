"""Strategies register by name; `decode` runs one on a prompt and returns its `Trace`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from headscope.decoding.cache import CachedModel, session
from headscope.decoding.config import DecodeConfig
from headscope.decoding.constrained import Constraint, constrained_decode
from headscope.decoding.drafters import (
    Drafter,
    JacobiDrafter,
    ModelDrafter,
    NgramDrafter,
    NoDrafter,
    check_same_tokenizer,
)
from headscope.decoding.intervene import Intervention
from headscope.decoding.layer_skip import LayerSkipDrafter, format_skip
from headscope.decoding.lookahead import LookaheadDrafter
from headscope.decoding.loop import speculative_loop, stepping
from headscope.decoding.recycling import RecyclingDrafter
from headscope.decoding.smc import smc_decode
from headscope.decoding.trace import Trace
from headscope.errors import InputError
from headscope.models import ModelHandle
from headscope.progress import StepCounter
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
    *,
    on_step: StepCounter | None = None,
) -> Trace:
    """Run one registered strategy on token ids `prompt` (no BOS added: pass what `handle.tokenize` gives).

    With `cfg.ablate_heads` / `cfg.dial` set, the run is of the model with those heads ablated or dialled
    (`intervene.py`); with
    `cfg.attention_entropy`, every step carries the per-head attention entropy of its query rows. `on_step(done,
    total)` is called after every step (progress; an exception it raises stops the run)."""
    spec = get_strategy(strategy)
    precheck(strategy, cfg)
    with stepping(on_step):
        return spec.run(handle, list(prompt), cfg, draft)


def precheck(strategy: str, cfg: DecodeConfig) -> None:
    """What a strategy refuses in the config alone (before any model runs)."""
    if strategy == "constrained":
        Constraint.build(cfg.regex, cfg.grammar)
        if cfg.particles > 1 and cfg.greedy:
            raise InputError("SMC needs temperature > 0 (with temperature 0 every particle is the same)")
    elif strategy == "sample" and cfg.greedy:
        raise InputError("sample needs temperature > 0 (temperature 0 is greedy)")
    elif strategy == "lookahead" and not cfg.greedy:
        raise InputError("lookahead verifies greedily: use temperature 0 (jacobi handles sampling)")


def _gen(cfg: DecodeConfig) -> torch.Generator:
    return torch.Generator().manual_seed(cfg.seed)


MakeDrafter = Callable[[CachedModel, torch.Generator], Drafter]


def _run(handle: ModelHandle, prompt: list[int], cfg: DecodeConfig, name: str, make: MakeDrafter) -> Trace:
    """One decoding session: the target (intervened, if asked), a drafter over it, the shared loop."""
    intervention = Intervention.from_config(handle, cfg)
    gen = _gen(cfg)
    with session(handle) as sess:
        target = CachedModel(handle, sess, intervention)
        setup = target.collect_means(prompt)
        drafter = make(target, gen)
        trace = speculative_loop(
            handle, prompt, cfg, drafter, target, gen, name=name, lossless=STRATEGIES[name].lossless
        )
        if isinstance(drafter, LayerSkipDrafter):
            final = prompt + list(trace.token_ids)
            trace = replace(
                trace,
                draft_cost=drafter.draft_cost(final),
                notes=drafter.notes(len(final)),
                layer_skip=drafter.report(len(final)),
            )
    described = intervention.describe() if intervention is not None else None
    return replace(trace, setup_forwards=trace.setup_forwards + setup, intervention=described)


@register_strategy("greedy", lossless=True, description="argmax each step, with a KV cache (the reference)")
def _greedy(handle, prompt, cfg, draft):
    return _run(handle, prompt, replace(cfg, temperature=0.0), "greedy", lambda t, g: NoDrafter())


@register_strategy("sample", lossless=False, description="temperature / top-k / top-p sampling with a seed")
def _sample(handle, prompt, cfg, draft):
    return _run(handle, prompt, cfg, "sample", lambda t, g: NoDrafter())


@register_strategy(
    "speculative",
    lossless=True,
    needs_draft_model=True,
    description="a smaller model with the same tokenizer drafts; greedy or rejection-sampling verification",
)
def _speculative(handle, prompt, cfg, draft):
    if draft is None:
        raise InputError("speculative needs a draft model (draft_model) that shares the target's tokenizer")
    check_same_tokenizer(handle, draft)
    if draft is handle:
        # One session per model: two sessions on one model each set up its attention and put it back on their
        # own time slices, so one could put it back under the other's feet (the target then records nothing).
        def same(t: CachedModel, g: torch.Generator) -> ModelDrafter:
            return ModelDrafter(CachedModel(draft, t.session), cfg, g)

        return _run(handle, prompt, cfg, "speculative", same)
    with session(draft) as draft_session:
        small = CachedModel(draft, draft_session)
        return _run(handle, prompt, cfg, "speculative", lambda t, g: ModelDrafter(small, cfg, g))


@register_strategy(
    "layer_skip",
    lossless=True,
    description="SWIFT-style self-speculation: the model with searched sublayers not computed drafts for itself",
)
def _layer_skip(handle, prompt, cfg, draft):
    return _run(handle, prompt, cfg, "layer_skip", lambda t, g: LayerSkipDrafter(handle, t, cfg, g))


@register_strategy(
    "ngram", lossless=True, description="prompt lookup, else an online trigram table (ADED-like)"
)
def _ngram(handle, prompt, cfg, draft):
    return _run(handle, prompt, cfg, "ngram", lambda t, g: NgramDrafter(cfg))


@register_strategy("jacobi", lossless=True, description="fixed-point (Jacobi) iteration over a window")
def _jacobi(handle, prompt, cfg, draft):
    return _run(handle, prompt, cfg, "jacobi", lambda t, g: JacobiDrafter(cfg, g))


@register_strategy(
    "lookahead",
    lossless=True,
    description="Jacobi iteration with an n-gram pool from its own trajectories and the prompt (greedy only)",
)
def _lookahead(handle, prompt, cfg, draft):
    return _run(handle, prompt, cfg, "lookahead", lambda t, g: LookaheadDrafter(cfg))


@register_strategy(
    "constrained",
    lossless=False,
    description="AWRS (or token masking) under a regex / JSON-ish constraint; SMC over particles as an option",
)
def _constrained(handle, prompt, cfg, draft):
    if cfg.particles > 1:
        return smc_decode(handle, prompt, cfg, name="constrained")
    return constrained_decode(handle, prompt, cfg, name="constrained")


@register_strategy(
    "token_recycling",
    lossless=True,
    description="Token Recycling: a draft tree from an adjacency matrix of the top-k candidates every forward "
    "discards, verified in one forward under a tree attention mask",
)
def _token_recycling(handle, prompt, cfg, draft):
    return _run(
        handle, prompt, cfg, "token_recycling", lambda t, g: RecyclingDrafter(cfg, handle.facts.d_vocab)
    )


__all__ = ["STRATEGIES", "StrategySpec", "decode", "format_skip", "get_strategy", "register_strategy"]
