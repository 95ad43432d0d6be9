"""Run one job in this process exactly as `headscope <argv>` would, and capture the JSON it prints.

The same function runs a job in-process and inside a Ray actor, so both give the same answer: each job starts
from the RNG state of a fresh process, with the job's own torch thread count, and (within one worker) reuses the
model handles earlier jobs loaded (`models.handle.shared_handles`) instead of loading them again.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from headscope.batch.commands import command_line
from headscope.codec import JsonCodec

# torch's default seed in a fresh process: a job sees the RNG state it would see when run alone from the shell.
FRESH_TORCH_SEED = 67280421310721
FRESH_PY_SEED = 0  # Python's and numpy's RNGs are seeded from the OS in a fresh process: pin them instead


@dataclass(frozen=True)
class Outcome(JsonCodec):
    ok: bool
    stdout: str  # the command's JSON, exactly as printed
    error: str | None  # the one-line error when not ok
    exit_code: int
    seconds: float
    stderr_tail: str


@contextlib.contextmanager
def job_threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fresh_rng() -> None:
    torch.manual_seed(FRESH_TORCH_SEED)
    random.seed(FRESH_PY_SEED)
    np.random.seed(FRESH_PY_SEED)


def _error_line(stdout: str, stderr: str, code: int) -> str:
    try:
        payload = json.loads(stdout)
        if isinstance(payload, dict) and isinstance(payload.get("error"), str):
            return payload["error"]
    except ValueError:
        pass
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    return lines[-1] if lines else f"exit code {code}"


def execute(
    argv: list[str] | tuple[str, ...],
    *,
    threads: int,
    handles: dict[Any, Any],
    stderr: io.StringIO | None = None,
) -> Outcome:
    """Run `headscope <argv>` here; `handles` is the worker's store of loaded models, shared across its jobs.
    `stderr` receives the command's progress bar while it runs (a worker reads its progress from there)."""
    from headscope.models.handle import shared_handles

    main = command_line().main
    out, err = io.StringIO(), stderr if stderr is not None else io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), job_threads(threads):
        fresh_rng()
        with shared_handles(handles):
            try:
                code = main(list(argv))
            except SystemExit as e:  # argparse; the job file was checked, so only a bug gets here
                code = e.code if isinstance(e.code, int) else 2
    if code == 130:
        raise KeyboardInterrupt
    seconds = time.perf_counter() - t0
    stdout, err_text = out.getvalue(), err.getvalue()
    tail = "\n".join(err_text.splitlines()[-5:])
    if code == 0:
        try:
            json.loads(stdout)
            return Outcome(True, stdout, None, 0, seconds, tail)
        except ValueError:
            return Outcome(False, "", "the command printed no JSON result", 1, seconds, tail)
    return Outcome(False, "", _error_line(stdout, err_text, code), code, seconds, tail)


# Wall-clock fields commands report (decode's wall_s / tokens_per_second, circuits' runtime_s, load times):
# the only parts of a deterministic job's result that differ between two runs.
TIMING_KEYS = re.compile(r"(^|_)(wall|seconds?|runtime|ms)($|_)|_s$")


def without_timings(payload: Any) -> Any:
    """A result with its wall-clock fields removed: what must be identical across runners."""
    if isinstance(payload, dict):
        return {k: without_timings(v) for k, v in payload.items() if not TIMING_KEYS.search(k)}
    if isinstance(payload, list):
        return [without_timings(v) for v in payload]
    return payload


_BAR = re.compile(r"(?:^|[\r\n])([^\r\n:]*):\s*(\d+)%\|[^\r\n]*$")


def bar_progress(stderr_text: str) -> tuple[str, float] | None:
    """The stage and fraction of the last progress bar a command drew on stderr (every long command draws one)."""
    m = _BAR.search(stderr_text.rstrip("\r\n"))
    return (m.group(1).strip() or "running", int(m.group(2)) / 100) if m else None
