"""Watching and stopping running jobs, for any front end: `follow` relays a job's stages to a progress callback
until it ends; `cancel_and_wait` stops an owner's jobs on the board and says, per job, whether it has really
stopped (app/jobs.py wires both to gradio's progress bar and the Cancel buttons)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from headscope.batch.board import JobBoard
from headscope.batch.protocol import RunningJob

POLL_S = 0.2


def follow(job: RunningJob, progress: Callable[..., Any] | None = None, poll_s: float = POLL_S) -> Any:
    """Call `progress(fraction, desc="<title>: <stage>")` on each new stage until the job ends; then its result
    (or its error, raised)."""
    shown: tuple[str, float | None] | None = None
    while not job.wait(poll_s):
        st = job.status()
        if progress is not None and (st.stage, st.frac) != shown:
            shown = (st.stage, st.frac)
            progress(st.frac, desc=f"{job.title}: {st.stage}")
    return job.result()


def cancel_and_wait(board: JobBoard, owner: str, slot: str | None, wait_s: float = 10.0) -> list[str]:
    """Cancel `owner`'s jobs in `slot` (all of theirs when None) and wait (up to `wait_s` in all) until they have
    stopped; one line per job that tells the truth: stopped, or stopping at the end of its current step."""
    deadline = time.monotonic() + wait_s
    lines = []
    for job in board.cancel(owner, slot):
        ended = job.wait(max(0.0, deadline - time.monotonic()))
        st = job.status()
        lines.append(
            f"cancelled '{job.title}' during '{st.stage}'; the model is free"
            if ended
            else f"cancelling '{job.title}': it stops at the end of its current step ('{st.stage}')"
        )
    return lines
