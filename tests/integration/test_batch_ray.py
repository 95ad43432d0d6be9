"""Batch jobs on a local Ray cluster (tests/integration/conftest.py, one per test session): the same answer as
in-process, a killed worker's job retried once with no finished result lost, and the app's cluster runner.

Each Ray actor is a fresh Python process that imports torch and transformers (~5-15 s on the 2-core machines), so
the tests share actors where they can: all of this module takes under a minute."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from headscope.batch import InProcessRunner, RayRunner, parse_jobs, run_batch
from headscope.batch.cluster import NAMESPACE
from headscope.batch.execute import without_timings
from headscope.cli import main
from headscope.errors import InputError

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.usefixtures("one_thread")

TEXT = "The cat sat on the mat. The dog sat on the log."


def _jobs(n: int, model: str) -> list[dict[str, Any]]:
    return [{"name": f"{model}.{i}", "args": ["locality", "sweep", "--model", model, "--text", TEXT, "--lambdas",
                                            f"0,{(i + 1) / n:.3f}", "--mode", "distance"]} for i in range(n)]  # fmt: skip


def _results(folder: Path, names: list[str]) -> dict[str, str]:
    return {n: (folder / f"{n}.json").read_text() for n in names}


def test_ray_gives_the_in_process_answer_and_retries_a_killed_workers_job(
    ray_cluster: None, tmp_path: Path
) -> None:
    raw = [*_jobs(3, "tiny-llama"), *_jobs(2, "tiny-gpt2"),
           {"name": "dec", "args": ["decode", "compare", "--model", "tiny-gpt2", "--prompt", "abc ab", "--strategies",
                                    "greedy,sample", "--temperature", "1", "--max-new-tokens", "4"]},
           {"name": "bad", "args": ["locality", "sweep", "--model", "tiny-llama", "--text", TEXT, "--heads", "*.9"]}]  # fmt: skip
    names = [j["name"] for j in raw[:-1]]
    runner, killed = RayRunner("ray"), []

    def kill_during_second_llama_job(name: str, pid: int) -> None:
        if name == "tiny-llama.1" and not killed:
            os.kill(pid, signal.SIGKILL)  # the actor process this test's cluster started for the job
            killed.append(pid)

    runner.on_submit = kill_during_second_llama_job
    gpu_job = {"name": "gpu", "args": ["models"], "num_gpus": 1}  # more than the cluster has: refused alone
    on_ray = run_batch(parse_jobs([*raw, gpu_job], tmp_path / "b"), tmp_path / "b", runner, progress=False)
    local = run_batch(parse_jobs(raw, tmp_path / "a"), tmp_path / "a", InProcessRunner(), progress=False)
    assert (on_ray["n_ok"], on_ray["n_error"]) == (local["n_ok"], local["n_error"] + 1) == (len(names), 2)
    cpus = int(ray.cluster_resources()["CPU"])
    assert (
        f"the cluster has {cpus} and 0"
        in json.loads((tmp_path / "b" / "gpu.error.json").read_text())["error"]
    )
    a, b = _results(tmp_path / "a", names), _results(tmp_path / "b", names)
    for name in names:
        if name == "dec":  # reports its wall-clock speed; the sampled tokens are the same
            assert without_timings(json.loads(a[name])) == without_timings(json.loads(b[name]))
        else:
            assert a[name] == b[name]
    assert json.loads((tmp_path / "b" / "bad.error.json").read_text())["error"].startswith(
        "heads: head 9 in '*.9' is out of range"
    )
    jobs = on_ray["jobs"]
    # The killed worker's finished job kept its result; the job it was running ran again on a new actor.
    assert killed and jobs["tiny-llama.0"]["worker"] == f"ray:{killed[0]}" != jobs["tiny-llama.1"]["worker"]
    assert [jobs[n]["attempts"] for n in names] == [1, 2, 1, 1, 1, 1]
    assert len({jobs[n]["worker"] for n in names}) == 3  # one actor per model, plus the replacement


def test_a_batch_shares_only_the_cpus_left_free(ray_cluster: None, tmp_path: Path) -> None:
    """CPUs others hold (here a placement group; in use, the app's per-model actors, which keep theirs) are not
    counted on: with one CPU free, three jobs that could have three replicas run one after another on one actor.
    Counting the cluster's total, the runner started three actors, two of which waited forever for a CPU."""
    import threading

    from ray.util.placement_group import placement_group, remove_placement_group

    free = int(ray.available_resources().get("CPU", 0))
    assert free >= 1, "the session's cluster has no free CPU left (tests/integration/conftest.py: RAY_SLOTS)"
    held = placement_group([{"CPU": free - 1}]) if free > 1 else None
    try:
        if held is not None:
            ray.get(held.ready(), timeout=60)
        runner, pids = RayRunner("ray", max_replicas=3), set()
        runner.on_submit = lambda name, pid: pids.add(pid)
        raw = _jobs(3, "tiny-llama")
        out: dict[str, Any] = {}
        work = threading.Thread(
            target=lambda: out.update(run_batch(parse_jobs(raw, tmp_path), tmp_path, runner, progress=False)),
            daemon=True,
        )
        work.start()
        work.join(timeout=300)
        assert not work.is_alive(), "the batch waits for CPUs that others hold"
        assert out["n_ok"] == 3 and len(pids) == 1
    finally:
        if held is not None:
            remove_placement_group(held)


def _no_work(report: Any) -> Any:
    raise AssertionError("a job with a command runs on the cluster, not here")


def test_the_app_runner_runs_a_tabs_command_on_the_cluster(
    ray_cluster: None, capsys: pytest.CaptureFixture[str]
) -> None:
    from headscope.app import jobs
    from headscope.app import locality_tab as tab
    from headscope.app.wiring import Ctx
    from headscope.batch.cluster import RayJobRunner
    from headscope.batch.protocol import JobCancelled, JobSpec

    # The λ sweep tab, as it runs where HEADSCOPE_RAY_ADDRESS is set, returns and shows what it does in-process.
    tab_in = {"model": "tiny-gpt2", "text": TEXT, "mode": "distance", "schedule": "uniform", "beta": 1.0,
              "scope": "all heads", "selection": None}  # fmt: skip
    here = tab.sweep(tab_in, Ctx())["raw"]
    with jobs.using_runner(jobs.RUNNERS["ray"]()):
        there = tab.sweep(tab_in, Ctx())["raw"]
    assert there == here and len(here["rows"]) == len(tab.SWEEP_LAMBDAS)
    drawn_here, drawn_there = (tab.draw_sweep({"raw": r}, Ctx()) for r in (here, there))
    assert drawn_there["status"] == drawn_here["status"] and drawn_there["table"] == drawn_here["table"]
    # the entropy view job too (`headscope locality view`): the same JSON from the cluster
    view_in = {**tab_in, "lam": 0.5}
    here = tab.analyse(view_in, Ctx())["raw"]
    with jobs.using_runner(jobs.RUNNERS["ray"]()):
        there = tab.analyse(view_in, Ctx())["raw"]
    assert there == here and here["baseline"] is not None

    runner = RayJobRunner()
    sweep = ("locality", "sweep", "--model", "tiny-gpt2", "--text", TEXT, "--lambdas", "0,0.5,1")
    job = runner.start(JobSpec("λ sweep", _no_work, "tiny-gpt2", sweep), owner="visitor")
    seen = []
    while not job.wait(0.05):
        seen.append(job.status())
    assert job.status().state == "done" and all(s.state == "running" for s in seen)
    capsys.readouterr()
    main([*sweep, "--json"])
    assert job.result() == json.loads(capsys.readouterr().out)  # the tab gets the CLI's JSON
    # a tab's command without --model runs on the job's model (decoding's, the ablation's), not the CLI default
    no_model = tuple(
        a for i, a in enumerate(sweep) if a != "--model" and (i == 0 or sweep[i - 1] != "--model")
    )
    assert "tiny-gpt2" not in no_model
    assert (
        runner.start(JobSpec("λ sweep", _no_work, "tiny-gpt2", no_model), owner="visitor").result()
        == job.result()
    )
    bad = runner.start(JobSpec("bad", _no_work, "tiny-gpt2", (*sweep, "--heads", "*.9")), owner="visitor")
    with pytest.raises(InputError, match=r"head 9 in '\*\.9' is out of range"):
        bad.result()
    assert bad.status().state == "failed"
    long = runner.start(
        JobSpec("long", _no_work, "tiny-gpt2", (*sweep[:-1], ",".join(["0.5"] * 21))), owner="v"
    )
    long.cancel()
    assert long.status().state == "cancelled" and long.wait(0)
    with pytest.raises(JobCancelled, match="cancelled during"):  # the same error as in-process
        long.result()


def _gone(name: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            ray.get_actor(name, namespace=NAMESPACE)
        except ValueError:
            return True
        time.sleep(0.2)
    return False


def test_an_app_actor_leaves_when_idle_and_a_job_whose_actor_is_gone_runs_on_a_fresh_one(
    ray_cluster: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """The app's per-model actors held their CPU slot for good (detached); now one leaves after its idle time
    and gives the slot back. A job that meets a gone actor (left meanwhile, or died) runs once more on a new one."""
    from headscope.batch.cluster import RayJobRunner
    from headscope.batch.commands import command_line
    from headscope.batch.protocol import JobSpec
    from headscope.batch.ray_runner import _actor_class

    free = ray.available_resources().get("CPU", 0.0)
    opts = {"name": "idle-test", "namespace": NAMESPACE, "lifetime": "detached", "num_cpus": 1}
    actor = _actor_class().options(**opts).remote(os.getcwd(), command_line(), 1.0)
    ray.get(actor.pid.remote())  # started: it holds a CPU slot
    assert _gone("idle-test", 60), "the idle actor is still there after 60 s"
    deadline = time.monotonic() + 20
    while ray.available_resources().get("CPU", 0.0) < free and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ray.available_resources().get("CPU", 0.0) >= free  # its slot is back

    sweep = ("locality", "sweep", "--model", "tiny-gpt2", "--text", TEXT, "--lambdas", "0,0.5,1")
    job = RayJobRunner().start(JobSpec("λ sweep", _no_work, "tiny-gpt2", sweep), owner="visitor")
    first = job.actor
    ray.kill(first)  # as if it left after idling, or crashed, before it answered
    got = job.result()
    assert job.actor._actor_id != first._actor_id and job.status().state == "done"
    capsys.readouterr()
    main([*sweep, "--json"])
    assert got == json.loads(capsys.readouterr().out)
