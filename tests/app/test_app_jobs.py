"""Long jobs in the app, on the default model: Cancel really stops a λ sweep and frees the model, and another
visitor's cheap view answers while a long job runs. No timing assertions: only the order of events."""

from __future__ import annotations

import time

import pytest
from gradio_client import Client

from headscope.app import jobs
from headscope.data import excerpt_text

pytestmark = pytest.mark.default_model
MODEL = "smollm2-135m"
SWEEP_ARGS = ("distance", "uniform", 3.0, "all heads")


def _long_text() -> str:
    return excerpt_text()[:4000]  # well over the sweep's 256 tokens: 11 forwards of 256 tokens


def _wait_for_stage(prefix: str, timeout_s: float = 300) -> jobs.RunningJob:
    """The running sweep once it has reported a stage starting with `prefix` (the app runs in this process)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for job in jobs.BOARD.running():
            if job.title.startswith("λ sweep") and job.status().stage.startswith(prefix):
                return job
        time.sleep(0.05)
    raise AssertionError(f"no running λ sweep reached {prefix!r}")


def test_cancel_stops_the_job_and_frees_the_model(app_url: str) -> None:
    a = Client(app_url, verbose=False)
    submitted = a.submit(MODEL, _long_text(), *SWEEP_ARGS, api_name="/locality_sweep")
    job = _wait_for_stage("λ point 1/")
    line = a.predict(api_name="/locality_sweep_cancel")
    assert line.startswith("cancelled 'λ sweep on smollm2-135m' during 'λ point") and "model is free" in line
    with pytest.raises(Exception, match="cancelled during 'λ point"):
        submitted.result(timeout=120)
    assert job.status().state == "cancelled" and not job.status().stage.startswith("λ point 11/")
    assert job not in jobs.BOARD.running()
    # the slot and the model are free: a new view and a new sweep of the same visitor both run
    assert a.predict(MODEL, "The cat sat.", 0.0, *SWEEP_ARGS, api_name="/locality_analyse")["probes"][
        "entropy_bits"
    ]
    raw = a.predict(MODEL, "The cat sat on the mat.", *SWEEP_ARGS, api_name="/locality_sweep")
    assert len(raw["rows"]) == 11


def test_a_second_visitor_view_answers_during_a_long_job(app_url: str) -> None:
    a, b = Client(app_url, verbose=False), Client(app_url, verbose=False)
    long_job = a.submit(MODEL, _long_text(), *SWEEP_ARGS, api_name="/locality_sweep")
    job = _wait_for_stage("λ point 1/")
    raw = b.predict(MODEL, "The cat sat on the mat.", 0.0, *SWEEP_ARGS, api_name="/locality_analyse")
    assert raw["probes"]["entropy_bits"] and raw["n_tokens"] == 7
    assert not job.wait(0), "the view had to answer while the job was still running"
    assert not long_job.done()
    a.predict(api_name="/locality_sweep_cancel")
    with pytest.raises(Exception, match="cancelled"):
        long_job.result(timeout=120)


def test_a_visitor_runs_one_job_per_slot(app_url: str) -> None:
    a = Client(app_url, verbose=False)
    first = a.submit(MODEL, _long_text(), *SWEEP_ARGS, api_name="/locality_sweep")
    _wait_for_stage("λ point")
    # A second start by the same visitor waits in the job queue (one slot) until the first ends; cancelling the
    # first lets the second run to completion.
    second = a.submit(MODEL, "The cat sat on the mat.", *SWEEP_ARGS, api_name="/locality_sweep")
    a.predict(api_name="/locality_sweep_cancel")
    with pytest.raises(Exception, match="cancelled"):
        first.result(timeout=120)
    assert len(second.result(timeout=300)["rows"]) == 11
