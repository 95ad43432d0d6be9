"""`headscope batch run jobs.json --out DIR [--ray auto|local|ADDRESS]`: many commands, one results folder.

The job file, the output folder and the Ray address are all checked before any job runs (one line if not).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from headscope.cli.common import emit, json_flag, writable_dir
from headscope.errors import InputError


def register(sub: Any) -> None:
    p = sub.add_parser("batch", help="run a job file of headscope commands (in-process or on a Ray cluster)")
    bsub = p.add_subparsers(dest="batch_command", required=True)
    r = bsub.add_parser(
        "run", help="run every job not yet done; results in DIR/<name>.json, DIR/summary.json"
    )
    r.add_argument("jobs", help='job file: [{"name": ..., "args": [what follows `headscope`]}, ...]')
    r.add_argument("--out", required=True, help="results folder (re-running skips the jobs already done)")
    r.add_argument(
        "--ray", default=None, metavar="auto|local|ADDRESS",
        help="run on Ray: auto = the cluster running here, local = start one, or HOST:PORT",
    )  # fmt: skip
    r.add_argument("--replicas", type=int, default=None, help="Ray: actors per model (default 1)")
    r.add_argument("--num-cpus", type=int, default=None, help="--ray local: CPUs of the local cluster")
    json_flag(r)
    r.set_defaults(func=cmd_run)


def _positive(value: int | None, flag: str) -> int | None:
    if value is not None and value < 1:
        raise InputError(f"{flag} must be ≥ 1, got {value}")
    return value


def cmd_run(args: argparse.Namespace) -> None:
    from headscope.batch import InProcessRunner, RayRunner, connect, read_jobs, run_batch

    replicas, cpus = _positive(args.replicas, "--replicas"), _positive(args.num_cpus, "--num-cpus")
    if args.ray is None and (replicas or cpus):
        raise InputError("--replicas and --num-cpus need --ray")
    out = Path(args.out)
    jobs = read_jobs(args.jobs, out)
    writable_dir(out)
    runner: Any = InProcessRunner()
    if args.ray is not None:
        runner = RayRunner(connect(args.ray, num_cpus=cpus), max_replicas=replicas)
    summary = run_batch(jobs, out, runner)
    payload = {k: v for k, v in summary.items() if k != "jobs"} | {"out": str(out)}
    failed = [f"{name}: {e.get('error')}" for name, e in summary["jobs"].items() if e["status"] == "error"]
    lines = [f"{payload['n_ok']} ok, {payload['n_error']} failed, {payload['n_skipped']} already done "
             f"({payload['runner']}, {payload['seconds']:.1f} s); results in {out}", *failed]  # fmt: skip
    emit(payload, args.json, lines)
