"""Run several strategies on one prompt and line their tokens up against greedy.

With a head intervention (`cfg.ablate_heads` / `cfg.dial`), greedy — the reference — runs on the unchanged model
and every listed strategy on the model with the heads ablated or dialled, so `diverges_at` is where the
intervention first changes the output. Where a run departs from greedy, `divergence` holds both tokens and, when
attention entropy is recorded, every head's entropy in the query row that produced them (the step before the
outputs differ). Every run carries its speed-up against that same greedy run: per target forward (MAT ratio)
and in wall time per token, each flagged when below 1×.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from headscope.codec import JsonCodec, jfield
from headscope.decoding.config import DecodeConfig
from headscope.decoding.drafters import check_same_tokenizer
from headscope.decoding.prompts import render
from headscope.decoding.strategies import decode, get_strategy, precheck
from headscope.decoding.trace import Trace
from headscope.errors import InputError
from headscope.models import ModelHandle
from headscope.progress import Progress, StepCounter, part, steps

MAX_STRATEGIES = 8


def _tensor(data: list) -> Tensor:
    return torch.tensor(data, dtype=torch.float32)


@dataclass(frozen=True)
class Divergence(JsonCodec):
    position: int  # output position of the first token that differs
    token: int | None  # this run's token there (None: it stopped earlier)
    greedy_token: int | None
    # [layer, head] in this run's row that produced `token`, and in greedy's row that produced `greedy_token`
    entropy_bits: Tensor | None = jfield(digits=4, decode=_tensor, default=None, compare=False)
    greedy_entropy_bits: Tensor | None = jfield(digits=4, decode=_tensor, default=None, compare=False)


@dataclass(frozen=True)
class StrategyResult(Trace):
    """One run of a comparison: its trace (the fields of `Trace`, flat in the JSON) and how it lines up with the
    greedy reference of the same comparison — tokens, and speed."""

    identical_to_greedy: bool = False
    diverges_at: int | None = None  # first output position that differs from greedy (None: never)
    matches_greedy: tuple[bool, ...] = ()  # per output token: equal to greedy's token at that position
    divergence: Divergence | None = None
    # MAT / greedy's MAT, and tokens per second / greedy's — both against the greedy run of this comparison
    speedup_per_forward: float = jfield(digits=3, default=1.0)
    speedup_wall: float = jfield(digits=3, default=1.0)
    below_1x_per_forward: bool = False
    below_1x_wall: bool = False

    @property
    def trace(self) -> Trace:
        return Trace(**{f.name: getattr(self, f.name) for f in dataclasses.fields(Trace)})

    @classmethod
    def of(cls, trace: Trace, greedy: Trace) -> StrategyResult:
        first, matches = align(trace.token_ids, greedy.token_ids)
        per_fwd = _ratio(trace.tokens_per_target_forward, greedy.tokens_per_target_forward)
        wall = _ratio(
            _per_second(trace), _per_second(greedy)
        )  # unrounded: tokens_per_second is shown rounded
        return cls(
            **{f.name: getattr(trace, f.name) for f in dataclasses.fields(Trace)},
            identical_to_greedy=trace.token_ids == greedy.token_ids, diverges_at=first, matches_greedy=matches,
            divergence=divergence(trace, greedy, first), speedup_per_forward=per_fwd, speedup_wall=wall,
            below_1x_per_forward=per_fwd < 1.0, below_1x_wall=wall < 1.0,
        )  # fmt: skip


def _per_second(t: Trace) -> float:
    return len(t.token_ids) / t.wall_s if t.wall_s > 0 else 0.0


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else 0.0


@dataclass(frozen=True)
class Comparison(JsonCodec):
    """The CLI's JSON; `reference` is greedy's own trace when it is not one of the rows (a head intervention,
    or greedy not asked for)."""

    model: str
    prompt_ids: tuple[int, ...]
    config: DecodeConfig
    results: tuple[StrategyResult, ...] = jfield(name="strategies")
    reference: Trace | None = None
    # every id of the comparison (prompt, outputs, drafted nodes) → its text, so the views show tokens as text
    # without the model (a session file or a cluster run redraws the same way)
    token_texts: dict[int, str] = jfield(default_factory=dict, compare=False)

    json_extra = ("greedy_token_ids", "intervention")

    @property
    def greedy(self) -> Trace:
        if self.reference is not None:
            return self.reference
        return next(r.trace for r in self.results if r.strategy == "greedy" and r.intervention is None)

    @property
    def greedy_token_ids(self) -> tuple[int, ...]:
        return self.greedy.token_ids

    @property
    def intervention(self) -> str | None:
        return next((r.intervention for r in self.results if r.intervention), None)


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
    for name in names:
        precheck(name, cfg)
    if "speculative" in names:
        if draft is None:
            raise InputError("speculative needs a draft model that shares the target's tokenizer")
        check_same_tokenizer(handle, draft)
    if cfg.ablate_heads is not None:
        handle.head_set(cfg.ablate_heads)
    if cfg.dial is not None:
        cfg.dial.check(handle)


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

    reference = decode(handle, prompt, "greedy", cfg.without_intervention(), on_step=share("greedy"))
    runs: dict[str, Trace] = {}
    for name in names:
        if name == "greedy" and not cfg.intervenes:
            runs[name] = reference
            continue
        runs[name] = decode(handle, prompt, name, cfg, draft, on_step=share(name))
    results = tuple(StrategyResult.of(runs[name], reference) for name in names)
    shown = "greedy" in names and not cfg.intervenes
    texts = token_texts(handle, [prompt, *(_ids(t) for t in (reference, *runs.values()))])
    return Comparison(handle.identity.name, tuple(prompt), cfg, results, None if shown else reference, texts)


def _ids(trace: Trace) -> list[int]:
    return [*trace.token_ids, *(t for s in trace.steps for t in (*s.draft_tokens, *s.accepted))]


def token_texts(handle: ModelHandle, id_lists: Sequence[Sequence[int]]) -> dict[int, str]:
    ids = sorted({int(i) for ids in id_lists for i in ids})
    return dict(zip(ids, handle.str_tokens(ids), strict=True))


def compare_prompt(
    handle: ModelHandle,
    prompt: str,
    strategies: str | Sequence[str],
    cfg: DecodeConfig,
    *,
    chat: bool = False,
    draft: ModelHandle | None = None,
    progress: Progress | None = None,
) -> Comparison:
    """`compare` on a prompt given as text (wrapped in the chat template when `chat`): what `decode compare` and
    the app's Decoding tab run."""
    if not prompt.strip():
        raise InputError("the prompt is empty")
    ids = handle.tokenize(render(handle, prompt, chat=chat))[0].tolist()
    return compare(handle, ids, strategies, cfg, draft=draft, progress=progress)
