"""Long work for every tab: staged progress, a Cancel that really stops the job (and frees the model), and cheap
views that keep answering meanwhile.

How a long job stays out of everyone's way:
- it runs in its own worker (a thread here; the "batch" runner may run it elsewhere) while the event handler only
  relays its progress to the page (`follow`);
- capability code reports stages through the `Reporter` it is handed — `report(stage, frac)` or the
  `report.steps(stage, lo, hi)` adapter for `(done, total)` callbacks — and every report first checks the cancel
  flag, raising `JobCancelled`, so Cancel takes effect at the next step;
- it calls `handle.run` per step and never holds `handle.exclusive()` across steps, so the handle's lock (one
  forward at a time, hooked runs never interleave) hands the model to other visitors' views between two steps;
- events start jobs in the `JOB_EVENT` concurrency group and views run in `VIEW_EVENT` (state.py), so a view never
  waits in the queue behind a job.

A tab uses `run(spec, request=..., slot=..., progress=...)` in its handler and `JobControls` for the status line
and the Cancel button (see README.md). `Runner` is the interface a different backend implements (`RUNNERS`,
chosen by `runner()`; HEADSCOPE_RAY_ADDRESS selects "ray" once the batch package registers it).
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import gradio as gr

from headscope.errors import HeadscopeError
from headscope.registry import Registry

JobState = Literal["running", "done", "failed", "cancelled"]
POLL_S = 0.2


class JobCancelled(HeadscopeError):
    """The job was cancelled (by its owner's Cancel button or the page closing); its message says where."""


class JobBusy(HeadscopeError):
    """This visitor already runs a job in this slot."""


class Reporter:
    """Handed to a job's work: `report("stage", 0.4)` shows a stage; each call first honours a cancel."""

    def __init__(self, cancelled: threading.Event, on_update: Callable[[str, float | None], None]):
        self._cancelled = cancelled
        self._on_update = on_update
        self.stage = "starting"

    def __call__(self, stage: str, frac: float | None = None) -> None:
        self.check()
        self.stage = stage
        self._on_update(stage, None if frac is None else min(1.0, max(0.0, float(frac))))

    def check(self) -> None:
        """Raise `JobCancelled` if the job was cancelled (call between steps that do not report)."""
        if self._cancelled.is_set():
            raise JobCancelled(f"cancelled during '{self.stage}'")

    def steps(self, stage: str, lo: float = 0.0, hi: float = 1.0) -> Callable[[int, int], None]:
        """An adapter for capability callbacks of the form `progress(done, total)`: frac runs from lo to hi."""

        def tick(done: int, total: int) -> None:
            self(f"{stage} {done}/{total}", lo + (hi - lo) * done / max(total, 1))

        return tick

    def stages(self, lo: float = 0.0, hi: float = 1.0) -> Callable[[str, float], None]:
        """An adapter for callbacks of the form `progress(stage, frac)` (frac in [0, 1] of this part)."""
        return lambda stage, frac: self(stage, lo + (hi - lo) * frac)


@dataclass(frozen=True)
class JobSpec:
    """One long job. `work(report)` does it here and returns what the handler builds its views from — by
    convention the CLI's JSON for the same job, so a runner that executes `command` elsewhere (`headscope
    <command...> --json` as a batch job) returns the same thing. `model`: the catalog name the job runs on."""

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


class Job(Protocol):
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


class Runner(Protocol):
    def start(self, spec: JobSpec, *, owner: str) -> Job: ...


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

    def start(self, spec: JobSpec, *, owner: str) -> Job:
        job = ThreadJob(spec, owner)
        threading.Thread(target=job._main, name=f"headscope-{job.id}", daemon=True).start()
        return job


RUNNERS: Registry[Callable[[], Runner]] = Registry("job runner")
RUNNERS.add("thread", ThreadRunner)


def _ray_runner() -> Runner:
    # Jobs that carry their CLI command run on the cluster; the others here (headscope/batch/cluster.py).
    from headscope.batch.cluster import RayJobRunner

    return RayJobRunner(fallback=ThreadRunner())


RUNNERS.add("ray", _ray_runner)
_runner: Runner | None = None
_runner_lock = threading.Lock()


def runner() -> Runner:
    """The app's runner: "ray" when HEADSCOPE_RAY_ADDRESS is set (and registered), else "thread"."""
    global _runner
    with _runner_lock:
        if _runner is None:
            name = "ray" if os.environ.get("HEADSCOPE_RAY_ADDRESS") and "ray" in RUNNERS else "thread"
            _runner = RUNNERS[name]()
        return _runner


@contextmanager
def using_runner(r: Runner) -> Iterator[Runner]:
    """Swap the app's runner for the length of a block (tests, benchmarks)."""
    global _runner
    with _runner_lock:
        before, _runner = _runner, r
    try:
        yield r
    finally:
        with _runner_lock:
            _runner = before


class JobBoard:
    """The running jobs by (owner, slot), found again by that visitor's Cancel. A slot holds one job at a time
    (`single`, the default for long jobs) or any number (views a visitor may fire several of at once)."""

    def __init__(self) -> None:
        self._jobs: dict[tuple[str, str], list[Job]] = {}
        self._lock = threading.Lock()

    def start(self, spec: JobSpec, *, owner: str, slot: str, single: bool = True) -> Job:
        with self._lock:
            live = [j for j in self._jobs.get((owner, slot), []) if not j.wait(0)]
            if single and live:
                raise JobBusy(f"'{live[0].title}' is still running here: wait for it or cancel it first")
            job = runner().start(spec, owner=owner)
            self._jobs[(owner, slot)] = [*live, job]
            return job

    def cancel(self, owner: str, slot: str | None = None) -> list[Job]:
        """Cancel the owner's running jobs in `slot` (every slot when None); returns the jobs told to stop."""
        with self._lock:
            hits = [j for (o, s), js in self._jobs.items() if o == owner and slot in (None, s) for j in js]
        live = [j for j in hits if not j.wait(0)]
        for job in live:
            job.cancel()
        return live

    def running(self) -> list[Job]:
        with self._lock:
            return [j for js in self._jobs.values() for j in js if not j.wait(0)]

    def forget_finished(self) -> None:
        with self._lock:
            kept = {k: [j for j in js if not j.wait(0)] for k, js in self._jobs.items()}
            self._jobs = {k: js for k, js in kept.items() if js}


BOARD = JobBoard()


def owner_of(request: gr.Request | None) -> str:
    """A visitor's identity for jobs: the browser session (gradio_client callers have one too)."""
    return str(getattr(request, "session_hash", None) or "direct")


def follow(job: Job, progress: Callable[..., Any] | None = None, poll_s: float = POLL_S) -> Any:
    """Relay the job's stages to gradio's progress until it ends; then its result (or its error, raised)."""
    shown: tuple[str, float | None] | None = None
    while not job.wait(poll_s):
        st = job.status()
        if progress is not None and (st.stage, st.frac) != shown:
            shown = (st.stage, st.frac)
            progress(st.frac, desc=f"{job.title}: {st.stage}")
    return job.result()


def run(
    spec: JobSpec,
    *,
    request: gr.Request | None,
    slot: str,
    progress: Callable[..., Any] | None = None,
    single: bool = True,
) -> Any:
    """Start `spec` for the visitor behind `request` and follow it to the end (the body of a job handler).
    `single=False` lets one visitor run several at once in the slot (views; Cancel stops them all)."""
    BOARD.forget_finished()
    job = BOARD.start(spec, owner=owner_of(request), slot=slot, single=single)
    return follow(job, progress)


def cancel(slot: str | None, request: gr.Request | None, wait_s: float = 10.0) -> str:
    """The Cancel button's handler: stop this visitor's job in `slot` (all of theirs when None) and wait (a
    little) until it has really stopped, so the line it returns tells the truth."""
    stopped = BOARD.cancel(owner_of(request), slot)
    if not stopped:
        return "nothing is running here"
    deadline = time.monotonic() + wait_s
    lines = []
    for job in stopped:
        ended = job.wait(max(0.0, deadline - time.monotonic()))
        st = job.status()
        lines.append(
            f"cancelled '{job.title}' during '{st.stage}'; the model is free"
            if ended
            else f"cancelling '{job.title}': it stops at the end of its current step ('{st.stage}')"
        )
    return "\n\n".join(lines)


@dataclass(frozen=True)
class JobControls:
    """A status line (where the job's progress bar is drawn: pass it as `show_progress_on`) and a Cancel button
    wired to this visitor's job in `slot`."""

    slot: str
    status: gr.Markdown
    cancel: gr.Button

    @classmethod
    def build(cls, slot: str, idle: str = "") -> JobControls:
        with gr.Row(equal_height=True):
            status = gr.Markdown(
                idle, elem_classes=["hs-job-status"], min_height=40, elem_id=f"hs-status-{slot}"
            )
            stop = gr.Button(
                "Cancel", variant="stop", size="sm", scale=0, min_width=90, elem_id=f"hs-cancel-{slot}"
            )

        def on_cancel(request: gr.Request) -> str:
            return cancel(slot, request)

        # Not queued: a Cancel must never wait behind the work it cancels.
        stop.click(on_cancel, inputs=None, outputs=[status], api_name=f"{slot}_cancel", queue=False)
        return cls(slot, status, stop)
