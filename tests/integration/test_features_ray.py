"""The Features tab's job on a local Ray cluster: `features eval`, run by the tab where HEADSCOPE_RAY_ADDRESS is set
(its CLI command on a Ray actor), returns what it returns in-process, and the views drawn from it are the same.

On the default model with a shipped SAE: the actor is a fresh process, so the SAE must be one every process finds
(the package's), not a test's patched catalog."""

from __future__ import annotations

import pytest

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.default_model, pytest.mark.usefixtures("one_thread")]
TEXT = "The Eiffel Tower is a wrought-iron lattice tower in Paris. It was built for the 1889 World's Fair."


def test_the_tabs_eval_job_on_ray_matches_in_process(ray_cluster: None) -> None:
    from headscope.app import features_tab as tab
    from headscope.app import jobs
    from headscope.app.wiring import Ctx

    inputs = {"model": "smollm2-135m", "sae": "res6", "source": tab.THE_TEXT, "tokens": 256, "text": TEXT}
    here = tab.run_eval(inputs, Ctx())["eval_raw"]
    with jobs.using_runner(jobs.RUNNERS["ray"]()):
        there = tab.run_eval(inputs, Ctx())["eval_raw"]
    assert there["sae"] == "res6" and there["tokens"] == here["tokens"] > 0
    for key, value in here.items():  # same figures; floats to the last printed digit or 1e-4 (BLAS order)
        if isinstance(value, float):
            assert there[key] == pytest.approx(value, abs=1e-4), key
        else:
            assert there[key] == value, key
    assert tab.draw_eval({"eval_raw": there}, Ctx())["eval_table"]["headers"] == [
        "measure",
        "value",
        "what it means",
    ]
