"""Run several strategies on one prompt and line their tokens up against greedy."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from headscope.decoding.config import DecodeConfig
from headscope.decoding.constrained import Constraint
from headscope.decoding.drafters import check_same_tokenizer
from headscope.decoding.strategies import decode, get_strategy
from headscope.decoding.trace import Trace
from headscope.errors import InputError
from headscope.models import ModelHandle

MAX_STRATEGIES = 8


@dataclass(frozen=True)
class StrategyResult:
    trace: Trace
    identical_to_greedy: bool
    diverges_at: int | None  # first output position that differs from greedy (None: never)
    matches_greedy: tuple[bool, ...]  # per output token: equal to greedy's token at that position

    def to_json(self) -> dict[str, Any]:
        return {
            **self.trace.to_json(),
            "identical_to_greedy": self.identical_to_greedy,
            "diverges_at": self.diverges_at,
            "matches_greedy": list(self.matches_greedy),
        }


@dataclass(frozen=True)
class Comparison:
    model: str
    prompt_ids: tuple[int, ...]
    config: DecodeConfig
    greedy: Trace
    results: tuple[StrategyResult, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "prompt_ids": list(self.prompt_ids),
            "config": self.config.to_json(),
            "greedy_token_ids": list(self.greedy.token_ids),
            "strategies": [r.to_json() for r in self.results],
        }


def align(tokens: Sequence[int], reference: Sequence[int]) -> tuple[int | None, tuple[bool, ...]]:
    matches = tuple(i < len(reference) and t == reference[i] for i, t in enumerate(tokens))
    first = next((i for i, ok in enumerate(matches) if not ok), None)
    if first is None and len(tokens) != len(reference):
        first = min(len(tokens), len(reference))
    return first, matches


def parse_strategies(names: str | Sequence[str]) -> list[str]:
    items = names.split(",") if isinstance(names, str) else list(names)
    out = [n.strip() for n in items if n.strip()]
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


def compare(
    handle: ModelHandle,
    prompt: Sequence[int],
    strategies: str | Sequence[str],
    cfg: DecodeConfig,
    *,
    draft: ModelHandle | None = None,
    progress: Callable[[str], None] | None = None,
) -> Comparison:
    """Greedy (the reference, always run first) and each named strategy, on the same ids and config."""
    names = parse_strategies(strategies)
    _precheck(handle, names, cfg, draft)
    prompt = list(prompt)
    runs: dict[str, Trace] = {}
    for name in ["greedy", *[n for n in names if n != "greedy"]]:
        if progress is not None:
            progress(name)
        runs[name] = decode(handle, prompt, name, cfg, draft)
    ref = runs["greedy"].token_ids
    results = []
    for name in names:
        first, matches = align(runs[name].token_ids, ref)
        results.append(StrategyResult(runs[name], runs[name].token_ids == ref, first, matches))
    return Comparison(handle.identity.name, tuple(prompt), cfg, runs["greedy"], tuple(results))
