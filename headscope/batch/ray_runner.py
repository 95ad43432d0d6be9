"""Jobs on Ray: one actor per model replica, which loads its model once and serves many jobs.

Jobs are grouped by (model, num_cpus, num_gpus); each group gets up to `max_replicas` actors (default 1: a replica
costs a process start and a model load, so more of them pay off only for long queues), created only while
the resources free when the batch started have room for them (an actor reserves its job's `num_cpus`/`num_gpus` for
its lifetime; what other actors hold is not counted on), and an actor is ended as soon as its group has no queued
job, so the next group's actors can start. Each actor has one job in flight, so a worker that dies loses at most
that job, which is queued again once (`attempts` = 2 in summary.json); a second death records the job as failed.
Results come back to the driver, which writes every file of the results folder itself, so a killed worker never
leaves a partial result.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from headscope.batch.commands import CommandLine, command_line, register_command_line
from headscope.batch.execute import Outcome, bar_progress, execute
from headscope.batch.jobs import Job
from headscope.batch.runner import Done
from headscope.errors import InputError

MAX_ATTEMPTS = 2  # the first run and one retry after a worker died
PROBE_TIMEOUT_S = 3.0
LEFT = "the worker left after idling"  # what `run` answers once its actor is leaving: send the job again


class IdleClock:
    """When an actor that serves the app may leave: once it has had no job for `idle_s` seconds. `leaving` and
    `claim` take the same lock, so a job is either claimed before the actor decides to leave (then it stays
    for another `idle_s`) or refused after (then the caller sends it to a fresh actor)."""

    def __init__(self, idle_s: float, clock: Callable[[], float] = time.monotonic):
        self.idle_s, self.clock = idle_s, clock
        self.last, self.busy, self.left = clock(), 0, False
        self.lock = threading.Lock()

    def claim(self) -> bool:
        """A job begins (False: too late, the actor is leaving)."""
        with self.lock:
            if self.left:
                return False
            self.busy, self.last = self.busy + 1, self.clock()
            return True

    def release(self) -> None:
        with self.lock:
            self.busy, self.last = self.busy - 1, self.clock()

    def leaving(self) -> bool:
        """True once idle for `idle_s` (and from then on every `claim` is refused)."""
        with self.lock:
            if not self.left and not self.busy and self.clock() - self.last >= self.idle_s:
                self.left = True
            return self.left


def _leave() -> None:
    """End this actor for good (its CPU slot and name are freed); a process exit if Ray cannot say so."""
    import ray

    try:
        ray.kill(ray.get_runtime_context().current_actor, no_restart=True)
    except Exception:
        os._exit(0)


class BatchWorker:
    """The Ray actor (made remote in `_actor_class`): one process, its loaded models, jobs one at a time. With
    `idle_s` (the app's per-model actors) it leaves by itself after that long without a job, so a cluster gets
    back the CPU slot and memory of a model nobody uses any more."""

    def __init__(self, cwd: str, line: CommandLine, idle_s: float | None = None):
        os.chdir(cwd)  # relative input paths in job args mean what they mean for the driver
        register_command_line(line)  # the driver's command line (unpickling it imported the CLI here)
        self.handles: dict[Any, Any] = {}
        self.lock = threading.Lock()  # jobs one at a time even in a threaded actor (stdout is redirected)
        self.stderr = io.StringIO()
        self.idle = IdleClock(idle_s if idle_s else float("inf"))
        if idle_s:
            threading.Thread(target=self._watch, name="idle-watch", daemon=True).start()

    def _watch(self) -> None:
        while not self.idle.leaving():
            time.sleep(min(self.idle.idle_s / 4, 10.0))
        _leave()

    def pid(self) -> int:
        return os.getpid()

    def run(self, argv: list[str], threads: int) -> dict[str, Any]:
        if not self.idle.claim():
            return Outcome(False, "", LEFT, 1, 0.0, "").to_json()
        try:
            with self.lock:
                self.stderr = io.StringIO()
                return execute(argv, threads=threads, handles=self.handles, stderr=self.stderr).to_json()
        finally:
            self.idle.release()

    def progress(self) -> tuple[str, float] | None:
        """The running job's progress bar (answers while `run` works when the actor has max_concurrency > 1)."""
        return bar_progress(self.stderr.getvalue()[-2000:])


_ACTOR: Any = None


def _actor_class() -> Any:
    global _ACTOR
    if _ACTOR is None:
        import ray

        _ACTOR = ray.remote(max_restarts=0)(BatchWorker)
    return _ACTOR


def _probe(address: str) -> None:
    """A cluster address must answer within seconds: `ray.init` on a dead address waits far longer."""
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"--ray must be auto, local or HOST:PORT (or ray://HOST:PORT), got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT_S).close()
    except OSError as e:
        raise InputError(f"the Ray cluster at {address} does not answer ({e.strerror or e})") from None


def connect(address: str, *, num_cpus: int | None = None, namespace: str | None = None) -> str:
    """Join (or, for `local`, start) a Ray cluster before any work; a clear line when there is none. Returns a label."""
    import ray

    if address not in ("auto", "local"):
        _probe(address)
    if ray.is_initialized():  # already joined (tests, the app): reuse that connection
        return "ray"
    opts: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING,
                            "namespace": namespace}  # fmt: skip
    if address == "local":
        ray.init(num_cpus=num_cpus or os.cpu_count() or 1, **opts)
        return "ray:local"
    try:
        ray.init(address=address, **opts)
    except (ConnectionError, RuntimeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(f"cannot join the Ray cluster {address!r}: {first}") from None
    return f"ray:{address}"


@dataclass
class _Slot:
    key: tuple[Any, ...]
    actor: Any
    pid_ref: Any
    job: Job | None = None
    ref: Any = None
    pid: int | None = None


@dataclass
class _Pool:
    # The cluster's resources (a job needing more is refused) and those free when the batch started: the batch's
    # actors share only these (others, e.g. the app's per-model actors until they idle out, hold the rest), so no
    # actor of the batch waits for resources that may not come back.
    cpus: float
    gpus: float
    free_cpus: float
    free_gpus: float
    queues: dict[tuple[Any, ...], deque[Job]] = field(default_factory=dict)
    slots: list[_Slot] = field(default_factory=list)

    def used(self) -> tuple[float, float]:
        return (sum(s.key[1] for s in self.slots), sum(s.key[2] for s in self.slots))

    def fits(self, key: tuple[Any, ...]) -> bool:
        """Room for one more actor of `key`'s group; the first actor always (it waits for room if need be)."""
        cpu, gpu = self.used()
        room = cpu + key[1] <= self.free_cpus + 1e-9 and gpu + key[2] <= self.free_gpus + 1e-9
        return room or not self.slots


def _key(job: Job) -> tuple[Any, ...]:
    return (job.model, job.num_cpus, job.num_gpus)


class RayRunner:
    """Runs jobs on the Ray cluster this process is connected to (`connect` first)."""

    def __init__(self, name: str = "ray", *, max_replicas: int | None = None):
        self.name = name
        self.max_replicas = max_replicas or 1
        self.on_submit: Callable[[str, int], None] | None = None  # (job name, worker pid): used by tests

    def run(self, jobs: Sequence[Job], done: Done) -> None:
        import ray

        res, free = ray.cluster_resources(), ray.available_resources()
        pool = _Pool(float(res.get("CPU", 0)), float(res.get("GPU", 0)),
                     float(free.get("CPU", 0)), float(free.get("GPU", 0)))  # fmt: skip
        for job in jobs:
            pool.queues.setdefault(_key(job), deque()).append(job)
        attempts = {job.name: 0 for job in jobs}
        try:
            while True:
                self._refuse_unfit(pool, done)
                self._start_actors(pool)
                self._assign(pool, attempts)
                busy = [s for s in pool.slots if s.ref is not None]
                if not busy:
                    if not any(pool.queues.values()):
                        return
                    continue
                ready, _ = ray.wait([s.ref for s in busy], num_returns=1)
                for slot in [s for s in busy if s.ref in ready]:
                    self._collect(pool, slot, done, attempts)
        finally:
            for slot in pool.slots:
                ray.kill(slot.actor)

    def _refuse_unfit(self, pool: _Pool, done: Done) -> None:
        for key, queue in pool.queues.items():
            if key[1] > pool.cpus or key[2] > pool.gpus:
                msg = f"needs {key[1]:g} CPUs and {key[2]:g} GPUs; the cluster has {pool.cpus:g} and {pool.gpus:g}"
                while queue:
                    done(queue.popleft(), Outcome(False, "", msg, 2, 0.0, ""), 0, self.name)

    def _start_actors(self, pool: _Pool) -> None:
        while True:
            counts = {k: sum(s.key == k for s in pool.slots) for k in pool.queues}
            cap = self.max_replicas
            waiting = [
                k for k, q in pool.queues.items() if q and counts[k] < min(cap, len(q)) and pool.fits(k)
            ]
            if not waiting:
                return
            key = max(waiting, key=lambda k: len(pool.queues[k]) / (counts[k] + 1))
            actor = (
                _actor_class().options(num_cpus=key[1], num_gpus=key[2]).remote(os.getcwd(), command_line())
            )
            pool.slots.append(_Slot(key, actor, actor.pid.remote()))

    def _assign(self, pool: _Pool, attempts: dict[str, int]) -> None:
        import ray

        for slot in list(pool.slots):
            if slot.ref is not None:
                continue
            queue = pool.queues[slot.key]
            if not queue:  # its group is finished: free the resources for another group's actors
                ray.kill(slot.actor)
                pool.slots.remove(slot)
                continue
            slot.job = queue.popleft()
            attempts[slot.job.name] += 1
            slot.ref = slot.actor.run.remote(list(slot.job.argv), slot.job.threads)
            if self.on_submit is not None:
                self.on_submit(slot.job.name, self._pid(slot))

    def _pid(self, slot: _Slot) -> int:
        import ray

        if slot.pid is None:
            slot.pid = int(ray.get(slot.pid_ref))
        return slot.pid

    def _collect(self, pool: _Pool, slot: _Slot, done: Done, attempts: dict[str, int]) -> None:
        import ray

        job, ref = slot.job, slot.ref
        assert job is not None
        slot.job, slot.ref = None, None
        try:
            outcome = Outcome.from_json(ray.get(ref))
            done(job, outcome, attempts[job.name], f"ray:{self._pid(slot)}")
        except ray.exceptions.RayActorError as e:  # the worker died (killed, out of memory, node lost)
            ray.kill(slot.actor)
            pool.slots.remove(slot)
            if attempts[job.name] < MAX_ATTEMPTS:
                pool.queues[slot.key].appendleft(job)
            else:
                why = f"the worker died {attempts[job.name]} times running this job ({type(e).__name__})"
                done(job, Outcome(False, "", why, 1, 0.0, ""), attempts[job.name], self.name)
        except ray.exceptions.RayTaskError as e:
            line = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            done(job, Outcome(False, "", line, 1, 0.0, ""), attempts[job.name], self.name)
