"""Run several strategies on one prompt and line their tokens up against greedy.

With a head intervention (`cfg.heads`), greedy — the reference — runs on the unchanged model and every listed
strategy on the model with the head set ablated or dialled, so `diverges_at` is where the intervention first
changes the output. Where a run departs from greedy, `divergence` holds both tokens and, when attention entropy
is recorded, every head's entropy in the query row that produced them (the step before the outputs differ).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from torch import Tensor

from headscope.decoding.config import DecodeConfig
from headscope.decoding.constrained import Constraint
from headscope.decoding.drafters import check_same_tokenizer
from headscope.decoding.strategies import decode, get_strategy
from headscope.decoding.trace import Trace
from headscope.errors import InputError
from headscope.models import ModelHandle
from headscope.progress import Progress, StepCounter, part, steps

MAX_STRATEGIES = 8


@dataclass(frozen=True)
class Divergence:
    position: int  # output position of the first token that differs
    token: int | None  # this run's token there (None: it stopped earlier)
    greedy_token: int | None
    entropy_bits: Tensor | None  # [layer, head] in this run's row that produced `token`
    greedy_entropy_bits: Tensor | None  # [layer, head] in greedy's row that produced `greedy_token`

    def to_json(self) -> dict[str, Any]:
        def rows(x: Tensor | None) -> list[list[float]] | None:
            return None if x is None else [[round(v, 4) for v in r] for r in x.tolist()]

        return {
            "position": self.position,
            "token": self.token,
            "greedy_token": self.greedy_token,
            "entropy_bits": rows(self.entropy_bits),
            "greedy_entropy_bits": rows(self.greedy_entropy_bits),
        }


@dataclass(frozen=True)
class StrategyResult:
    trace: Trace
    identical_to_greedy: bool
    diverges_at: int | None  # first output position that differs from greedy (None: never)
    matches_greedy: tuple[bool, ...]  # per output token: equal to greedy's token at that position
    divergence: Divergence | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            **self.trace.to_json(),
            "identical_to_greedy": self.identical_to_greedy,
            "diverges_at": self.diverges_at,
            "matches_greedy": list(self.matches_greedy),
            "divergence": None if self.divergence is None else self.divergence.to_json(),
        }


@dataclass(frozen=True)
class Comparison:
    model: str
    prompt_ids: tuple[int, ...]
    config: DecodeConfig
    greedy: Trace
    results: tuple[StrategyResult, ...]

    def to_json(self) -> dict[str, Any]:
        """The CLI's JSON; `reference` is greedy's own trace when it is not one of the rows (a head intervention,
        or greedy not asked for)."""
        shown = any(r.trace is self.greedy for r in self.results)
        return {
            "model": self.model,
            "prompt_ids": list(self.prompt_ids),
            "config": self.config.to_json(),
            "greedy_token_ids": list(self.greedy.token_ids),
            "intervention": next((r.trace.intervention for r in self.results if r.trace.intervention), None),
            "reference": None if shown else self.greedy.to_json(),
            "strategies": [r.to_json() for r in self.results],
        }


def align(tokens: Sequence[int], reference: Sequence[int]) -> tuple[int | None, tuple[bool, ...]]:
    matches = tuple(i < len(reference) and t == reference[i] for i, t in enumerate(tokens))
    first = next((i for i, ok in enumerate(matches) if not ok), None)
    if first is None and len(tokens) != len(reference):
        first = min(len(tokens), len(reference))
    return first, matches


def divergence(trace: Trace, greedy: Trace, at: int | None) -> Divergence | None:
    if at is None:
        return None

    def pick(t: Trace) -> tuple[int | None, Tensor | None]:
        ent = t.attention_entropy
        if at >= len(t.token_ids):
            return None, None
        return t.token_ids[at], None if ent is None else ent[at]

    (tok, ent), (gtok, gent) = pick(trace), pick(greedy)
    return Divergence(at, tok, gtok, ent, gent)


def parse_strategies(names: str | Sequence[str]) -> list[str]:
    items = names.split(",") if isinstance(names, str) else list(names)
    out = [n.strip() for n in items if isinstance(n, str) and n.strip()]
    if not out:
        raise InputError("no strategy given")
    if len(out) > MAX_STRATEGIES:
        raise InputError(f"at most {MAX_STRATEGIES} strategies at once")
    for n in out:
        get_strategy(n)
    return list(dict.fromkeys(out))


def _precheck(handle: ModelHandle, names: list[str], cfg: DecodeConfig, draft: ModelHandle | None) -> None:
    """Fail on bad input before any strategy runs (not after minutes of greedy decoding)."""
    if "constrained" in names:
        Constraint.build(cfg.regex, cfg.grammar)
    if "speculative" in names:
        if draft is None:
            raise InputError("speculative needs a draft model that shares the target's tokenizer")
        check_same_tokenizer(handle, draft)
    if cfg.heads is not None:
        handle.head_set(cfg.heads)


def compare(
    handle: ModelHandle,
    prompt: Sequence[int],
    strategies: str | Sequence[str],
    cfg: DecodeConfig,
    *,
    draft: ModelHandle | None = None,
    progress: Progress | None = None,
) -> Comparison:
    """Greedy (the reference, always run first, on the unchanged model) and each named strategy, on the same
    ids and config (with the head intervention, if any). `progress` sees "<strategy> done/total" after each
    decoding step, each run an equal share."""
    names = parse_strategies(strategies)
    _precheck(handle, names, cfg, draft)
    prompt = list(prompt)
    n_runs, started = 1 + sum(1 for n in names if n != "greedy" or cfg.intervenes), iter(itertools.count())

    def share(name: str) -> StepCounter:  # the greedy reference, then each run: an equal share each
        i = next(started)
        part(progress, i / n_runs, (i + 1) / n_runs)(name, 0.0)
        return steps(progress, name, i / n_runs, (i + 1) / n_runs)

    reference = decode(handle, prompt, "greedy", replace(cfg, heads=None), on_step=share("greedy"))
    runs: dict[str, Trace] = {}
    for name in names:
        if name == "greedy" and not cfg.intervenes:
            runs[name] = reference
            continue
        runs[name] = decode(handle, prompt, name, cfg, draft, on_step=share(name))
    ref = reference.token_ids
    results = []
    for name in names:
        first, matches = align(runs[name].token_ids, ref)
        same = runs[name].token_ids == ref
        results.append(
            StrategyResult(runs[name], same, first, matches, divergence(runs[name], reference, first))
        )
    return Comparison(handle.identity.name, tuple(prompt), cfg, reference, tuple(results))
