"""Long app work on a Ray cluster: submit a run, poll its progress, collect its result.

Where `HEADSCOPE_RAY_ADDRESS` is set, the web process hands a long run (a circuit search, a λ sweep) to an actor
that holds the model (one named actor per model and device, reused across runs and web restarts), and polls it, so
the web process stays responsive. The work is a picklable function `fn(handle, report, *args, **kwargs)`, where
`report(stage, fraction)` publishes progress; `ClusterRun.status()` reads it, `wait(on_progress)` polls until the
result. A `HeadscopeError` inside the run comes back as the same kind of error with its one line.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from headscope import errors

ADDRESS_ENV = "HEADSCOPE_RAY_ADDRESS"
NAMESPACE = "headscope"
Work = Callable[..., Any]  # fn(handle, report, *args, **kwargs)


def cluster_address() -> str | None:
    """The cluster the app hands long work to, or None (then the app runs it in-process)."""
    return os.environ.get(ADDRESS_ENV) or None


@dataclass(frozen=True)
class _Failed:
    kind: str
    message: str


class ModelWorker:
    """Ray actor (threaded, so `progress` answers while `run` works): one model, many runs."""

    def __init__(self, model_id: str, device: str | None):
        self.model_id, self.device = model_id, device
        self.handle: Any = None
        self.progress_of: dict[str, tuple[str, float]] = {}
        self.lock = threading.Lock()

    def _model(self) -> Any:
        from headscope.models import ModelHandle

        with self.lock:
            if self.handle is None:
                self.handle = ModelHandle.load(self.model_id, device=self.device)
            return self.handle

    def run(self, run_id: str, fn: Work, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        def report(stage: str, fraction: float) -> None:
            self.progress_of[run_id] = (str(stage), float(fraction))

        report("loading model", 0.0)
        try:
            return fn(self._model(), report, *args, **kwargs)
        except errors.HeadscopeError as e:
            return _Failed(type(e).__name__, str(e).splitlines()[0] if str(e) else type(e).__name__)
        finally:
            self.progress_of.pop(run_id, None)

    def progress(self, run_id: str) -> tuple[str, float] | None:
        return self.progress_of.get(run_id)


@dataclass(frozen=True)
class RunStatus:
    state: str  # "running" | "done" | "failed"
    stage: str
    fraction: float
    result: Any = None
    error: str | None = None
    error_kind: str = "HeadscopeError"  # the headscope.errors class the run raised


def _raise(failed: _Failed) -> NoReturn:
    kind = getattr(errors, failed.kind, None)
    cls = (
        kind if isinstance(kind, type) and issubclass(kind, errors.HeadscopeError) else errors.HeadscopeError
    )
    raise cls(failed.message)


class ClusterRun:
    def __init__(self, worker: Any, ref: Any, run_id: str):
        self.worker, self.ref, self.run_id = worker, ref, run_id
        self._last: tuple[str, float] = ("queued", 0.0)

    def status(self) -> RunStatus:
        import ray

        ready, _ = ray.wait([self.ref], timeout=0)
        if ready:
            try:
                result = ray.get(self.ref)
            except ray.exceptions.RayError as e:
                return RunStatus(
                    "failed", self._last[0], self._last[1], error=f"cluster run failed: {_line(e)}"
                )
            if isinstance(result, _Failed):
                return RunStatus(
                    "failed", self._last[0], self._last[1], error=result.message, error_kind=result.kind
                )
            return RunStatus("done", "done", 1.0, result=result)
        got = ray.get(self.worker.progress.remote(self.run_id))
        self._last = got or self._last
        return RunStatus("running", self._last[0], self._last[1])

    def wait(self, on_progress: Callable[[str, float], None] | None = None, poll_s: float = 0.5) -> Any:
        """Poll until the run ends; its result, or its error raised here (one line)."""
        import ray

        while True:
            status = self.status()
            if status.state == "running":
                if on_progress is not None:
                    on_progress(status.stage, status.fraction)
                ray.wait([self.ref], timeout=poll_s)
                continue
            if status.state == "done":
                return status.result
            _raise(_Failed(status.error_kind, status.error or "the cluster run failed"))

    def cancel(self) -> None:
        import ray

        ray.cancel(self.ref)


def _line(e: BaseException) -> str:
    lines = [ln for ln in str(e).splitlines() if ln.strip()]
    return lines[-1] if lines else type(e).__name__


_CONNECT_LOCK = threading.Lock()


def ensure_connected(address: str | None = None) -> None:
    """Join the cluster once per process (a dead address: one line, quickly)."""
    import ray

    from headscope.batch.ray_runner import connect

    with _CONNECT_LOCK:
        if not ray.is_initialized():
            connect(address or cluster_address() or "auto", namespace=NAMESPACE)


def submit(fn: Work, model_id: str, *args: Any, device: str | None = None, **kwargs: Any) -> ClusterRun:
    """Run `fn(handle, report, *args, **kwargs)` on the cluster's actor for `model_id`."""
    import ray

    ensure_connected()
    actor = ray.remote(ModelWorker).options(
        name=f"model:{model_id}:{device or 'default'}", namespace=NAMESPACE, get_if_exists=True,
        max_concurrency=4, lifetime="detached",
    )  # fmt: skip
    worker = actor.remote(model_id, device)
    run_id = uuid.uuid4().hex
    return ClusterRun(worker, worker.run.remote(run_id, fn, args, kwargs), run_id)
