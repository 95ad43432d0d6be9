"""The job vocabulary every runner speaks (in this process, on a thread, or on a Ray cluster).

- `JobSpec`: what to do — `work(report)` here, or its CLI `command` elsewhere (both return the command's JSON);
- `JobRunner.start(spec, owner=...)` → a `RunningJob`: `status()` (a `JobStatus`), `cancel()`, `wait(timeout)`,
  `result()` (the value, or the job's error raised: `JobCancelled`, `InputError`, ...);
- `Reporter`: handed to `work`; it is a `Progress` (`report(stage, fraction)`, see headscope/progress.py) whose
  every call first honours a cancel by raising `JobCancelled`, so Cancel takes effect at the next report.

Nothing here knows about a UI: the app adds its status line and Cancel button on top (app/jobs.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from headscope import progress as _progress
from headscope.errors import HeadscopeError

JobState = Literal["running", "done", "failed", "cancelled"]


class JobCancelled(HeadscopeError):
    """The job was cancelled (its owner's Cancel, the page closing); the message says during which stage."""


class JobBusy(HeadscopeError):
    """This owner already runs a job in this slot."""


class Reporter:
    """A job's `Progress`: `report("stage", 0.4)` records the stage; each call first raises if cancelled."""

    def __init__(
        self, cancelled: threading.Event, on_update: Callable[[str, float | None], None] | None = None
    ):
        self._cancelled = cancelled
        self._on_update = on_update
        self.stage = "starting"

    def __call__(self, stage: str, fraction: float | None = None) -> None:
        self.check()
        self.stage = stage
        if self._on_update is not None:
            self._on_update(stage, None if fraction is None else min(1.0, max(0.0, float(fraction))))

    def check(self) -> None:
        """Raise `JobCancelled` if the job was cancelled (call between steps that do not report)."""
        if self._cancelled.is_set():
            raise JobCancelled(f"cancelled during '{self.stage}'")

    def steps(self, stage: str, lo: float = 0.0, hi: float = 1.0) -> _progress.StepCounter:
        """`progress.steps` on this reporter: `tick(done, total)` → `"<stage> done/total"` at lo..hi."""
        return _progress.steps(self, stage, lo, hi)

    def stages(self, lo: float = 0.0, hi: float = 1.0) -> _progress.Progress:
        """`progress.part` on this reporter: a sub-call's `(stage, fraction)` mapped into lo..hi."""
        return _progress.part(self, lo, hi)


@dataclass(frozen=True)
class JobSpec:
    """One job. `work(report)` does it in this process and returns the CLI's JSON for the same job; a runner
    elsewhere runs `command` (what follows `headscope`; `--json` implied) as a batch job and returns the same
    JSON. A job without a command runs in-process only. `model`: the catalog name the job runs on (a command
    without `--model` gets it)."""

    title: str
    work: Callable[[Reporter], Any]
    model: str | None = None
    command: tuple[str, ...] | None = None


@dataclass(frozen=True)
class JobStatus:
    state: JobState
    stage: str
    frac: float | None
    seconds: float


class RunningJob(Protocol):
    """A started job, whichever runner started it."""

    @property
    def id(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def owner(self) -> str: ...

    def status(self) -> JobStatus: ...
    def cancel(self) -> None: ...
    def wait(self, timeout: float | None = None) -> bool: ...  # True once the job has ended
    def result(self) -> Any: ...  # its value, or its error (JobCancelled, InputError, ...) raised


class JobRunner(Protocol):
    def start(self, spec: JobSpec, *, owner: str) -> RunningJob: ...
