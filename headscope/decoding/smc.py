"""Sequential Monte Carlo over AWRS (papers.md §9.5): M particles, each extended by one AWRS token per step.

A particle's weight is multiplied by each step's AWRS estimate of the constrained mass (W ← W · w_t), so the
weighted particles target the *globally* constrained distribution (AWRS alone is exact only step by step).
After each step, with normalised weights, ESS = (Σ W)² / Σ W²; when ESS < `ess_threshold` · M the particles are
resampled in proportion to W (multinomial) and every weight is reset to their mean. A particle whose constraint
admits no token gets weight 0 (it dies); finished particles (end-of-sequence or the token limit) keep theirs.
The trace is the particle drawn in proportion to the final weights, with its own steps (its lineage's, across
resampling) and, per step, every particle's log weight, the ESS and the resampling ancestry (`Trace.smc`).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field, replace

import torch

from headscope.decoding.awrs import Unsatisfiable
from headscope.decoding.cache import CachedModel, session
from headscope.decoding.config import DecodeConfig
from headscope.decoding.constrained import Sampler, constrained_step
from headscope.decoding.loop import check_room, notify_step
from headscope.decoding.trace import SmcStep, Step, Trace
from headscope.errors import InputError
from headscope.models import ModelHandle


@dataclass
class Particle:
    model: CachedModel
    out: list[int] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    log_w: float = 0.0

    def clone(self) -> Particle:
        model = CachedModel(self.model.handle, self.model.session)
        model.cache, model.tokens = copy.deepcopy(self.model.cache), list(self.model.tokens)
        return Particle(model, list(self.out), list(self.steps), self.log_w)


def ess(log_w: list[float]) -> float:
    """(Σ W)² / Σ W² of the weights exp(log_w); 0 when every weight is 0."""
    finite = [w for w in log_w if math.isfinite(w)]
    if not finite:
        return 0.0
    top = max(finite)
    w = [math.exp(x - top) if math.isfinite(x) else 0.0 for x in log_w]
    return sum(w) ** 2 / sum(x * x for x in w)


def _normalised(log_w: list[float]) -> torch.Tensor:
    t = torch.tensor(log_w, dtype=torch.float64)
    return torch.softmax(t, 0)


def _extend(sampler: Sampler, p: Particle, prompt: list[int], gen: torch.Generator, index: int) -> None:
    if sampler.done(p.out) or not math.isfinite(p.log_w):
        return
    t0 = time.perf_counter()
    logp = sampler.logp(p.model, prompt, p.out)
    try:
        choice = sampler.choose(logp, p.out, gen)
    except Unsatisfiable:
        p.log_w = -math.inf  # this particle's prefix cannot be completed: it dies
        return
    p.out.append(choice.token)
    p.steps.append(replace(constrained_step(index, choice, logp, t0), index=len(p.steps)))
    p.log_w += choice.log_weight if choice.log_weight is not None else 0.0


def _resample(particles: list[Particle], gen: torch.Generator) -> tuple[list[Particle], tuple[int, ...]]:
    log_w = [p.log_w for p in particles]
    probs = _normalised(log_w)
    picks = torch.multinomial(probs, len(particles), replacement=True, generator=gen).tolist()
    finite = [w for w in log_w if math.isfinite(w)]
    top = max(finite)
    mean = top + math.log(sum(math.exp(w - top) for w in finite) / len(particles))
    out = [particles[i].clone() for i in picks]
    for p in out:
        p.log_w = mean
    return out, tuple(picks)


def smc_decode(handle: ModelHandle, prompt: list[int], cfg: DecodeConfig, *, name: str) -> Trace:
    if cfg.greedy:
        raise InputError("SMC needs temperature > 0 (with temperature 0 every particle is the same)")
    sampler = Sampler(handle, cfg)
    check_room(handle, prompt, cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    records: list[SmcStep] = []
    t_start = time.perf_counter()
    with session(handle) as sess:
        particles = [Particle(CachedModel(handle, sess)) for _ in range(cfg.particles)]
        while not all(sampler.done(p.out) or not math.isfinite(p.log_w) for p in particles):
            for p in particles:
                _extend(sampler, p, prompt, gen, len(records))
            log_w = [p.log_w for p in particles]
            if not any(math.isfinite(w) for w in log_w):
                raise InputError("every SMC particle reached a prefix the constraint cannot complete")
            e = ess(log_w)
            resample = e < cfg.ess_threshold * len(particles)
            ancestors = tuple(range(len(particles)))
            if resample:
                particles, ancestors = _resample(particles, gen)
            records.append(SmcStep(len(records), tuple(log_w), e, resample, ancestors))
            notify_step(max(len(p.out) for p in particles), cfg.max_new_tokens)
        chosen = particles[
            int(torch.multinomial(_normalised([p.log_w for p in particles]), 1, generator=gen))
        ]
    return Trace(
        strategy=name,
        lossless=False,
        prompt_ids=tuple(prompt),
        token_ids=tuple(chosen.out),
        text=handle.decode(chosen.out),
        steps=tuple(chosen.steps),
        wall_s=time.perf_counter() - t_start,
        notes=(
            f"constraint: {sampler.constraint.pattern}",
            f"method: SMC over {cfg.constraint_method}, {cfg.particles} particles, "
            f"resampled {sum(r.resampled for r in records)} times",
        ),
        smc=tuple(records),
    )
