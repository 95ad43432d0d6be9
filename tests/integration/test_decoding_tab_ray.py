"""The Decoding tab's job on a local Ray cluster (as where HEADSCOPE_RAY_ADDRESS is set): the cluster runs the
job's `decode compare` command and the tab gets the same comparison as in-process (timings aside), and draws
the same views from it. Marked like the other Ray tests (tests/integration/test_batch_ray.py)."""

from __future__ import annotations

from typing import Any

import pytest

from headscope.batch.execute import without_timings

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.usefixtures("one_thread")


def _no_work(report: Any) -> Any:
    raise AssertionError("a job with a command runs on the cluster, not here")


def test_the_decoding_tabs_job_on_ray_gives_the_in_process_comparison(
    ray_cluster: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from headscope.app import decoding_tab as tab
    from headscope.app import jobs
    from headscope.app import selection_bar as sel
    from headscope.app.state import STORE
    from headscope.app.wiring import Ctx

    selection = sel.from_text(sel.empty(), "0.*", STORE.get("tiny-gpt2"))
    inputs = {
        "model": "tiny-gpt2", "prompt": "-abc abc ab", "chat": False, "max_new_tokens": 10, "temperature": 0.0,
        "strategies": ["greedy", "token_recycling", "ngram", "lookahead"], "seed": 0, "entropy": True,
        "action": "ablate", "lam": 1.0, "max_draft": 4, "window": 4, "tree_size": 16, "draft_model": "(none)",
        "regex": "", "grammar": "(none)", "method": "awrs", "particles": 1, "selection": selection,
    }  # fmt: skip
    here = tab.decode_compare(inputs, Ctx())["raw"]
    monkeypatch.setattr(tab, "_work", lambda cmd: _no_work)  # the cluster runs the command, not `work`
    with jobs.using_runner(jobs.RUNNERS["ray"]()):
        there = tab.decode_compare(inputs, Ctx())["raw"]
    assert here["intervention"] == there["intervention"] == "ablate heads 0.* (mean over the prompt)"
    assert without_timings(there) == without_timings(here)
    drawn = [tab.draw({"raw": raw, "selection": selection}, Ctx()) for raw in (here, there)]
    assert drawn[0]["strip"] == drawn[1]["strip"] and drawn[0]["note"] == drawn[1]["note"]
    assert [row[:6] for row in drawn[0]["speed"]["value"]["data"]] == [
        row[:6] for row in drawn[1]["speed"]["value"]["data"]
    ]  # the run names, tokens, forwards and MAT (the wall columns are timings)
