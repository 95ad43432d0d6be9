"""The AILA λ sweep and the progressive-localisation comparison, as one reproducible, resumable job.

Part A (AILA): the 2-layer model trained at every λ of `lambdas` (uniform schedule). Part B (progressive
localisation): a deeper model trained fully distributed (λ = 0), uniformly localist (λ_l = λ_max) and with
progressive schedules λ_l = λ_max·(l/(L−1))^β for each β. Each run lives in `work_dir/<run>/` and resumes there.

**Best trade-off** (the papers do not define it; ours): the λ maximising
(H(0) − H(λ)) / (H(0) − H(1)) − (ppl(λ) − ppl(0)) / (ppl(1) − ppl(0)), i.e. the largest share of the entropy
reduction bought for the smallest share of the perplexity cost (the knee of the curve; both shares in [0, 1]
when the curves are monotone).
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from headscope import checks
from headscope.attention.locality import MAX_BETA
from headscope.codec import JsonCodec, jfield
from headscope.errors import InputError
from headscope.localist.training import TrainConfig, TrainResult, build_corpus, train

PAPER = {
    "source": "AILA (arXiv 2511.03559) abstract; Progressive Localisation (arXiv 2511.18375) v1 abstract",
    "entropy_bits_lambda0": 7.18,
    "entropy_bits_lambda1": 5.36,
    "best_lambda": 0.6,
    "best_perplexity": 4.65,
    "best_accuracy": 0.847,
    "progressive_quintic_ppl_ratio": 1.89,
}
DEEP = TrainConfig(n_layers=6, d_model=64, n_heads=4, d_mlp=192, steps=300, lr=3e-3)


def _numbers(values: object, name: str, lo: float, hi: float) -> tuple[float, ...]:
    if not isinstance(values, tuple | list) or not values:
        raise InputError(f"{name} must be a non-empty list of values in [{lo:g}, {hi:g}], got {values!r}")
    return tuple(checks.number(v, f"each of {name}", lo, hi) for v in values)


@dataclass(frozen=True)
class SweepConfig:
    lambdas: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    base: TrainConfig = field(default_factory=TrainConfig)
    deep: TrainConfig = DEEP
    betas: tuple[float, ...] = (1.0, 3.0, 5.0)
    progressive_lambda: float = 1.0
    progressive: bool = True  # run part B

    def __post_init__(self) -> None:
        object.__setattr__(self, "lambdas", _numbers(self.lambdas, "lambdas", 0.0, 1.0))
        object.__setattr__(self, "betas", _numbers(self.betas, "betas", 1.0, MAX_BETA))
        lam = checks.number(self.progressive_lambda, "progressive_lambda", 0.0, 1.0)
        object.__setattr__(self, "progressive_lambda", lam)
        checks.flag(self.progressive, "progressive")
        for name in ("base", "deep"):
            if not isinstance(getattr(self, name), TrainConfig):
                raise InputError(f"{name} must be a localist TrainConfig, got {getattr(self, name)!r:.60}")

    def runs(self) -> list[tuple[str, str, TrainConfig]]:
        """(part, run name, config) in the order they are trained."""
        out = [("aila", f"2l-lambda{lam:g}", replace(self.base, lam=lam)) for lam in self.lambdas]
        if not self.progressive:
            return out
        lam = self.progressive_lambda
        out.append(("progressive", f"{self.deep.n_layers}l-distributed", replace(self.deep, lam=0.0)))
        out.append(("progressive", f"{self.deep.n_layers}l-uniform", replace(self.deep, lam=lam)))
        for beta in self.betas:
            cfg = replace(self.deep, lam=lam, schedule="progressive", beta=beta)
            out.append(("progressive", f"{self.deep.n_layers}l-progressive-beta{beta:g}", cfg))
        return out


def _row(name: str, res: TrainResult) -> dict[str, Any]:
    m, c = res.metrics, res.config
    return {
        "run": name,
        "lambda": c.lam,
        "schedule": c.schedule,
        "beta": c.beta if c.schedule == "progressive" else None,
        "layer_lambdas": [round(x, 4) for x in c.lambdas],
        "n_layers": c.n_layers,
        "steps": res.steps_done,
        "perplexity": round(m.perplexity, 4),
        "accuracy": round(m.accuracy, 4),
        "mean_entropy_bits": round(m.mean_entropy_bits, 4),
        "entropy_bits_per_layer": [round(x, 4) for x in m.entropy_bits_per_layer],
        "uniform_entropy_bits": round(m.uniform_entropy_bits, 4),
        "pointer_fidelity": round(m.pointer_fidelity, 4),
        "pointer_hit_rate": round(m.pointer_hit_rate, 4),
        "final_train_ce": res.loss_history[-1][1] if res.loss_history else None,
        "seconds": round(res.seconds, 1),
    }


def best_tradeoff(rows: list[dict[str, Any]]) -> float | None:
    """The knee λ (see the module docstring); None without both endpoints λ=0 and λ=1."""
    by = {r["lambda"]: r for r in rows}
    if 0.0 not in by or 1.0 not in by or len(by) < 3:
        return None
    dh = by[0.0]["mean_entropy_bits"] - by[1.0]["mean_entropy_bits"]
    dp = by[1.0]["perplexity"] - by[0.0]["perplexity"]
    if dh <= 0 or dp <= 0:
        return None

    def score(r: dict[str, Any]) -> float:
        gain = (by[0.0]["mean_entropy_bits"] - r["mean_entropy_bits"]) / dh
        return gain - (r["perplexity"] - by[0.0]["perplexity"]) / dp

    return max(rows, key=score)["lambda"]


def _summary(aila: list[dict[str, Any]], prog: list[dict[str, Any]]) -> dict[str, Any]:
    by = {r["lambda"]: r for r in aila}
    out: dict[str, Any] = {"best_tradeoff_lambda": best_tradeoff(aila)}
    if 0.0 in by and 1.0 in by:
        h0, h1 = by[0.0]["mean_entropy_bits"], by[1.0]["mean_entropy_bits"]
        out.update(entropy_bits_lambda0=h0, entropy_bits_lambda1=h1, entropy_falls_like_paper=h1 < h0,
                   pointer_fidelity_rises=by[1.0]["pointer_fidelity"] > by[0.0]["pointer_fidelity"])  # fmt: skip
    base = next((r for r in prog if r["lambda"] == 0.0), None)
    if base is not None:
        out["ppl_ratio_to_distributed"] = {
            r["run"]: round(r["perplexity"] / base["perplexity"], 4) for r in prog
        }
    return out


@dataclass(frozen=True)
class SweepTable(JsonCodec):
    """The sweep's table; `rows` (both parts) and `paper` (the paper's numbers) are written, not read."""

    aila: tuple[dict[str, Any], ...]
    progressive: tuple[dict[str, Any], ...]
    summary: dict[str, Any]
    wall_seconds: float = jfield(digits=1)
    machine: str = ""
    config: dict[str, Any] = jfield(default_factory=dict)

    json_extra = ("rows", "paper")

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [*self.aila, *self.progressive]

    @property
    def paper(self) -> dict[str, Any]:
        return PAPER


def run_sweep(
    cfg: SweepConfig, work_dir: str | Path, *, progress: bool = True, threads: int = 1
) -> SweepTable:
    """Train (or resume) every run of the sweep under `work_dir` and gather the table."""
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    work = Path(work_dir)
    results: dict[str, tuple[str, TrainResult]] = {}
    runs = cfg.runs()
    for i, (part, name, run_cfg) in enumerate(runs):
        if progress:
            print(f"[{i + 1}/{len(runs)}] {name}", flush=True, file=__import__("sys").stderr)
        corpus = build_corpus(
            run_cfg.vocab_size, run_cfg.ctx, run_cfg.max_train_windows, run_cfg.eval_windows
        )
        results[name] = (part, train(run_cfg, work / name, progress=progress, corpus=corpus))
    aila = [_row(n, r) for n, (p, r) in results.items() if p == "aila"]
    prog = [_row(n, r) for n, (p, r) in results.items() if p == "progressive"]
    config = {"base": cfg.base.to_json(), "deep": cfg.deep.to_json(), "lambdas": list(cfg.lambdas),
              "betas": list(cfg.betas), "progressive_lambda": cfg.progressive_lambda, "threads": threads}  # fmt: skip
    machine = f"{platform.machine()} CPU, {threads} torch threads, torch {torch.__version__}"
    return SweepTable(
        tuple(aila), tuple(prog), _summary(aila, prog), time.perf_counter() - t0, machine, config
    )
