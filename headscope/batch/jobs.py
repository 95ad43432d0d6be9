"""Job files: read, check every job against the CLI's own parser before any work, and plan where outputs go.

A job file is JSON: a list of jobs, or `{"jobs": [...]}`. A job is
`{"name": "ioi_s0", "args": ["circuits", "run", "--task", "ioi", "--model", "tiny-llama"], "num_cpus": 1,
"num_gpus": 0, "threads": 1}`: `args` is what follows `headscope` (`--json` is implied), `num_cpus`/`num_gpus` are
what a Ray worker for it reserves, `threads` is torch's thread count for the job (default: `num_cpus`, at least 1),
set the same way in-process and on Ray. Files a command writes (its `--out`, `--work` or `--out-*` options) go under
`DIR/<name>/`: given paths keep their last component; an output option with a default path gets that default there.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headscope.batch.commands import command_line
from headscope.errors import InputError
from headscope.files import read_json

NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
REFUSED = ("serve", "batch")  # a server never finishes; a batch inside a batch has no single result
JOB_KEYS = {"name", "args", "num_cpus", "num_gpus", "threads"}
MAX_JOBS = 10_000
MAX_JOB_FILE_BYTES = 16 * 1024 * 1024
MAX_THREADS = 256


@dataclass(frozen=True)
class Job:
    name: str
    args: tuple[str, ...]  # as written in the job file
    argv: tuple[str, ...]  # what runs: --json added, output options moved under DIR/<name>/
    num_cpus: float
    num_gpus: float
    threads: int
    model: str | None  # the model the command loads (groups jobs onto the same Ray actors)

    @property
    def fingerprint(self) -> str:
        """Changes when what the job computes changes (not when DIR moves): a resumed run reruns edited jobs."""
        raw = json.dumps([self.args, self.num_cpus, self.num_gpus, self.threads])
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    def summary_entry(self) -> dict[str, Any]:
        """What summary.json records of the job (what ran, with what resources)."""
        return {"args": list(self.argv), "num_cpus": self.num_cpus, "num_gpus": self.num_gpus,
                "threads": self.threads}  # fmt: skip


def _subparsers(p: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in p._actions if isinstance(a, argparse._SubParsersAction)), None)


def command_parser(parser: argparse.ArgumentParser, args: list[str]) -> argparse.ArgumentParser:
    """The parser of the command `args` names (descending through sub-commands)."""
    p, rest = parser, args
    while (sub := _subparsers(p)) is not None:
        i = next((i for i, a in enumerate(rest) if a in sub.choices), None)
        if i is None:
            break
        p, rest = sub.choices[rest[i]], rest[i + 1 :]
    return p


def _is_output(action: argparse.Action) -> bool:
    return any(s in ("--out", "--work") or s.startswith("--out-") for s in action.option_strings)


def rewrite_outputs(parser: argparse.ArgumentParser, args: list[str], folder: Path) -> list[str]:
    """`args` with every output option pointing into `folder` (defaults included, None defaults left alone)."""
    out = list(args)
    for action in filter(_is_output, command_parser(parser, args)._actions):
        hit = False
        for i, a in enumerate(out):
            for opt in action.option_strings:
                if a == opt and i + 1 < len(out):
                    out[i + 1], hit = str(folder / Path(out[i + 1]).name), True
                elif a.startswith(opt + "="):
                    out[i], hit = f"{opt}={folder / Path(a[len(opt) + 1 :]).name}", True
        if not hit and isinstance(action.default, str):
            out += [action.option_strings[0], str(folder / Path(action.default).name)]
    return out


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """The CLI's own parse, its one-line usage error turned into an InputError (nothing printed)."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            return parser.parse_args(argv)
    except SystemExit:
        lines = [ln for ln in err.getvalue().splitlines() if ln.strip()]
        raise InputError(lines[-1].removeprefix("headscope: error: ") if lines else "asks for help") from None


def _number(job: dict[str, Any], key: str, default: float, lo: float) -> float:
    v = job.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < lo:
        raise InputError(f"{key} must be a number ≥ {lo:g}, got {v!r}")
    return float(v)


def _threads(job: dict[str, Any], num_cpus: float) -> int:
    v = job.get("threads", max(1, math.ceil(num_cpus)))
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_THREADS:
        raise InputError(f"threads must be an integer in [1, {MAX_THREADS}], got {v!r}")
    return v


def _job(parser: argparse.ArgumentParser, raw: Any, out_dir: Path) -> Job:
    if not isinstance(raw, dict):
        raise InputError("a job is an object {name, args}")
    unknown = sorted(set(raw) - JOB_KEYS)
    if unknown:
        raise InputError(f"unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(JOB_KEYS))})")
    args = raw.get("args")
    if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
        raise InputError("args must be a non-empty list of strings (what follows `headscope`)")
    commands = _subparsers(parser)
    assert commands is not None
    if args[0] in REFUSED:
        raise InputError(f"`{args[0]}` cannot run as a batch job")
    if args[0] not in commands.choices:
        known = ", ".join(c for c in commands.choices if c not in REFUSED)
        raise InputError(f"unknown command {args[0]!r} (known: {known})")
    if any(a in ("-h", "--help") for a in args):
        raise InputError("args ask for help; give a command to run")
    argv = rewrite_outputs(parser, [*args, *([] if "--json" in args else ["--json"])], out_dir / raw["name"])
    ns = _parse(parser, argv)
    num_cpus = _number(raw, "num_cpus", 1, 0)
    model = getattr(ns, "model", None)
    return Job(raw["name"], tuple(args), tuple(argv), num_cpus, _number(raw, "num_gpus", 0, 0),
               _threads(raw, num_cpus), model if isinstance(model, str) else None)  # fmt: skip


def _name(raw: Any, index: int, seen: set[str]) -> str:
    name = raw.get("name") if isinstance(raw, dict) else None
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or name in (".", ".."):
        raise InputError(f"job {index}: name must match [A-Za-z0-9_.-]+, got {name!r}")
    if name in seen:
        raise InputError(f"job {index}: the name {name!r} is used twice")
    if name == "summary":
        raise InputError(f"job {index}: the name 'summary' is reserved for summary.json")
    seen.add(name)
    return name


def parse_jobs(data: Any, out_dir: Path, *, where: str = "job file") -> list[Job]:
    """Every job checked (names, keys, the command's own argument parsing) before any runs: one line if not."""
    items = data.get("jobs") if isinstance(data, dict) and set(data) == {"jobs"} else data
    if not isinstance(items, list) or not items:
        raise InputError(f'{where}: expected a non-empty list of jobs, or {{"jobs": [...]}}')
    if len(items) > MAX_JOBS:
        raise InputError(f"{where}: {len(items)} jobs; the limit is {MAX_JOBS}")
    parser, seen, jobs = command_line().parser(), set[str](), []
    for i, raw in enumerate(items):
        name = _name(raw, i, seen)
        try:
            jobs.append(_job(parser, raw, out_dir.resolve()))
        except InputError as e:
            raise InputError(f"{where}: job {name!r}: {e}") from None
    return jobs


def read_jobs(path: str | Path, out_dir: Path) -> list[Job]:
    data = read_json(path, "job", limit=MAX_JOB_FILE_BYTES)
    return parse_jobs(data, out_dir, where=f"job file {path}")
