"""Constrained generation under a boolean constraint on the text: AWRS, and plain token masking as the baseline.

The constraint is a regular expression (or a named JSON-ish grammar compiled to one) that the text generated so
far must *partially* match (`regex` with `partial=True`: it can still be completed); the end-of-sequence token is
allowed only where the text matches in full.

AWRS (Lipkin et al. 2025, papers.md §6.2): per step, visit tokens in Gumbel-top-k order (sampling without
replacement from the LM's distribution p), testing the constraint only on visited tokens; the first accepted token
is an exact sample from p·c/Z. One more token is tested to form the recursive estimator of Z = Σ p(x)c(x), the
step's importance weight. Masking tests every token of the vocabulary and knows Z exactly.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import regex
import torch
from torch import Tensor

from headscope.decoding.cache import CachedModel
from headscope.decoding.config import DecodeConfig
from headscope.decoding.loop import check_room
from headscope.decoding.sampling import entropy_bits
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


@dataclass(frozen=True)
class Choice:
    token: int
    log_weight: float | None
    evals: int


def _gumbel(shape: torch.Size, gen: torch.Generator) -> Tensor:
    u = torch.rand(shape, generator=gen, dtype=torch.float64).clamp(1e-300, 1.0 - 1e-16)
    return -torch.log(-torch.log(u))


def awrs_choice(
    logp: Tensor, accept: Callable[[int], bool], gen: torch.Generator | None, max_rejections: int
) -> Choice:
    """AWRS over log-probabilities `logp` [vocab]; `gen` None = greedy order (no Gumbel noise, no weight)."""
    keys = logp if gen is None else logp + _gumbel(logp.shape, gen)
    lp = logp.tolist()
    order = [t for t in torch.argsort(keys, descending=True).tolist() if math.isfinite(lp[t])]
    rejected_mass, log_mult, evals = 0.0, 0.0, 0
    for i, tok in enumerate(order):
        p = math.exp(lp[tok])
        q = min(1.0, p / max(1.0 - rejected_mass, 1e-30))
        evals += 1
        if accept(tok):
            if gen is None:
                return Choice(tok, None, evals)
            tail = q
            if i + 1 < len(order):
                evals += 1
                tail = 1.0 if accept(order[i + 1]) else q
            return Choice(tok, log_mult + math.log(max(tail, 1e-300)), evals)
        if evals >= max_rejections:
            break
        log_mult += math.log1p(-q) if q < 1.0 else float("-inf")
        rejected_mass += p
    raise InputError(
        f"the constraint rejected every token tried ({evals} rejections); it looks unsatisfiable here"
    )


def mask_choice(logp: Tensor, accept: Callable[[int], bool], gen: torch.Generator | None) -> Choice:
    """Test every token; sample (or take the argmax) among the allowed ones; the weight is the exact log Z."""
    lp = logp.tolist()
    finite = [t for t, v in enumerate(lp) if math.isfinite(v)]
    allowed = [t for t in finite if accept(t)]
    if not allowed:
        raise InputError(f"the constraint allows none of the {len(finite)} tokens; it is unsatisfiable here")
    sub = logp[allowed]
    if gen is None:
        return Choice(allowed[int(sub.argmax())], None, len(finite))
    keys = sub + _gumbel(sub.shape, gen)
    return Choice(allowed[int(keys.argmax())], float(torch.logsumexp(sub, 0)), len(finite))


class TokenTexts:
    """Decoded text of single tokens, memoised (the constraint sees prefix text + token text)."""

    def __init__(self, handle: ModelHandle):
        self.handle = handle
        self.memo: dict[int, str] = {}

    def __getitem__(self, tok: int) -> str:
        if tok not in self.memo:
            self.memo[tok] = self.handle.decode([tok])
        return self.memo[tok]


def constrained_decode(handle: ModelHandle, prompt: list[int], cfg: DecodeConfig, *, name: str) -> Trace:
    constraint = Constraint.build(cfg.regex, cfg.grammar)
    check_room(handle, prompt, cfg)
    texts, eos = TokenTexts(handle), handle.tokenizer.eos_token_id
    target = CachedModel(handle)
    gen = None if cfg.greedy else torch.Generator().manual_seed(cfg.seed)
    out: list[int] = []
    steps: list[Step] = []
    t_start = time.perf_counter()
    with handle.exclusive():
        while len(out) < cfg.max_new_tokens and not (out and out[-1] == eos):
            t0 = time.perf_counter()
            logits = target.logits_last(prompt + out, 1)[0]
            logp = torch.log_softmax(logits / (cfg.temperature or 1.0), -1)
            prefix = handle.decode(out)

            def accept(tok: int, prefix: str = prefix) -> bool:
                return constraint.complete(prefix) if tok == eos else constraint.allows(prefix + texts[tok])

            if cfg.constraint_method == "awrs":
                choice = awrs_choice(logp, accept, gen, cfg.max_rejections)
            else:
                choice = mask_choice(logp, accept, gen)
            out.append(choice.token)
            steps.append(_step(len(steps), choice, logp, t0))
    return Trace(
        strategy=name,
        lossless=False,
        prompt_ids=tuple(prompt),
        token_ids=tuple(out),
        text=handle.decode(out),
        steps=tuple(steps),
        wall_s=time.perf_counter() - t_start,
        notes=(f"constraint: {constraint.pattern}", f"method: {cfg.constraint_method}"),
    )


def _step(index: int, choice: Choice, logp: Tensor, t0: float) -> Step:
    probs = logp.exp()
    return Step(
        index=index,
        draft_tokens=(),
        draft_source="none",
        accepted=(choice.token,),
        n_draft_accepted=0,
        verifier_probs=(float(probs[choice.token]),),
        entropies_bits=tuple(entropy_bits(probs[None])),
        target_forwards=1,
        draft_forwards=0,
        wall_ms=(time.perf_counter() - t0) * 1e3,
        constraint_evals=choice.evals,
        log_weight=choice.log_weight,
    )
