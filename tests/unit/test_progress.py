"""The one progress protocol: `(stage, fraction)`, the step-count adapter and sub-ranges; a job's Reporter is one."""

from __future__ import annotations

import threading

import pytest

from headscope import progress
from headscope.batch.protocol import JobCancelled, Reporter


def test_steps_and_parts_map_into_the_whole_call() -> None:
    seen: list[tuple[str, float]] = []
    tick = progress.steps(lambda s, f: seen.append((s, f)), "λ point", 0.5, 1.0)
    tick(1, 4)
    tick(4, 4)
    progress.part(lambda s, f: seen.append((s, f)), 0.2, 0.4)("train", 0.5)
    assert seen == [("λ point 1/4", 0.625), ("λ point 4/4", 1.0), ("train", pytest.approx(0.3))]
    progress.steps(None, "x")(1, 0)  # no consumer, no total: nothing happens
    progress.part(None, 0, 1)("x", 2.0)


def test_a_reporter_is_a_progress_that_raises_once_cancelled() -> None:
    cancelled, updates = threading.Event(), []
    report = Reporter(cancelled, lambda s, f: updates.append((s, f)))
    tick = report.steps("window", 0.0, 0.5)
    tick(1, 2)
    report.stages(0.5, 1.0)("index", 2.0)  # fractions outside [0, 1] are clamped
    assert updates == [("window 1/2", 0.25), ("index", 1.0)]
    cancelled.set()
    with pytest.raises(JobCancelled, match="cancelled during 'index'"):
        tick(2, 2)
