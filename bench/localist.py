"""Benchmark: wall time of the localist sweep (6-point AILA λ sweep + progressive schedules) and the table itself.

Prints one JSON object. Ratios, not only absolute times (shared, noisy machines): the penalty's cost per training
step relative to plain CE training (λ>0 vs λ=0 runs of the same model, same run), and the sweep time against the
30-minute goal.

    python bench/localist.py [--steps N] [--work DIR] [--parallel K] [--threads T] [--ship]

`--parallel K` trains K runs side by side in worker processes (one machine with many cores) and then gathers them
(the gather resumes finished runs, so it only evaluates); the sequential time on `T` threads is then reported as
the sum of the per-run times, each measured on its own threads.
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--work", default=None)
    ap.add_argument("--parallel", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ship", action="store_true")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return _worker(args.worker, args.work, args.threads)

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
    print(json.dumps(_report(table.to_json(), wall, args), indent=1))


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
        "penalty_step_cost_ratio": round(base1 / base0, 3) if base0 else None,
        "summary": t["summary"],
        "paper": t["paper"],
        "rows": t["rows"],
    }


if __name__ == "__main__":
    main()
