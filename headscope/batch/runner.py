"""Run a list of jobs into a results folder: resume, progress bar over jobs, the in-process runner.

A runner gets the jobs still to do and a `done(job, outcome, attempts, worker)` callback that records each result
as soon as it exists; `run_batch` does the rest (skipping finished jobs, the progress bar, summary.json).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from headscope.batch.execute import Outcome, execute
from headscope.batch.jobs import Job
from headscope.batch.store import ResultStore

Done = Callable[[Job, Outcome, int, str], None]  # job, outcome, attempts, worker


class Runner(Protocol):
    name: str

    def run(self, jobs: Sequence[Job], done: Done) -> None: ...


class InProcessRunner:
    """One job after another in this process; models loaded by one job are reused by the next."""

    name = "in-process"

    def __init__(self) -> None:
        self.handles: dict[Any, Any] = {}

    def run(self, jobs: Sequence[Job], done: Done) -> None:
        for job in jobs:
            done(job, execute(job.argv, threads=job.threads, handles=self.handles), 1, self.name)


def run_batch(jobs: Sequence[Job], out_dir: Path, runner: Runner, *, progress: bool = True) -> dict[str, Any]:
    """Run what is not done yet; returns the summary (also in `out_dir/summary.json`)."""
    from tqdm import tqdm

    store = ResultStore(out_dir, runner.name)
    todo = []
    for job in jobs:
        if store.is_done(job):
            store.skip(job)
        else:
            store.pending(job)
            todo.append(job)
    store.write_summary()
    skipped = len(jobs) - len(todo)
    with tqdm(total=len(jobs), initial=skipped, desc="batch", unit="job", file=sys.stderr,
              disable=not progress) as bar:  # fmt: skip

        def done(job: Job, outcome: Outcome, attempts: int, worker: str) -> None:
            store.record(job, outcome, attempts=attempts, worker=worker)
            bar.update(1)

        if todo:
            runner.run(todo, done)
    return store.write_summary()
