"""The Steering tab's contrastive job on a local Ray cluster (tests/integration/test_batch_ray.py's, num_cpus=2):
the job carries its `steer contrastive` command, runs there, and the tab gets the same JSON as in-process — so the
views it draws are the same."""

from __future__ import annotations

from typing import Any

import pytest

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.usefixtures("one_thread", "ray_cluster")


def test_the_steering_tabs_job_runs_on_ray_with_the_in_process_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from headscope.app import jobs
    from headscope.app import steering_tab as tab
    from headscope.app.wiring import Ctx

    inputs: dict[str, Any] = {
        "model": "tiny-llama", "positives": "good and happy\nlovely day", "negatives": "bad and sad\nawful day",
        "heldout": tab.NO_SET, "site": tab.SITES[0], "layer": 1, "alpha": 1.5, "prompts": "Hello there",
        "instruction": "Be glad.", "position": "all", "new_tokens": 3, "selection": None,
    }  # fmt: skip
    here = tab.steer_run(inputs, Ctx())["raw"]

    def not_here(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("with a Ray runner the job runs its command on the cluster, not in this process")

    monkeypatch.setattr(tab, "contrastive_result", not_here)
    with jobs.using_runner(jobs.RUNNERS["ray"]()):
        there = tab.steer_run(inputs, Ctx())["raw"]
    assert there == here
    a, b = (tab.steer_draw({"raw": r}, Ctx()) for r in (there, here))
    assert {**a, "file": None} == {
        **b,
        "file": None,
    }  # every view the same (the downloads are two temp files)
