"""The Circuits tab's job on a local Ray cluster (num_cpus=2, as tests/integration/test_batch_ray.py starts it):
where HEADSCOPE_RAY_ADDRESS is set the tab's run executes its CLI command (`run_command(cfg)`, from the CLI's
`to_argv`) on an actor, and the report it returns — and so every view the tab draws from it — equals the
in-process run's, wall-clock fields aside."""

from __future__ import annotations

from typing import Any

import pytest

from headscope.batch.execute import without_timings

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.usefixtures("one_thread")

INPUTS = {"model": "tiny-llama", "task": "greater_than", "custom": "", "n_examples": 6, "seed": 0, "epochs": 10,
          "reduce": "mean", "norm": "reference_rows", "scope": "all layers", "options": ["faithfulness curves"],
          "edge_methods": ["eap_ig"]}  # fmt: skip


def _comparable(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in without_timings(report).items() if k not in ("created_at", "software")}


def test_the_tabs_run_on_ray_equals_in_process(ray_cluster: None) -> None:
    from headscope.app import circuits_tab as tab
    from headscope.app import jobs
    from headscope.app.wiring import Ctx

    here = tab.run(INPUTS, Ctx())
    with jobs.using_runner(jobs.RUNNERS["ray"]()):
        there = tab.run(INPUTS, Ctx())
    assert there["status"] == here["status"]
    a, b = here["raw"], there["raw"]
    assert a["edge_attribution"]["methods"]["eap_ig"]["scores"]  # the edge scores travelled too
    assert _comparable(a) == _comparable(b)
    drawn_here = tab.draw({"raw": a, "selection": None, "edge_method": None}, Ctx())
    drawn_there = tab.draw({"raw": b, "selection": None, "edge_method": None}, Ctx())
    tables = [
        [row[:-1] for row in d[k]["data"]]
        for d in (drawn_here, drawn_there)
        for k in ("metrics", "edge_table")
    ]
    assert tables[:2] == tables[2:]  # what the tab shows, but for the "time (s)" column
