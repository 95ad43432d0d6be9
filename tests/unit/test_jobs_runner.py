"""The job runner: stages reach the follower, Cancel stops a job at its next step and frees the model, one job
per visitor per slot. Jobs here wait on events, never on the clock."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest

from headscope.app import jobs
from headscope.errors import InputError


def _stepper(
    steps: int,
    gate: threading.Event | threading.Semaphore,
    seen: list[int],
    lock: threading.RLock | None = None,
):
    def work(report: jobs.Reporter) -> dict[str, int]:
        for i in range(steps):
            gate.acquire(timeout=10) if isinstance(gate, threading.Semaphore) else gate.wait(10)
            if lock is not None:
                with lock:  # one "forward": holds the model only for the step
                    seen.append(i)
            else:
                seen.append(i)
            report(f"step {i + 1}/{steps}", (i + 1) / steps)
        return {"steps": len(seen)}

    return work


def test_a_job_returns_its_value_and_reports_stages() -> None:
    gate, seen, updates = threading.Event(), [], []
    gate.set()
    job = jobs.ThreadRunner().start(jobs.JobSpec("count", _stepper(3, gate, seen)), owner="a")
    assert jobs.follow(job, lambda frac, desc: updates.append((frac, desc)), poll_s=0.01) == {"steps": 3}
    st = job.status()
    assert st.state == "done" and st.stage == "step 3/3" and st.frac == 1.0


def test_cancel_stops_at_the_next_step_and_frees_the_lock() -> None:
    gate, seen, model = threading.Semaphore(0), [], threading.RLock()
    job = jobs.ThreadRunner().start(jobs.JobSpec("long", _stepper(1000, gate, seen, model)), owner="a")
    for _ in range(3):
        gate.release()  # let three steps run
    while job.status().stage != "step 3/1000":
        job.wait(0.01)
    job.cancel()
    gate.release()  # the fourth step runs, then its report sees the cancel
    assert job.wait(10)
    with pytest.raises(jobs.JobCancelled, match="cancelled during 'step"):
        job.result()
    assert job.status().state == "cancelled" and len(seen) == 4
    assert model.acquire(blocking=False)  # nobody holds the model any more
    model.release()


def test_errors_reach_the_follower_as_they_were() -> None:
    def work(report: jobs.Reporter) -> None:
        raise InputError("bad value")

    job = jobs.ThreadRunner().start(jobs.JobSpec("fails", work), owner="a")
    with pytest.raises(InputError, match="bad value"):
        jobs.follow(job, poll_s=0.01)
    assert job.status().state == "failed"


def test_one_job_per_visitor_per_slot_and_cancel_finds_it() -> None:
    board, gate, seen = jobs.JobBoard(), threading.Semaphore(0), []
    first = board.start(jobs.JobSpec("sweep", _stepper(10_000, gate, seen)), owner="v1", slot="s")
    with pytest.raises(jobs.JobBusy, match="'sweep' is still running here"):
        board.start(jobs.JobSpec("sweep", _stepper(1, gate, [])), owner="v1", slot="s")
    other = board.start(jobs.JobSpec("other", _stepper(1, gate, [])), owner="v2", slot="s")  # another visitor
    assert board.cancel("v2", "nope") == []  # a slot with nothing running
    assert board.cancel("v1", "s") == [first]
    gate.release(2)
    assert first.wait(10) and other.wait(10)
    assert first.status().state == "cancelled" and other.status().state == "done"
    assert board.running() == []


def test_reporter_adapters_map_onto_the_job_fraction() -> None:
    got: list[tuple[str, float | None]] = []
    rep = jobs.Reporter(threading.Event(), lambda s, f: got.append((s, f)))
    rep.steps("λ point", 0.5, 1.0)(2, 4)
    rep.stages(0.0, 0.5)("patching", 0.5)
    assert got == [("λ point 2/4", 0.75), ("patching", 0.25)]


def _visitor(name: str) -> Any:
    return SimpleNamespace(session_hash=name)  # what `owner_of` reads of a gr.Request


def test_a_cancel_before_the_job_has_started_stops_it_as_it_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cancel pressed while the job still waits in the queue (its button clicked: `starting`; nothing on the
    board yet) is honoured by that visitor's next job in that slot, once, and by no other visitor's or slot's;
    it lapses after the window, and a new click on the job's button forgets it. With nothing queued (a Cancel
    that came after the job ended, or an API caller who never clicked) nothing is kept for a later job."""
    v1, v2, ran = _visitor("v1"), _visitor("v2"), []
    spec = jobs.JobSpec("queued", lambda report: ran.append(1) or {"ok": True})
    jobs.starting(v1, "s")
    assert jobs.cancel("s", v1) == "nothing has started here yet: the job is cancelled as it starts"
    assert jobs.cancel("s", v1) == "nothing has started here yet: the job is cancelled as it starts"  # twice
    assert jobs.run(spec, request=v2, slot="s") == {"ok": True}  # another visitor's job in the slot runs
    assert jobs.run(spec, request=v1, slot="other") == {"ok": True}  # and the visitor's job in another slot
    with pytest.raises(jobs.JobCancelled, match="cancelled before it started"):
        jobs.run(spec, request=v1, slot="s")
    assert ran == [1, 1]  # the cancelled job's work never ran
    assert jobs.run(spec, request=v1, slot="s") == {"ok": True}  # honoured once
    assert jobs.cancel("s", v1) == "nothing is running here"  # too late: the job ended, nothing queued
    assert jobs.run(spec, request=v1, slot="s") == {"ok": True}  # so the next job (an API call) runs
    jobs.starting(v1, "s")
    jobs.cancel("s", v1)
    jobs.starting(v1, "s")  # the Run button clicked again: that Cancel was for the job before
    assert jobs.run(spec, request=v1, slot="s") == {"ok": True}
    monkeypatch.setattr(jobs, "EARLY_CANCEL_S", 0.0)
    jobs.starting(v1, "s")
    jobs.cancel("s", v1)
    assert jobs.run(spec, request=v1, slot="s") == {"ok": True}  # past the window
    jobs.starting(v1, "s")
    assert jobs.cancel(None, v1) == "nothing is running here"  # the page closing keeps nothing
    assert jobs.run(spec, request=v1, slot="s") == {"ok": True} and len(ran) == 7


def test_the_runner_can_be_swapped() -> None:
    class Fake:
        def start(self, spec: jobs.JobSpec, *, owner: str) -> jobs.Job:
            return jobs.ThreadRunner().start(jobs.JobSpec("fake:" + spec.title, spec.work), owner=owner)

    gate = threading.Event()
    gate.set()
    with jobs.using_runner(Fake()):
        job = jobs.runner().start(jobs.JobSpec("x", _stepper(1, gate, [])), owner="o")
    assert job.title == "fake:x" and jobs.follow(job, poll_s=0.01) == {"steps": 1}
    assert isinstance(jobs.runner(), jobs.ThreadRunner)


def test_a_slot_may_hold_several_jobs_of_one_visitor_when_asked() -> None:
    board, gate = jobs.JobBoard(), threading.Semaphore(0)
    a = board.start(jobs.JobSpec("view", _stepper(5, gate, [])), owner="v", slot="views", single=False)
    b = board.start(jobs.JobSpec("view", _stepper(5, gate, [])), owner="v", slot="views", single=False)
    assert set(board.cancel("v", "views")) == {a, b}
    gate.release(4)
    assert a.wait(10) and b.wait(10)
    board.forget_finished()
    assert board.running() == [] and a.status().state == b.status().state == "cancelled"
