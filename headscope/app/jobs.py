"""The UI half of long work: `run` follows a job started on the board (headscope/batch/, re-exported here) and
relays its progress to gradio; `JobControls` is its status line and the Cancel that really stops it (README:
Long work)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

import headscope.cli  # noqa: F401  (registers the command line that cluster jobs run: batch/commands.py)
from headscope.app.downloads import owner_of  # a visitor: the browser session, the same for jobs and files
from headscope.app.state import JOB_EVENT, QUIET, VIEW_EVENT
from headscope.app.wiring import bind
from headscope.batch.board import BOARD, RUNNERS, JobBoard, ThreadRunner, runner, using_runner
from headscope.batch.follow import cancel_and_wait, follow
from headscope.batch.protocol import JobBusy, JobCancelled, JobSpec, JobStatus, Reporter, RunningJob

__all__ = [
    "BOARD", "RUNNERS", "JobBoard", "JobBusy", "JobCancelled", "JobControls", "JobSpec", "JobStatus", "Reporter",
    "RunningJob", "ThreadRunner", "cancel", "follow", "owner_of", "run", "runner", "starting", "using_runner",
]  # fmt: skip


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
    owner = owner_of(request)
    _mark(_QUEUED, owner, slot)  # started: a Cancel from now on finds it on the board
    if _mark(_EARLY, owner, slot) > time.monotonic():
        raise JobCancelled("cancelled before it started")
    BOARD.forget_finished()
    job = BOARD.start(spec, owner=owner, slot=slot, single=single)
    return follow(job, progress)


# A click on a job's button marks the job queued, by (visitor, slot), until it starts (`starting`). A Cancel
# that finds no job of the visitor's on the board while one is queued there is kept for a short while: that job
# is cancelled as it starts. With nothing queued (a Cancel that came too late for the last job, or an API caller
# who never clicked) nothing is kept, so no later job is stopped by it. A new click forgets a kept Cancel.
EARLY_CANCEL_S = 10.0
QUEUED_S = 600.0  # a queued mark lapses after this (the job's event was dropped, or failed before it started)
_EARLY: dict[tuple[str, str], float] = {}  # (visitor, slot) → until when (time.monotonic)
_QUEUED: dict[tuple[str, str], float] = {}
_MARKS_LOCK = threading.Lock()


def _mark(marks: dict[tuple[str, str], float], owner: str, slot: str, until: float | None = None) -> float:
    """Take (forget) the mark kept for (owner, slot) in `marks`: until when it holds, 0 if none; with `until`,
    keep one instead (and drop the expired ones)."""
    with _MARKS_LOCK:
        now = time.monotonic()
        for key in [k for k, t in marks.items() if t <= now]:
            del marks[key]
        if until is not None:
            marks[(owner, slot)] = until
            return until
        return marks.pop((owner, slot), 0.0)


def cancel(slot: str | None, request: gr.Request | None, wait_s: float = 10.0) -> str:
    """The Cancel button's handler: stop this visitor's job in `slot` (all of theirs when None) and wait (a
    little) until it has really stopped, so the line it returns tells the truth. With none started yet but one
    queued there (`starting`), that one is cancelled as it starts, if it starts within EARLY_CANCEL_S."""
    owner = owner_of(request)
    lines = cancel_and_wait(BOARD, owner, slot, wait_s)
    if lines:
        return "\n\n".join(lines)
    with _MARKS_LOCK:  # read, not taken: the job stays queued (a second Cancel finds it too) until it starts
        queued = _QUEUED.get((owner, slot), 0.0) if slot is not None else 0.0
    if slot is None or queued <= time.monotonic():
        return "nothing is running here"
    _mark(_EARLY, owner, slot, time.monotonic() + EARLY_CANCEL_S)
    return "nothing has started here yet: the job is cancelled as it starts"


def starting(request: gr.Request | None, slot: str) -> None:
    """The visitor has just asked for a new job in `slot` (its button): it is queued until `run` starts it, and
    an earlier Cancel kept for the slot was meant for the job before, not this one."""
    owner = owner_of(request)
    _mark(_EARLY, owner, slot)
    _mark(_QUEUED, owner, slot, time.monotonic() + QUEUED_S)


@dataclass(frozen=True)
class JobControls:
    """A status line (where the job's progress bar is drawn: the one place a job reports progress) and a Cancel
    button wired to this visitor's job in `slot`, shown only while a job started through `bind` runs."""

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
                "Cancel", variant="stop", size="sm", scale=0, min_width=90, elem_id=f"hs-cancel-{slot}",
                visible=False,
            )  # fmt: skip

        def on_cancel(request: gr.Request) -> str:
            return cancel(slot, request)

        # Not queued: a Cancel must never wait behind the work it cancels.
        stop.click(on_cancel, inputs=None, outputs=[status], api_name=f"{slot}_cancel", queue=False)
        return cls(slot, status, stop)

    def bind(
        self,
        trigger: Callable[..., Any],
        fn: Any,
        *,
        inputs: dict[str, Any],
        outputs: dict[str, Any],
        api_name: str | None = None,
        view: bool = False,
        **event: Any,
    ) -> Any:
        """`wiring.bind` for a job: the JOB_EVENT group (`view=True`: the VIEW_EVENT group, for a view that runs
        as a cancellable job and must never queue behind long jobs), progress on the status line only (never an
        overlay on every output panel), Cancel shown while it runs. Returns the job's event (chain
        `.success(draw)`). Cancel is shown by a listener added BEFORE the job's own (the page runs one
        trigger's events in the order added) and hidden after it however it ends (`.then` skips a failed
        event)."""

        def shown(request: gr.Request) -> Any:
            starting(request, self.slot)
            return gr.update(visible=True)

        trigger(shown, None, [self.cancel], **QUIET)
        group = {**(VIEW_EVENT if view else JOB_EVENT), "show_progress": "full"}
        job = bind(
            trigger, fn, inputs=inputs, outputs=outputs, api_name=api_name,
            show_progress_on=[self.status], **{**group, **event},
        )  # fmt: skip
        for after in (job.then, job.failure):
            after(lambda: gr.update(visible=False), None, [self.cancel], **QUIET)
        return job
