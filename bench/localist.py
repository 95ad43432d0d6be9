"""Benchmark: wall time of the localist sweep (6-point AILA λ sweep + progressive schedules), the table itself, and
the penalty's cost per training step. Prints one JSON object and writes it, with the run's conditions
(bench/conditions.py), to bench/results/localist_cpu_2core.json (or --out).

    python bench/localist.py [--steps N] [--work DIR] [--parallel K] [--threads T] [--rounds R] [--ship]

- Sweep: every run trained (or resumed: a finished run in --work is only evaluated) in sequence, each run's own
  seconds from its metrics; the 6-point sweep's seconds and all runs' seconds against the 30-minute goal.
  `--parallel K` trains K runs side by side in worker processes (one machine with many cores) and then gathers
  them (the gather resumes finished runs, so it only evaluates); the sequential time on T threads is then the sum
  of the per-run times, each measured on its own threads.
- Penalty cost: --step-batches training steps (forward with attentions, loss, backward, clip, AdamW step) of the
  base model on one fixed batch at λ = 0 (cross-entropy only) and at λ = --penalty-lambda (cross-entropy + the
  leakage penalty), timed interleaved (`conditions.interleaved`: rotating order, --rounds rounds after one
  warm-up each). The ratio of medians (and of minima) is the penalty's cost per step. The same ratio read from
  the sweep's sequential runs (mean seconds per step of the λ > 0 runs over the λ = 0 run) is reported beside
  it, labelled as not interleaved.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repo root holds `bench`

from bench import conditions

RESULT = Path(__file__).resolve().parent / "results" / "localist_cpu_2core.json"
GOAL_SECONDS = 30 * 60


def _worker(cfg_json: str, out: str, threads: int) -> None:
    import torch

    from headscope.localist.training import TrainConfig, train

    torch.set_num_threads(threads)
    train(TrainConfig(**json.loads(cfg_json)), out, progress=False)


def _train_parallel(runs: list, work: Path, parallel: int, threads: int) -> None:
    def one(item: tuple) -> int:
        _, name, cfg = item
        cmd = [sys.executable, __file__, "--worker", json.dumps(asdict(cfg)), "--work", str(work / name),
               "--threads", str(threads)]  # fmt: skip
        return subprocess.run(cmd, check=False).returncode

    with ThreadPoolExecutor(parallel) as pool:
        codes = list(pool.map(one, runs))
    if any(codes):
        raise SystemExit(f"worker failures: {codes}")


def penalty_cost(base: Any, lam: float, steps: int, rounds: int) -> dict[str, Any]:
    """Training steps at λ = 0 and at λ = `lam` on one fixed batch, interleaved; the penalty's cost per step."""
    import torch

    from headscope.localist.corpus import Windows
    from headscope.localist.training import _optimizer, build_corpus, build_model, loss_terms

    corpus = build_corpus(base.vocab_size, base.ctx, base.max_train_windows, base.eval_windows)
    batch = Windows(corpus.train.ids[: base.batch_size], corpus.train.blocks[: base.batch_size])

    def trainer(cfg: Any) -> Any:
        model = build_model(cfg, corpus.tokenizer)
        opt = _optimizer(model, cfg)
        model.train()

        def run() -> None:
            for _ in range(steps):
                ce, reg = loss_terms(model, batch, cfg)
                opt.zero_grad(set_to_none=True)
                (ce + reg).backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()

        return run

    timing = conditions.interleaved(
        {"ce_only": trainer(replace(base, lam=0.0)), "ce_and_penalty": trainer(replace(base, lam=lam))},
        rounds,
    )
    return {"lambda": lam, "penalty": base.penalty, "steps_per_timing": steps, "batch_size": base.batch_size,
            "timing": timing, "penalty_over_ce": conditions.ratio(timing, "ce_and_penalty", "ce_only")}  # fmt: skip


def _args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=None, help="training steps per run (default: the sweep's)")
    ap.add_argument("--work", default=None)
    ap.add_argument("--parallel", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the penalty cost (≥ 3)")
    ap.add_argument("--step-batches", type=int, default=5, help="training steps per timed call")
    ap.add_argument("--penalty-lambda", type=float, default=0.6)
    ap.add_argument("--ship", action="store_true")
    ap.add_argument("--out", type=Path, default=RESULT)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.rounds < 3 and not args.worker:
        ap.error("--rounds must be at least 3")
    return args


def main(argv: list[str] | None = None) -> None:
    args = _args(argv)
    if args.worker:
        return _worker(args.worker, args.work, args.threads)
    cond = conditions.start(args.threads)
    from headscope.localist.train_sweep import SweepConfig, run_sweep

    cfg = SweepConfig()
    if args.steps:
        cfg = replace(cfg, base=replace(cfg.base, steps=args.steps), deep=replace(cfg.deep, steps=args.steps))
    work = Path(args.work or os.path.join(os.environ.get("TMPDIR", "/tmp"), "headscope-localist-bench"))
    t0 = time.perf_counter()
    if args.parallel > 1:
        from headscope.localist.training import build_corpus

        build_corpus(cfg.base.vocab_size, cfg.base.ctx, cfg.base.max_train_windows, cfg.base.eval_windows)
        _train_parallel(cfg.runs(), work, args.parallel, args.threads)
    table = run_sweep(cfg, work, progress=args.parallel == 1, threads=args.threads)
    wall = time.perf_counter() - t0
    if args.ship:
        from headscope.localist.train_ship import ship

        ship(table, work)
    out = _report(table.to_json(), wall, args)
    out["penalty_step_cost"] = penalty_cost(cfg.base, args.penalty_lambda, args.step_batches, args.rounds)
    conditions.write(out, args.out, cond)


def _report(t: dict, wall: float, args: argparse.Namespace) -> dict:
    aila, prog = t["aila"], t["progressive"]
    six = sum(r["seconds"] for r in aila)
    total = six + sum(r["seconds"] for r in prog)

    def per_step(rows: list, positive: bool) -> float:
        sel = [r["seconds"] / r["steps"] for r in rows if (r["lambda"] > 0) == positive]
        return sum(sel) / max(len(sel), 1)

    base0, base1 = per_step(aila, False), per_step(aila, True)
    return {
        "bench": "localist_sweep",
        "machine": t["machine"],
        "mode": "sequential" if args.parallel == 1 else f"{args.parallel} runs side by side",
        "threads_per_run": args.threads,
        "wall_seconds": round(wall, 1),
        "six_point_sweep_seconds": round(six, 1),
        "all_runs_seconds_sequential_equivalent": round(total, 1),
        "goal_seconds": GOAL_SECONDS,
        "six_point_within_goal": six <= GOAL_SECONDS,
        "all_runs_within_goal": total <= GOAL_SECONDS,
        "penalty_step_cost_ratio_from_runs_not_interleaved": round(base1 / base0, 3) if base0 else None,
        "summary": t["summary"],
        "paper": t["paper"],
        "rows": t["rows"],
    }


if __name__ == "__main__":
    main()
