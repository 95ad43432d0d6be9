"""The app's long work on a Ray cluster: where `HEADSCOPE_RAY_ADDRESS` is set, a tab's job runs there.

`RayJobRunner` implements the job protocol (batch/protocol.py: `start(spec, owner=...)` → a `RunningJob` with
`status() / cancel() / wait(timeout) / result()`, the same `JobStatus` and `JobCancelled` as the thread runner).
A job that carries its CLI `command` runs as a batch job on an actor that holds the model: one named actor per
model, reused across jobs and web restarts, which leaves after `HEADSCOPE_RAY_IDLE_S` without a job (its CPU slot
and memory go back to the cluster); a job that finds its actor leaving, or whose actor dies under it, runs once
more on a fresh one. The web process only polls, so it stays responsive. Progress is the command's own progress
bar (every long command draws one on stderr), the result is the command's JSON — what the tab's in-process `work`
returns. Cancel ends a queued job, or ends the actor of a running one (the model is loaded again for the next
job). A job without a command runs on the fallback runner (the app's in-process one).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import threading
import time
from typing import Any

from headscope import errors
from headscope.batch.execute import Outcome
from headscope.batch.protocol import JobCancelled, JobRunner, JobSpec, JobStatus, RunningJob

ADDRESS_ENV = "HEADSCOPE_RAY_ADDRESS"
NAMESPACE = "headscope"
_ids = itertools.count(1)


def cluster_address() -> str | None:
    """The cluster the app hands long work to, or None (then the app runs it in-process)."""
    return os.environ.get(ADDRESS_ENV) or None


_CONNECT_LOCK = threading.Lock()


def ensure_connected(address: str | None = None) -> None:
    """Join the cluster once per process (an address that does not answer: one line, quickly)."""
    import ray

    from headscope.batch.ray_runner import connect

    with _CONNECT_LOCK:
        if not ray.is_initialized():
            connect(address or cluster_address() or "auto", namespace=NAMESPACE)


IDLE_ENV = "HEADSCOPE_RAY_IDLE_S"
DEFAULT_IDLE_S = 1800.0


def idle_seconds() -> float | None:
    """HEADSCOPE_RAY_IDLE_S: how long a model's actor waits for a job before it leaves and frees its CPU slot
    (default 1800; 0 keeps it for good)."""
    raw = os.environ.get(IDLE_ENV, "").strip()
    try:
        value = float(raw) if raw else DEFAULT_IDLE_S
    except ValueError:
        raise errors.InputError(f"{IDLE_ENV} must be a number of seconds, got {raw!r}") from None
    if not value >= 0 or value == float("inf"):
        raise errors.InputError(f"{IDLE_ENV} must be 0 or more seconds, got {raw!r}")
    return value or None


def model_actor(model: str | None) -> Any:
    """The named actor that serves the app's jobs on `model` (created on first use, then found by name; it
    leaves after `idle_seconds()` without a job, and the next job creates it again)."""
    from headscope.batch.commands import command_line
    from headscope.batch.ray_runner import _actor_class

    opts = {"name": f"app-model:{model or 'none'}", "namespace": NAMESPACE, "get_if_exists": True,
            "lifetime": "detached", "max_concurrency": 2, "num_cpus": 1}  # fmt: skip
    return _actor_class().options(**opts).remote(os.getcwd(), command_line(), idle_seconds())


PROGRESS_TIMEOUT_S = 2.0


class ClusterJob:
    def __init__(self, title: str, owner: str, model: str | None, argv: list[str]):
        self.id, self.title, self.owner = f"ray-job-{next(_ids)}", title, owner
        self.model, self.argv, self._t0 = model, argv, time.perf_counter()
        self._stage: tuple[str, float | None] = ("queued", 0.0)
        self._cancelled = self._gone = self._resent = False
        self._send()

    def _send(self) -> None:
        self.actor = model_actor(self.model)
        self.ref = self.actor.run.remote(self.argv, 1)

    def _sent_again(self) -> bool:
        """Once, a job whose actor left (idle: it answers LEFT, or died first) or crashed runs on a fresh one."""
        import ray

        from headscope.batch.ray_runner import LEFT

        if self._resent or self._cancelled:
            return False
        try:
            left = Outcome.from_json(ray.get(self.ref)).error == LEFT
        except ray.exceptions.RayActorError:
            left = True
        except ray.exceptions.RayError:
            left = False
        if left:
            self._resent = True
            self._send()
        return left

    def wait(self, timeout: float | None = None) -> bool:
        """True once the job ended, or once the cluster that ran it is gone (this process left it, or its object
        is no longer known): a board holding an old job must neither hang on it nor start a new cluster."""
        import ray

        if self._cancelled or self._gone:
            return True
        if not ray.is_initialized():  # never let ray.wait auto-start a fresh local cluster for a dead job
            self._gone = True
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                ready, _ = ray.wait([self.ref], timeout=left)
            except Exception:  # e.g. "owner is unknown" for a ref of an earlier session
                self._gone = True
                return True
            if not ready or not self._sent_again():
                return bool(ready)

    def _outcome(self) -> Outcome:
        import ray

        if self._gone:
            return Outcome(False, "", "the cluster that ran this job is gone", 1, 0, "")
        try:
            return Outcome.from_json(ray.get(self.ref))
        except ray.exceptions.RayError as e:
            lines = [ln for ln in str(e).splitlines() if ln.strip()]
            return Outcome(
                False, "", f"the cluster job failed: {lines[-1] if lines else type(e).__name__}", 1, 0, ""
            )

    def status(self) -> JobStatus:
        import ray

        seconds = time.perf_counter() - self._t0
        if self._cancelled:
            return JobStatus("cancelled", self._stage[0], self._stage[1], seconds)
        if self.wait(0):
            state = "done" if self._outcome().ok else "failed"
            return JobStatus(state, self._stage[0], self._stage[1], seconds)
        try:  # a progress probe must never hold the follower: a busy or restarting actor answers next time
            got = ray.get(self.actor.progress.remote(), timeout=PROGRESS_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            got = None
        if got is not None:
            self._stage = got
        return JobStatus("running", self._stage[0], self._stage[1], seconds)

    def cancel(self) -> None:
        import ray

        if self.wait(0):
            return
        self._cancelled = True
        with contextlib.suppress(Exception):  # already started: only ending the actor stops it
            ray.cancel(self.ref)
        ray.kill(self.actor)  # a running job stops only with its process; the next job starts a new actor

    def result(self) -> Any:
        """The command's JSON, or its one-line error raised (the same kind of error as in-process)."""
        if self._cancelled:
            raise JobCancelled(f"cancelled during '{self._stage[0]}'")
        self.wait()
        outcome = self._outcome()
        if not outcome.ok:
            raise (errors.InputError if outcome.exit_code == 2 else errors.HeadscopeError)(
                outcome.error or "failed"
            )
        return json.loads(outcome.stdout)


class RayJobRunner:
    """The "ray" runner: a spec with a `command` runs on the model's actor; one without on `fallback`."""

    def __init__(self, fallback: JobRunner | None = None):
        self.fallback = fallback

    def start(self, spec: JobSpec, *, owner: str) -> RunningJob:
        command = spec.command
        if command is None:
            if self.fallback is None:
                raise errors.HeadscopeError(f"'{spec.title}' has no command to run on the cluster")
            return self.fallback.start(spec, owner=owner)
        ensure_connected()
        argv = [*command, *([] if "--json" in command else ["--json"])]
        if spec.model is not None and "--model" not in argv:  # the job's model, not the CLI's default one
            argv += ["--model", spec.model]
        return ClusterJob(spec.title, owner, spec.model, argv)
