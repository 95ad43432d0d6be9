"""Starting jobs: the in-process runner (a daemon thread per job), the runner registry, and the board of running
jobs by (owner, slot) that a Cancel finds them on.

`runner()` is the process's runner: "ray" (batch/cluster.py: jobs that carry a command go to the cluster) when
HEADSCOPE_RAY_ADDRESS is set, else "thread". A long job calls `handle.run` per step and never holds
`handle.exclusive()` across steps, so other callers get the model between two of its steps.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from headscope.batch.protocol import (
    JobBusy,
    JobCancelled,
    JobRunner,
    JobSpec,
    JobState,
    JobStatus,
    Reporter,
    RunningJob,
)
from headscope.registry import Registry

_ids = itertools.count(1)


@dataclass(eq=False)
class ThreadJob:
    """A job on a daemon thread of this process."""

    spec: JobSpec
    owner: str
    id: str = field(default_factory=lambda: f"job-{next(_ids)}")
    _cancelled: threading.Event = field(default_factory=threading.Event)
    _done: threading.Event = field(default_factory=threading.Event)
    _stage: tuple[str, float | None] = ("queued", 0.0)
    _value: Any = None
    _error: BaseException | None = None
    _t0: float = field(default_factory=time.perf_counter)

    @property
    def title(self) -> str:
        return self.spec.title

    def _set(self, stage: str, frac: float | None) -> None:
        self._stage = (stage, frac)

    def _main(self) -> None:
        reporter = Reporter(self._cancelled, self._set)
        try:
            reporter("starting", 0.0)
            self._value = self.spec.work(reporter)
        except BaseException as e:  # handed to whoever waits on result(); never lost in the thread
            self._error = e
        finally:
            self._done.set()

    def status(self) -> JobStatus:
        stage, frac = self._stage
        if not self._done.is_set():
            state: JobState = "running"
        elif isinstance(self._error, JobCancelled):
            state = "cancelled"
        else:
            state = "failed" if self._error is not None else "done"
        return JobStatus(state, stage, frac, time.perf_counter() - self._t0)

    def cancel(self) -> None:
        self._cancelled.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def result(self) -> Any:
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value


class ThreadRunner:
    """Runs each job on its own daemon thread in this process (the default)."""

    def start(self, spec: JobSpec, *, owner: str) -> RunningJob:
        job = ThreadJob(spec, owner)
        threading.Thread(target=job._main, name=f"headscope-{job.id}", daemon=True).start()
        return job


def _ray_runner() -> JobRunner:
    # Jobs that carry their CLI command run on the cluster; the others here.
    from headscope.batch.cluster import RayJobRunner

    return RayJobRunner(fallback=ThreadRunner())


RUNNERS: Registry[Callable[[], JobRunner]] = Registry("job runner")
RUNNERS.add("thread", ThreadRunner)
RUNNERS.add("ray", _ray_runner)
_runner: JobRunner | None = None
_runner_lock = threading.Lock()


def runner() -> JobRunner:
    """This process's runner: "ray" when HEADSCOPE_RAY_ADDRESS is set, else "thread"."""
    global _runner
    with _runner_lock:
        if _runner is None:
            _runner = RUNNERS["ray" if os.environ.get("HEADSCOPE_RAY_ADDRESS") else "thread"]()
        return _runner


@contextmanager
def using_runner(r: JobRunner) -> Iterator[JobRunner]:
    """Swap the process's runner for the length of a block (tests, benchmarks)."""
    global _runner
    with _runner_lock:
        before, _runner = _runner, r
    try:
        yield r
    finally:
        with _runner_lock:
            _runner = before


class JobBoard:
    """The running jobs by (owner, slot), found again by that owner's Cancel. A slot holds one job at a time
    (`single`, the default for long jobs) or any number (views a visitor may fire several of at once)."""

    def __init__(self) -> None:
        self._jobs: dict[tuple[str, str], list[RunningJob]] = {}
        self._lock = threading.Lock()

    def start(self, spec: JobSpec, *, owner: str, slot: str, single: bool = True) -> RunningJob:
        with self._lock:
            live = [j for j in self._jobs.get((owner, slot), []) if not j.wait(0)]
            if single and live:
                raise JobBusy(f"'{live[0].title}' is still running here: wait for it or cancel it first")
            job = runner().start(spec, owner=owner)
            self._jobs[(owner, slot)] = [*live, job]
            return job

    def cancel(self, owner: str, slot: str | None = None) -> list[RunningJob]:
        """Cancel the owner's running jobs in `slot` (every slot when None); returns the jobs told to stop."""
        with self._lock:
            hits = [j for (o, s), js in self._jobs.items() if o == owner and slot in (None, s) for j in js]
        live = [j for j in hits if not j.wait(0)]
        for job in live:
            job.cancel()
        return live

    def running(self) -> list[RunningJob]:
        with self._lock:
            return [j for js in self._jobs.values() for j in js if not j.wait(0)]

    def forget_finished(self) -> None:
        with self._lock:
            kept = {k: [j for j in js if not j.wait(0)] for k, js in self._jobs.items()}
            self._jobs = {k: js for k, js in kept.items() if js}


BOARD = JobBoard()
