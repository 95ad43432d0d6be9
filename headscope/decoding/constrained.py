"""Constrained generation under a boolean constraint on the text: AWRS (optionally inside SMC), and plain token
masking as the baseline.

The constraint is a regular expression (or a named JSON-ish grammar compiled to one) that the text generated so
far must *partially* match (`regex` with `partial=True`: it can still be completed); the end-of-sequence token is
allowed only where the text matches in full. Each step samples one token with `awrs.awrs_choice` (or
`awrs.mask_choice`) from the temperature-scaled next-token distribution; `particles > 1` runs SMC (`smc.py`,
which imports this module, never the other way round).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import regex
import torch
from torch import Tensor

from headscope.attention.patterns import row_entropy_bits
from headscope.decoding.awrs import Choice, awrs_choice, mask_choice
from headscope.decoding.cache import CachedModel, session
from headscope.decoding.config import DecodeConfig
from headscope.decoding.loop import check_room, notify_step
from headscope.decoding.trace import Step, Trace
from headscope.errors import InputError
from headscope.models import ModelHandle

MATCH_TIMEOUT_S = 0.25
_KEY = r'"[A-Za-z_][A-Za-z0-9_]{0,15}"'
_VALUE = r'(?:"[^"\\\n]{0,40}"|-?[0-9]{1,9}|true|false|null)'
GRAMMARS = {
    # A flat JSON object with string / integer / boolean / null values.
    "json_object": rf"\{{ ?(?:{_KEY}: ?{_VALUE}(?:, ?{_KEY}: ?{_VALUE}){{0,7}})? ?\}}",
}


@dataclass(frozen=True)
class Constraint:
    pattern: str
    compiled: regex.Pattern

    @classmethod
    def build(cls, pattern: str | None, grammar: str | None) -> Constraint:
        if (pattern is None) == (grammar is None):
            raise InputError("constrained decoding needs exactly one of: a regex, or a grammar name")
        if grammar is not None:
            if grammar not in GRAMMARS:
                raise InputError(f"unknown grammar {grammar!r}; known: {', '.join(GRAMMARS)}")
            pattern = GRAMMARS[grammar]
        assert pattern is not None
        try:
            return cls(pattern, regex.compile(pattern))
        except regex.error as e:
            raise InputError(f"invalid regex {pattern!r}: {e}") from None

    def allows(self, text: str) -> bool:
        """Can `text` still be extended to a full match?"""
        return self._match(text, partial=True)

    def complete(self, text: str) -> bool:
        return self._match(text, partial=False)

    def _match(self, text: str, *, partial: bool) -> bool:
        # A time limit per evaluation: a pathological pattern must not stall the (shared) server.
        try:
            return self.compiled.fullmatch(text, partial=partial, timeout=MATCH_TIMEOUT_S) is not None
        except TimeoutError:
            raise InputError(f"the regex takes too long to evaluate (over {MATCH_TIMEOUT_S} s)") from None


class TokenTexts:
    """Decoded text of single tokens, memoised (the constraint sees prefix text + token text)."""

    def __init__(self, handle: ModelHandle):
        self.handle = handle
        self.memo: dict[int, str] = {}

    def __getitem__(self, tok: int) -> str:
        if tok not in self.memo:
            self.memo[tok] = self.handle.decode([tok])
        return self.memo[tok]


class Sampler:
    """One constrained step for a given generated prefix: the LM's distribution, the constraint, AWRS / mask."""

    def __init__(self, handle: ModelHandle, cfg: DecodeConfig):
        self.handle, self.cfg = handle, cfg
        self.constraint = Constraint.build(cfg.regex, cfg.grammar)
        self.texts = TokenTexts(handle)
        self.eos = handle.tokenizer.eos_token_id

    def accept_fn(self, out: list[int]) -> Callable[[int], bool]:
        prefix = self.handle.decode(out)
        constraint, texts, eos = self.constraint, self.texts, self.eos

        def accept(tok: int) -> bool:
            return constraint.complete(prefix) if tok == eos else constraint.allows(prefix + texts[tok])

        return accept

    def logp(self, model: CachedModel, prompt: list[int], out: list[int]) -> Tensor:
        logits = model.logits_last(prompt + out, 1)[0]
        # on the CPU: AWRS draws from a seeded CPU generator and walks the row token by token
        return torch.log_softmax(logits / (self.cfg.temperature or 1.0), -1).cpu()

    def choose(self, logp: Tensor, out: list[int], gen: torch.Generator | None) -> Choice:
        hint = f" after {self.handle.decode(out)[-40:]!r}" if out else " at the start"
        accept = self.accept_fn(out)
        if self.cfg.constraint_method == "awrs":
            return awrs_choice(logp, accept, gen, hint=hint)
        return mask_choice(logp, accept, gen, hint=hint)

    def done(self, out: list[int]) -> bool:
        return len(out) >= self.cfg.max_new_tokens or bool(out and out[-1] == self.eos)


def constrained_decode(handle: ModelHandle, prompt: list[int], cfg: DecodeConfig, *, name: str) -> Trace:
    """One particle: AWRS (or masking) token by token. Several particles are `smc.smc_decode`, which builds on
    this module (the strategy picks between the two)."""
    sampler = Sampler(handle, cfg)
    check_room(handle, prompt, cfg)
    gen = None if cfg.greedy else torch.Generator().manual_seed(cfg.seed)
    out: list[int] = []
    steps: list[Step] = []
    t_start = time.perf_counter()
    with session(handle) as sess:
        model = CachedModel(handle, sess)
        while not sampler.done(out):
            t0 = time.perf_counter()
            logp = sampler.logp(model, prompt, out)
            choice = sampler.choose(logp, out, gen)
            out.append(choice.token)
            steps.append(constrained_step(len(steps), choice, logp, t0))
            notify_step(len(out), cfg.max_new_tokens)
    return Trace(
        strategy=name,
        lossless=False,
        prompt_ids=tuple(prompt),
        token_ids=tuple(out),
        text=handle.decode(out),
        steps=tuple(steps),
        wall_s=time.perf_counter() - t_start,
        notes=(f"constraint: {sampler.constraint.pattern}", f"method: {cfg.constraint_method}"),
    )


def constrained_step(index: int, choice: Choice, logp: Tensor, t0: float) -> Step:
    probs = logp.exp()
    return Step(
        index=index,
        draft_tokens=(),
        draft_source="none",
        accepted=(choice.token,),
        n_draft_accepted=0,
        verifier_probs=(float(probs[choice.token]),),
        entropies_bits=tuple(row_entropy_bits(probs[None]).tolist()),
        target_forwards=1,
        draft_forwards=0,
        wall_ms=(time.perf_counter() - t0) * 1e3,
        constraint_evals=choice.evals,
        log_weight=choice.log_weight,
    )
