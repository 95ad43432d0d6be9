"""Batch runner benchmark: 16 small jobs on the tiny models, in-process vs a local Ray cluster with 2 workers (one
actor per model, each loading its model once). Prints one JSON object and writes bench/results/batch_cpu_2core.json.

Reported: wall time of both runs and their ratio (Ray / in-process), Ray's start-up, its per-job overhead (worker
time not spent inside a job, per job: actor start-up and model load amortised over the jobs an actor serves, plus
scheduling), and the check that every result file is identical byte for byte.
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from headscope.batch import InProcessRunner, RayRunner, connect, parse_jobs, run_batch

TEXT = (
    "The committee met on Tuesday. It approved the budget after a long debate. Members then discussed the new "
    "library, which will open next spring. The mayor thanked everyone for their work."
)
N_JOBS, WORKERS = 16, 2


def job_list() -> list[dict]:
    jobs = []
    for i in range(N_JOBS):
        model = ("tiny-llama", "tiny-gpt2")[i % 2]
        if i % 4 < 2:
            args = [
                "locality",
                "sweep",
                "--model",
                model,
                "--text",
                TEXT,
                "--lambdas",
                f"0,{0.1 + i / 20:.2f},1",
            ]
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


def timed(runner: Stamped, out: Path) -> tuple[float, dict]:
    jobs = parse_jobs(job_list(), out)
    runner.t0 = time.perf_counter()
    summary = run_batch(jobs, out, runner, progress=False)
    return time.perf_counter() - runner.t0, summary


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
    return start, statistics.median(gaps)


def main() -> None:
    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    local_s, local = timed(Stamped(InProcessRunner()), root / "local")
    t0 = time.perf_counter()
    connect("local", num_cpus=WORKERS)
    ray_start_s = time.perf_counter() - t0
    stamped = Stamped(RayRunner("ray:local"))
    ray_s, on_ray = timed(stamped, root / "ray")
    actor_start, steady = actor_costs(stamped, on_ray)
    names = [f"job{i:02d}" for i in range(N_JOBS)]
    same = all(
        (root / "local" / f"{n}.json").read_bytes() == (root / "ray" / f"{n}.json").read_bytes()
        for n in names
    )
    assert local["n_ok"] == on_ray["n_ok"] == N_JOBS and same, "in-process and Ray results differ"
    job_s = [on_ray["jobs"][n]["seconds"] for n in names]
    workers = sorted({on_ray["jobs"][n]["worker"] for n in names})
    first = {w: min(n for n in names if on_ray["jobs"][n]["worker"] == w) for w in workers}
    out = {
        "bench": "batch",
        "machine": f"{platform.machine()} {os.cpu_count()} cpu",
        "n_jobs": N_JOBS,
        "ray_workers": len(workers),
        "in_process_s": round(local_s, 3),
        "ray_s": round(ray_s, 3),
        "ratio_ray_over_in_process": round(ray_s / local_s, 3),
        "ray_cluster_start_s": round(ray_start_s, 3),
        "in_process_job_s_median": round(statistics.median(local["jobs"][n]["seconds"] for n in names), 4),
        "ray_job_s_median": round(statistics.median(job_s), 4),
        "ray_first_job_per_actor_s": [on_ray["jobs"][first[w]]["seconds"] for w in workers],
        "ray_actor_start_s": actor_start,
        "ray_steady_overhead_per_job_s": round(steady, 4),
        "ray_overhead_per_job_s": round((len(workers) * ray_s - sum(job_s)) / N_JOBS, 3),
        # Job length above which W warm-started workers beat one process: N·t > start + (N/W)·(t + steady).
        "break_even_job_s": round(
            (max(actor_start) + N_JOBS / len(workers) * steady) / (N_JOBS * (1 - 1 / len(workers))), 2
        ),
        "identical_results": same,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "note": "ray_s includes starting one actor per model (a fresh Python process importing torch, transformers "
        "and TransformerLens: ray_actor_start_s) and each actor's one model load (inside its first job); "
        "ray_overhead_per_job_s = worker time outside jobs / jobs (start-up amortised over 8 jobs per actor); "
        "ray_steady_overhead_per_job_s = the same once an actor is warm (scheduling and result transfer).",
    }
    ray_mod = __import__("ray")
    ray_mod.shutdown()
    print(json.dumps(out, indent=1))
    dest = Path(__file__).resolve().parent / "results" / "batch_cpu_2core.json"
    dest.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
