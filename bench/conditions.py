"""The conditions every benchmark records, and interleaved A/B timing — shared by every script in bench/.

A result JSON says where its figures came from: git commit (and whether the tree had uncommitted changes), torch
threads, load average before and after, the exact command, machine and library versions, and the CPU the machine's
OTHER processes used during the run (`others_cpu_cores`: all busy CPU time from /proc/stat minus this process's and
its children's, over the wall time, in cores). `quiet` is true when the 1-minute load average was below 1.5 at the
start and the other processes used under 0.5 of a core on average while the run lasted (the project's bar for a
timing figure); a figure taken on a loaded machine must say so next to it, and `quiet: false` is how the JSON says
it. Why not the load average at the end: a 2-thread benchmark on a 2-core machine drives the 1-minute load to ~2
by itself, so "load after < 1.5" failed every quiet run of its own making; the load after is still recorded.

Timings are ratios against a baseline measured in the same run: `interleaved` runs the candidates in rotating
order (A B, B A, A B, ... — the baseline is not always first), so drift in the machine's load hits every candidate
alike, and reports the median and the minimum of each.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

QUIET_LOAD = 1.5
QUIET_OTHERS_CORES = 0.5  # other processes' average CPU use during the run, in cores
ROOT = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def busy_cpu_seconds() -> float | None:
    """CPU seconds the whole machine has spent busy since boot (/proc/stat; None where there is none)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds used by this process, its waited-for children and its live descendants (browsers, workers)."""
    import psutil

    me = psutil.Process()
    t = me.cpu_times()
    total = t.user + t.system + t.children_user + t.children_system
    for child in me.children(recursive=True):
        try:
            c = child.cpu_times()
            total += c.user + c.system
        except psutil.Error:
            pass
    return total


def start(threads: int | None = None) -> dict[str, Any]:
    """The conditions at the start of a run; sets torch's thread count when `threads` is given."""
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    return {
        "commit": _git("rev-parse", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_before": load_average(),
        "_cpu_mark": [busy_cpu_seconds(), own_cpu_seconds(), time.monotonic()],
    }


def others_cores(mark: list[float | None], busy: float | None, own: float, now: float) -> float | None:
    """The average CPU (in cores) the machine's other processes used between `mark` and now."""
    busy0, own0, t0 = mark
    if busy is None or busy0 is None or t0 is None or now <= t0:
        return None
    return max(0.0, (busy - busy0) - (own - (own0 or 0.0))) / (now - t0)


def finish(conditions: dict[str, Any], parts_quiet: bool = True) -> dict[str, Any]:
    """The conditions with the load average after the run and the `quiet` verdict (false as well when a run
    assembled from resumed parts had a part that was not quiet: `parts_quiet`)."""
    after = load_average()
    conditions = dict(conditions)
    mark = conditions.pop("_cpu_mark", None)
    others = (
        None if mark is None else others_cores(mark, busy_cpu_seconds(), own_cpu_seconds(), time.monotonic())
    )
    quiet = (
        conditions["load_average_before"][0] < QUIET_LOAD
        and others is not None
        and others < QUIET_OTHERS_CORES
        and parts_quiet
    )
    return {
        **conditions,
        "load_average_after": after,
        "others_cpu_cores": None if others is None else round(others, 3),
        "quiet": quiet,
    }


def write(
    result: dict[str, Any], path: Path, conditions: dict[str, Any], parts_quiet: bool = True
) -> dict[str, Any]:
    """Add the finished conditions to `result`, write it as JSON to `path`, print it; returns what was written."""
    out = {"conditions": finish(conditions, parts_quiet), **result}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out))
    return out


def interleaved(
    candidates: dict[str, Callable[[], Any]], rounds: int = 3, warmup: bool = True
) -> dict[str, Any]:
    """Time each candidate `rounds` times, in an order that rotates every round; returns per candidate its wall
    times (s), median and minimum. Round r runs the candidates starting at index r mod n."""
    if rounds < 1:
        raise ValueError("rounds must be ≥ 1")
    names = list(candidates)
    if warmup:
        for name in names:
            candidates[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    orders = []
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        orders.append(order)
        for name in order:
            t0 = time.perf_counter()
            candidates[name]()
            times[name].append(time.perf_counter() - t0)
    return {
        "orders": orders,
        "times_s": {n: [round(t, 5) for t in ts] for n, ts in times.items()},
        "median_s": {n: round(statistics.median(ts), 5) for n, ts in times.items()},
        "min_s": {n: round(min(ts), 5) for n, ts in times.items()},
    }


def ratio(timing: dict[str, Any], name: str, baseline: str) -> dict[str, Any]:
    """`name` over `baseline` from an `interleaved` result: ratio of medians, of minima, and per-round ratios."""
    per_round = [a / b for a, b in zip(timing["times_s"][name], timing["times_s"][baseline], strict=True)]
    return {
        "median_ratio": round(timing["median_s"][name] / timing["median_s"][baseline], 4),
        "min_ratio": round(timing["min_s"][name] / timing["min_s"][baseline], 4),
        "per_round": [round(r, 4) for r in per_round],
    }
