"""Batch runner benchmark: N small jobs (default 16) on the tiny models, in-process vs a local Ray cluster with 2
workers (one actor per model, each loading its model once per batch). Prints one JSON object and writes it, with
the run's conditions (bench/conditions.py), to bench/results/batch_cpu_2core.json (or --out).

The two runners are timed interleaved (`conditions.interleaved`: rotating order, --rounds rounds after one warm-up
each); every call is a whole batch into a fresh results folder with a fresh runner (the in-process runner loads
its models again, Ray starts its actors again). Reported: each runner's median and minimum wall time and the ratio
Ray / in-process (of the medians and of the minima); the Ray cluster's one start-up (before the rounds); from each
timed Ray batch, per actor the time before its first result beyond that job's own seconds (process start, imports)
and the median gap between one actor's consecutive results beyond the job's seconds (steady per-job cost), with
their medians over the rounds; and the check that every result file of every batch is identical byte for byte.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repo root holds `bench`
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench import conditions
from headscope.batch import InProcessRunner, RayRunner, connect, parse_jobs, run_batch

RESULT = Path(__file__).resolve().parent / "results" / "batch_cpu_2core.json"
TEXT = (
    "The committee met on Tuesday. It approved the budget after a long debate. Members then discussed the new "
    "library, which will open next spring. The mayor thanked everyone for their work."
)


def job_list(n_jobs: int) -> list[dict]:
    jobs = []
    for i in range(n_jobs):
        model = ("tiny-llama", "tiny-gpt2")[i % 2]
        if i % 4 < 2:
            lambdas = f"0,{0.1 + i / 20:.2f},1"
            args = ["locality", "sweep", "--model", model, "--text", TEXT, "--lambdas", lambdas]
        else:
            args = ["entropy", "--model", model, "--text", f"{TEXT} ({i})"]
        jobs.append({"name": f"job{i:02d}", "args": args})
    return jobs


class Stamped:
    """A runner wrapper that notes when each job's result reached the driver."""

    def __init__(self, runner) -> None:
        self.runner, self.name, self.t0 = runner, runner.name, 0.0
        self.at: dict[str, float] = {}

    def run(self, jobs, done) -> None:
        def stamp(job, outcome, attempts, worker) -> None:
            self.at[job.name] = time.perf_counter()
            done(job, outcome, attempts, worker)

        self.runner.run(jobs, stamp)


class Batches:
    """Each call runs the whole batch with a fresh runner into a fresh folder and keeps what it returned."""

    def __init__(self, root: Path, n_jobs: int) -> None:
        self.root, self.n_jobs = root, n_jobs
        self.done: list[tuple[str, Path, Stamped, dict]] = []

    def candidate(self, name: str, make_runner: Any) -> Any:
        def run() -> None:
            folder = self.root / f"{name}-{len(self.done)}"
            stamped = Stamped(make_runner())
            stamped.t0 = time.perf_counter()
            summary = run_batch(parse_jobs(job_list(self.n_jobs), folder), folder, stamped, progress=False)
            if summary["n_ok"] != self.n_jobs:
                raise SystemExit(f"{name}: {summary['n_ok']} of {self.n_jobs} jobs succeeded")
            self.done.append((name, folder, stamped, summary))

        return run

    def identical(self) -> bool:
        names = [f"job{i:02d}" for i in range(self.n_jobs)]
        first = self.done[0][1]
        return all((f / f"{n}.json").read_bytes() == (first / f"{n}.json").read_bytes()
                   for _, f, _, _ in self.done for n in names)  # fmt: skip


def actor_costs(runner: Stamped, summary: dict) -> tuple[list[float], float]:
    """Per actor: time before its first result beyond that job's own seconds (process start, imports);
    and the median gap between consecutive results of one actor beyond the job's seconds (steady per-job cost)."""
    by_worker: dict[str, list[str]] = {}
    for name in sorted(runner.at, key=lambda n: runner.at[n]):
        by_worker.setdefault(summary["jobs"][name]["worker"], []).append(name)
    start, gaps = [], []
    for names in by_worker.values():
        start.append(round(runner.at[names[0]] - runner.t0 - summary["jobs"][names[0]]["seconds"], 3))
        for prev, name in itertools.pairwise(names):
            gaps.append(runner.at[name] - runner.at[prev] - summary["jobs"][name]["seconds"])
    return start, statistics.median(gaps) if gaps else float("nan")


def ray_figures(batches: Batches, n_jobs: int) -> dict[str, Any]:
    timed = [(s, summ) for name, _, s, summ in batches.done if name == "ray"][1:]  # not the warm-up batch
    costs = [actor_costs(s, summ) for s, summ in timed]
    start = statistics.median(max(c[0]) for c in costs)
    steady = statistics.median(c[1] for c in costs)
    job_s = [j["seconds"] for _, summ in timed for j in summ["jobs"].values()]
    workers = len({j["worker"] for j in timed[0][1]["jobs"].values()})
    # Job length above which W warm-started workers beat one process: N·t > start + (N/W)·(t + steady).
    even = (start + n_jobs / workers * steady) / (n_jobs * (1 - 1 / workers)) if workers > 1 else None
    return {
        "ray_workers": workers,
        "ray_actor_start_s_per_round": [c[0] for c in costs],
        "ray_steady_overhead_per_job_s_per_round": [round(c[1], 4) for c in costs],
        "ray_job_s_median": round(statistics.median(job_s), 4),
        "break_even_job_s": round(even, 2) if even is not None else None,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2, help="CPUs of the local Ray cluster")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (≥ 3)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RESULT)
    args = ap.parse_args(argv)
    if args.rounds < 3 or args.jobs < 2:
        ap.error("--rounds must be at least 3 and --jobs at least 2")
    cond = conditions.start(args.threads)
    batches = Batches(Path(tempfile.mkdtemp(prefix="bench-batch-")), args.jobs)
    t0 = time.perf_counter()
    connect("local", num_cpus=args.workers)
    ray_start_s = time.perf_counter() - t0
    timing = conditions.interleaved(
        {"in_process": batches.candidate("in_process", InProcessRunner),
         "ray": batches.candidate("ray", lambda: RayRunner("ray:local"))},
        rounds=args.rounds,
    )  # fmt: skip
    __import__("ray").shutdown()
    out = {"bench": "batch", "n_jobs": args.jobs, "timing": timing,
           "ray_over_in_process": conditions.ratio(timing, "ray", "in_process"),
           "ray_cluster_start_s": round(ray_start_s, 3), **ray_figures(batches, args.jobs),
           "identical_results": batches.identical(),
           "note": "each Ray batch includes starting one actor per model (a fresh Python process importing torch, "
           "transformers and TransformerLens) and each actor's one model load (inside its first job); "
           "ray_steady_overhead_per_job_s = the cost per job once an actor is warm (scheduling and result "
           "transfer)."}  # fmt: skip
    conditions.write(out, args.out, cond)


if __name__ == "__main__":
    main()
