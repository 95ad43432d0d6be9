"""`side_by_side`: the one comparison of a steered model with the unsteered one — and with plain prompting, and
with steering and prompting together — every effect beside its cost, with bootstrap intervals (papers.md §10.4).

AxBench (Wu et al. 2025) found that prompting beats every steering method on the same concepts, so a steering
result is read against two baselines: **none** (the unsteered model) and **prompting** (the same model with an
instruction prefix that asks for the concept, `instruction + "\\n" + prompt`). The rows:

| condition | prompt the model sees | hooks |
|---|---|---|
| none | prompt | — |
| prompting | instruction ⏎ prompt | — |
| steering | prompt | the intervention |
| steering + prompting | instruction ⏎ prompt | the intervention |

Each row measures, over the prompts (and texts, and items, when given):
- held-out texts (`HeldOut`): `margin` and `margin_effect` (its change from none; teacher-forced, nats per text;
  intervals over prompts and texts at once), and `judged_positive`, the share of continuations the unsteered model
  itself places closer to the positive texts (`heldout.Judge`, whose weakness the result states);
- promoted tokens (a feature's): `promoted_logprob_change`, the change of the mean next-token log-probability of
  those tokens at the prompt's last position;
- items (`Pair`s, LoFiT's held-out task): `accuracy` (exact match) and `target_logprob`; items are scored with the
  hooks built for start 0, so only position-independent interventions (LoFiT's offsets) take items;
- always, the cost of each condition's greedy continuation: `perplexity` under the unsteered model given the prompt
  alone (so prompting pays for text that only fits its instruction, as steering does), `perplexity_ratio` to the
  none row's, and `distinct_1` / `distinct_2` (distinct n-grams over n-grams; 1 when there are none).
Intervals: 95 % percentile bootstrap, seeded (`stats.py`). The first prompt is also shown side by side, with the
per-token probabilities of the steered text under both models (`Cost`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np
import torch

from headscope import checks
from headscope.codec import JsonCodec, jfield
from headscope.errors import InputError
from headscope.models.handle import ModelHandle
from headscope.progress import Progress, StepCounter, silent
from headscope.steering import stats
from headscope.steering.cost import (
    Cost,
    continuation_logprobs,
    distinct_ratio,
    perplexity,
    steering_cost,
    token_strip,
)
from headscope.steering.generate import GenConfig, Generation, HookFactory, generate
from headscope.steering.heldout import HeldOut, Judge, JudgeInfo
from headscope.steering.scoring import score_items, text_logprobs
from headscope.steering.tasks import Pair, check_instruction

NONE, PROMPTING, STEERING, BOTH = "none", "prompting", "steering", "steering + prompting"
CONDITIONS: tuple[str, ...] = (NONE, PROMPTING, STEERING, BOTH)
SEPARATOR = "\n"
MAX_PROMPTS = 64
MAX_PROMPT_CHARS = 2000
MEASURES: dict[str, str] = {
    "margin": "mean log p(held-out positive text | prompt) − the same for negative texts (nats per text)",
    "margin_effect": "change of the margin from the none row (nats per text; held out when the texts were never "
    "used to build the vector)",
    "judged_positive": "share of greedy continuations the judge (unsteered model) places closer to the positive "
    "texts than to the negative ones",
    "promoted_logprob_change": "change from the none row of the mean log p(next token) of the promoted tokens at "
    "the prompt's last position (nats)",
    "accuracy": "held-out items whose every target token is the argmax under teacher forcing",
    "target_logprob": "mean log p(target | prompt) over held-out items (nats)",
    "perplexity": "perplexity of the greedy continuation under the unsteered model, given the prompt alone",
    "perplexity_ratio": "perplexity over the none row's, per prompt",
    "distinct_1": "distinct tokens / tokens in the continuation",
    "distinct_2": "distinct token bigrams / bigrams in the continuation",
}


def check_prompt(prompt: object) -> str:
    """A prompt, checked before any model is loaded (refused, never cut)."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError("the prompt is empty")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InputError(f"the prompt is {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}")
    return prompt


def check_prompts(prompts: object) -> tuple[str, ...]:
    if isinstance(prompts, str) or not isinstance(prompts, Sequence) or not prompts:
        raise InputError("give at least one prompt")
    if len(prompts) > MAX_PROMPTS:
        raise InputError(f"{len(prompts)} prompts; the limit is {MAX_PROMPTS}")
    return tuple(check_prompt(p) for p in prompts)


@dataclass(frozen=True)
class SideBySideConfig:
    """gen: each continuation; instruction: the prompting baseline's prefix (None: no prompting rows);
    resamples / seed: the bootstrap; judge_layer: where the judge reads (None: 0.6 of depth)."""

    gen: GenConfig = field(default_factory=GenConfig)
    instruction: str | None = None
    resamples: int = stats.DEFAULT_RESAMPLES
    seed: int = 0
    judge_layer: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.gen, GenConfig):
            raise InputError("gen must be a GenConfig")
        set_ = object.__setattr__
        set_(self, "instruction", check_instruction(self.instruction))
        set_(self, "resamples", checks.integer(self.resamples, "resamples", 100, stats.MAX_RESAMPLES))
        set_(self, "seed", checks.integer(self.seed, "seed", 0, 2**53))
        set_(self, "judge_layer", checks.optional_integer(self.judge_layer, "judge_layer", 0, 10_000))

    @property
    def conditions(self) -> tuple[str, ...]:
        return CONDITIONS if self.instruction else (NONE, STEERING)


@dataclass(frozen=True)
class Row(JsonCodec):
    """One condition's measures, each a value with its 95 % interval."""

    condition: str
    measures: dict[str, stats.Interval]


@dataclass(frozen=True)
class PromptRun(JsonCodec):
    """One prompt: each condition's continuation and its per-prompt values."""

    prompt: str
    continuations: dict[str, Generation]
    values: dict[str, dict[str, float]] = jfield(digits=4)


@dataclass(frozen=True)
class Evaluation(JsonCodec):
    """The table none / prompting / steering / steering + prompting, and what it was measured on."""

    conditions: tuple[str, ...]
    rows: tuple[Row, ...]
    prompts: tuple[PromptRun, ...]
    instruction: str | None
    held_out: bool | None  # texts never used to build the vector (None: no texts)
    n_positive: int
    n_negative: int
    n_items: int
    judge: JudgeInfo | None
    resamples: int
    seed: int

    json_extra: ClassVar[tuple[str, ...]] = ("legend",)

    @property
    def legend(self) -> dict[str, str]:
        present = {m for r in self.rows for m in r.measures}
        return {m: text for m, text in MEASURES.items() if m in present}

    def row(self, condition: str) -> Row:
        return next(r for r in self.rows if r.condition == condition)


@dataclass(frozen=True)
class SideBySide(JsonCodec):
    """Unsteered vs steered on the first prompt (with the cost and the per-token strip), the headline effect
    (`effect_measure` of the steering row: the held-out margin effect, else the promoted tokens' change), and
    the whole evaluation."""

    prompt: str
    unsteered: Generation
    steered: Generation
    cost: Cost
    effect: float | None  # rounded to 5 digits
    effect_measure: str | None
    evaluation: Evaluation

    json_extra: ClassVar[tuple[str, ...]] = ("tokens",)

    @property
    def tokens(self) -> list[dict[str, Any]]:
        return token_strip(self.steered, self.cost)

    def parts(self) -> dict[str, Any]:
        """This comparison's fields, to build a result that extends it (`Comparison(**sbs.parts(), ...)`)."""
        return {f.name: getattr(self, f.name) for f in fields(SideBySide)}


@dataclass
class _Raw:
    """Per condition: per-prompt values, the [prompt, text] log-probabilities and the per-item scores."""

    values: dict[str, dict[str, list[float]]]
    logprobs: dict[str, list[np.ndarray]]
    items: dict[str, tuple[np.ndarray, np.ndarray]]


def distinct_n(ids: Sequence[int], n: int) -> float:
    grams = [tuple(ids[i : i + n]) for i in range(len(ids) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 1.0


def _prompt_ids(handle: ModelHandle, prompt: str, condition: str, instruction: str | None) -> list[int]:
    text = instruction + SEPARATOR + prompt if instruction and condition in (PROMPTING, BOTH) else prompt
    return handle.tokenize(text)[0].tolist()


def _hooks(steering: HookFactory, condition: str, start: int) -> Any:
    return steering(start) if condition in (STEERING, BOTH) else ()


def _next_token_logprob(handle: ModelHandle, ids: list[int], hooks: Any, tokens: Sequence[int]) -> float:
    logits = handle.forward(torch.tensor([ids]), fwd_hooks=hooks)[0, -1].float()
    return float(logits.log_softmax(-1)[list(tokens)].mean())


class _Runner:
    """Runs every condition on every prompt once and keeps what the rows and the headline need."""

    def __init__(
        self, handle: ModelHandle, steering: HookFactory, cfg: SideBySideConfig, say: Progress,
        texts: HeldOut | None, promoted: Sequence[int] | None,
    ) -> None:  # fmt: skip
        self.handle, self.steering, self.cfg, self.say = handle, steering, cfg, say
        self.texts, self.promoted = texts, promoted
        if texts is not None:
            say("judge: reading the held-out texts", 0.0)
        self.judge = None if texts is None else Judge(handle, texts, cfg.judge_layer)
        self.raw = _Raw({c: {} for c in cfg.conditions}, {c: [] for c in cfg.conditions}, {})

    def prompt(self, i: int, prompt: str, n: int) -> PromptRun:
        plain = self.handle.tokenize(prompt)[0].tolist()
        k = len(self.cfg.conditions)
        gens, values = {}, {}
        for j, c in enumerate(self.cfg.conditions):
            lo = (i * k + j) / (n * k)

            def on_token(done: int, total: int, c: str = c, lo: float = lo) -> None:
                self.say(f"prompt {i + 1}/{n}, {c}: token {done}/{total}", lo + done / total / (n * k))

            gens[c], values[c] = self._condition(c, plain, prompt, on_token)
        for c, vals in values.items():
            vals["perplexity_ratio"] = vals["perplexity"] / values[NONE]["perplexity"]
            for name, v in vals.items():
                self.raw.values[c].setdefault(name, []).append(v)
        return PromptRun(prompt, gens, values)

    def _condition(
        self, c: str, plain: list[int], prompt: str, on_token: StepCounter
    ) -> tuple[Generation, dict[str, float]]:
        ids = _prompt_ids(self.handle, prompt, c, self.cfg.instruction)
        hooks = _hooks(self.steering, c, len(ids) - 1)  # the prompt's last position: where "last" starts
        factory = (lambda s: _hooks(self.steering, c, s)) if c in (STEERING, BOTH) else None
        gen = generate(self.handle, torch.tensor([ids]), self.cfg.gen, factory, on_token=on_token)
        read = continuation_logprobs(self.handle, torch.tensor([plain]), gen.token_ids)
        out = {"perplexity": perplexity(read), "distinct_1": distinct_ratio(gen.token_ids),
               "distinct_2": distinct_n(gen.token_ids, 2)}  # fmt: skip
        if self.texts is not None and self.judge is not None:
            self.raw.logprobs[c].append(text_logprobs(self.handle, ids, self.texts.texts, fwd_hooks=hooks))
            out["judged_positive"] = float(self.judge.positive(gen.token_ids))
        if self.promoted:
            out["promoted_logprob"] = _next_token_logprob(self.handle, ids, hooks, self.promoted)
        return gen, out

    def items(self, pairs: Sequence[Pair]) -> None:
        for c in self.cfg.conditions:
            self.say(f"held-out items: {c}", 1.0)
            prefix = (
                self.cfg.instruction + SEPARATOR if c in (PROMPTING, BOTH) and self.cfg.instruction else ""
            )
            shown = [Pair(prefix + p.prompt, p.target) for p in pairs]
            self.raw.items[c] = score_items(self.handle, shown, fwd_hooks=_hooks(self.steering, c, 0))


class _Boot:
    """The bootstrap of one condition's measures (each measure and condition has its own seeded stream)."""

    def __init__(self, cfg: SideBySideConfig, condition: str) -> None:
        self.cfg, self.c = cfg, condition

    def mean(self, name: str, values: Any) -> stats.Interval:
        return stats.bootstrap(
            values, seed=self.cfg.seed, what=f"{name}/{self.c}", resamples=self.cfg.resamples
        )

    def margin(self, name: str, delta: np.ndarray, positive: np.ndarray) -> stats.Interval:
        what, n = f"{name}/{self.c}", self.cfg.resamples
        return stats.bootstrap_margin(delta, positive, seed=self.cfg.seed, what=what, resamples=n)

    def change(self, name: str, values: Any, n: int) -> stats.Interval:
        """A change from the none row: exactly 0 there (no spread), else resampled."""
        return stats.Interval.exact(0.0, n) if self.c == NONE else self.mean(name, values)


def _text_measures(raw: _Raw, boot: _Boot, texts: HeldOut) -> dict[str, stats.Interval]:
    lp, base, pos = np.stack(raw.logprobs[boot.c]), np.stack(raw.logprobs[NONE]), texts.is_positive
    effect = (
        stats.Interval.exact(0.0, len(lp)) if boot.c == NONE else boot.margin("margin_effect", lp - base, pos)
    )
    judged = boot.mean("judged_positive", raw.values[boot.c]["judged_positive"])
    return {"margin": boot.margin("margin", lp, pos), "margin_effect": effect, "judged_positive": judged}


def _row(raw: _Raw, cfg: SideBySideConfig, texts: HeldOut | None, c: str) -> Row:
    boot, vals = _Boot(cfg, c), raw.values[c]
    m = {} if texts is None else _text_measures(raw, boot, texts)
    if "promoted_logprob" in vals:
        change = np.subtract(vals["promoted_logprob"], raw.values[NONE]["promoted_logprob"])
        m["promoted_logprob_change"] = boot.change("promoted_logprob_change", change, len(change))
    if c in raw.items:
        hits, logps = raw.items[c]
        m["accuracy"], m["target_logprob"] = (
            boot.mean("accuracy", hits.astype(float)),
            boot.mean("target_logprob", logps),
        )
    for name in ("perplexity", "perplexity_ratio", "distinct_1", "distinct_2"):
        m[name] = boot.mean(name, vals[name])
    return Row(c, m)


def _rows(raw: _Raw, cfg: SideBySideConfig, texts: HeldOut | None) -> tuple[Row, ...]:
    return tuple(_row(raw, cfg, texts, c) for c in cfg.conditions)


def _headline(rows: tuple[Row, ...]) -> tuple[float | None, str | None]:
    steered = next(r for r in rows if r.condition == STEERING).measures
    for name in ("margin_effect", "promoted_logprob_change"):
        if name in steered:
            return steered[name].value, name
    return None, None


def side_by_side(
    handle: ModelHandle,
    steering: HookFactory,
    prompts: Sequence[str],
    cfg: SideBySideConfig | None = None,
    *,
    texts: HeldOut | None = None,
    items: Sequence[Pair] | None = None,
    promoted: Sequence[int] | None = None,
    progress: Progress | None = None,
) -> SideBySide:
    """Every condition on every prompt; `steering(start)` gives the intervention's hooks for a prompt whose last
    position is `start` (position-aware vectors steer from there on)."""
    cfg = cfg or SideBySideConfig()
    prompts = check_prompts(prompts)
    runner = _Runner(handle, steering, cfg, progress or silent, texts, promoted)
    runs = tuple(runner.prompt(i, p, len(prompts)) for i, p in enumerate(prompts))
    if items:
        runner.items(items)
    rows = _rows(runner.raw, cfg, texts)
    ev = Evaluation(
        cfg.conditions, rows, runs, cfg.instruction, None if texts is None else texts.held_out,
        0 if texts is None else len(texts.positives), 0 if texts is None else len(texts.negatives),
        len(items or ()), None if runner.judge is None else runner.judge.info(), cfg.resamples, cfg.seed,
    )  # fmt: skip
    first = runs[0]
    ids = handle.tokenize(first.prompt)
    plain, steered = first.continuations[NONE], first.continuations[STEERING]
    cost = steering_cost(handle, ids, plain.token_ids, steered.token_ids, steering(ids.shape[1] - 1))
    effect, measure = _headline(rows)
    effect = None if effect is None else round(effect, 5)
    return SideBySide(first.prompt, plain, steered, cost, effect, measure, ev)
