"""The results folder: `DIR/<name>.json` (the command's JSON, exactly), `DIR/<name>.error.json` (its one-line error),
files the command wrote under `DIR/<name>/`, and `DIR/summary.json`.

Every file is written under a temporary name and renamed into place, and summary.json is rewritten after each
job: a run killed at any moment leaves only complete results, and a re-run skips the jobs whose result exists,
parses, and (where summary.json knew the job) was computed from the same job definition.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from headscope.batch.execute import Outcome
from headscope.batch.jobs import Job


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


class ResultStore:
    def __init__(self, root: Path, runner: str):
        self.root, self.runner, self.t0 = root, runner, time.perf_counter()
        root.mkdir(parents=True, exist_ok=True)
        prior = _read_json(root / "summary.json")
        jobs = prior.get("jobs") if isinstance(prior, dict) else None
        self.prior: dict[str, Any] = jobs if isinstance(jobs, dict) else {}
        self.entries: dict[str, dict[str, Any]] = {}

    def result_path(self, name: str) -> Path:
        return self.root / f"{name}.json"

    def error_path(self, name: str) -> Path:
        return self.root / f"{name}.error.json"

    def is_done(self, job: Job) -> bool:
        """A valid result of this very job is already there (resume)."""
        if _read_json(self.result_path(job.name)) is None:
            return False
        before = self.prior.get(job.name)
        return not isinstance(before, dict) or before.get("fingerprint") == job.fingerprint

    def skip(self, job: Job) -> None:
        before = self.prior.get(job.name)
        entry = dict(before) if isinstance(before, dict) else {"status": "ok", "fingerprint": job.fingerprint}
        self.entries[job.name] = {**entry, "skipped": True}

    def pending(self, job: Job) -> None:
        """A job this run will compute: a result left from another definition of it is not valid any more."""
        self.result_path(job.name).unlink(missing_ok=True)
        self.entries[job.name] = {"status": "pending", "fingerprint": job.fingerprint, **job.summary_entry()}

    def record(self, job: Job, outcome: Outcome, *, attempts: int, worker: str) -> None:
        entry: dict[str, Any] = {
            "status": "ok" if outcome.ok else "error", "fingerprint": job.fingerprint, **job.summary_entry(),
            "seconds": round(outcome.seconds, 3), "attempts": attempts, "worker": worker, "skipped": False,
        }  # fmt: skip
        if outcome.ok:
            write_atomic(self.result_path(job.name), outcome.stdout)
            self.error_path(job.name).unlink(missing_ok=True)
        else:
            entry["error"] = outcome.error
            error = {
                "name": job.name,
                "error": outcome.error,
                "exit_code": outcome.exit_code,
                "attempts": attempts,
            }
            write_atomic(self.error_path(job.name), json.dumps(error, indent=1))
            self.result_path(job.name).unlink(missing_ok=True)
        self.entries[job.name] = entry
        self.write_summary()

    def summary(self) -> dict[str, Any]:
        statuses = [e["status"] for e in self.entries.values()]
        return {
            "runner": self.runner,
            "n_jobs": len(self.entries),
            "n_ok": statuses.count("ok"),
            "n_error": statuses.count("error"),
            "n_pending": statuses.count("pending"),
            "n_skipped": sum(bool(e.get("skipped")) for e in self.entries.values()),
            "seconds": round(time.perf_counter() - self.t0, 3),
            "jobs": self.entries,
        }

    def write_summary(self) -> dict[str, Any]:
        summary = self.summary()
        write_atomic(self.root / "summary.json", json.dumps(summary, indent=1))
        return summary
