"""Batch jobs in-process: job-file checks before any work, results = the command's own JSON, errors per job,
outputs under DIR/<name>/, resume, per-job threads and RNG, one model load shared by a worker's jobs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from headscope.batch import InProcessRunner, execute, parse_jobs, run_batch
from headscope.batch.execute import fresh_rng, job_threads, without_timings
from headscope.batch.jobs import read_jobs
from headscope.cli import main
from headscope.errors import InputError

pytestmark = pytest.mark.usefixtures("one_thread")

TEXT = "The cat sat on the mat. The dog sat on the log."
JOBS: list[dict[str, Any]] = [
    {"name": "ent", "args": ["entropy", "--model", "tiny-llama", "--text", TEXT]},
    {
        "name": "sweep.gpt2",
        "args": ["locality", "sweep", "--model", "tiny-gpt2", "--text", TEXT, "--lambdas", "0,1"],
    },
    {
        "name": "sample",
        "args": [
            "decode",
            "compare",
            "--model",
            "tiny-llama",
            "--prompt",
            "abc ab",
            "--strategies",
            "greedy,sample",
            "--temperature",
            "1",
            "--max-new-tokens",
            "4",
        ],
        "threads": 2,
    },
    {
        "name": "bad_heads",
        "args": ["locality", "sweep", "--model", "tiny-llama", "--text", TEXT, "--heads", "*.9"],
    },
]


def _cli_json(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    main([*args, "--json"])
    return capsys.readouterr().out


def test_results_are_the_commands_json_and_errors_are_per_job(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = run_batch(parse_jobs(JOBS, tmp_path), tmp_path, InProcessRunner(), progress=False)
    assert (summary["n_ok"], summary["n_error"]) == (3, 1)
    for job in JOBS[:3]:
        # Oracle: the same command run directly, from a fresh process's RNG state, with the job's threads.
        with job_threads(job.get("threads", 1)):
            fresh_rng()
            want = _cli_json(job["args"], capsys)
        got = (tmp_path / f"{job['name']}.json").read_text()
        assert without_timings(json.loads(got)) == without_timings(json.loads(want))
        if (
            job["name"] != "sample"
        ):  # decode reports wall-clock speed; the others are bit for bit the same text
            assert got == want
    err = json.loads((tmp_path / "bad_heads.error.json").read_text())
    assert err["error"] == "heads: head 9 in '*.9' is out of range (the model has heads 0..3)"
    assert err["exit_code"] == 2
    assert not (tmp_path / "bad_heads.json").exists()
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["jobs"]["sample"]["threads"] == 2 and on_disk["jobs"]["ent"]["status"] == "ok"


def test_resume_skips_valid_results_and_reruns_changed_or_broken_ones(tmp_path: Path) -> None:
    jobs = JOBS[:2]
    run_batch(parse_jobs(jobs, tmp_path), tmp_path, InProcessRunner(), progress=False)
    first = (tmp_path / "ent.json").read_text()
    summary = run_batch(parse_jobs(jobs, tmp_path), tmp_path, InProcessRunner(), progress=False)
    assert summary["n_skipped"] == 2 and summary["n_ok"] == 2
    (tmp_path / "ent.json").write_text('{"trunc')  # a half-written file never counts as done
    changed = [jobs[0], {**jobs[1], "args": [*jobs[1]["args"][:-1], "0,0.5"]}]
    summary = run_batch(parse_jobs(changed, tmp_path), tmp_path, InProcessRunner(), progress=False)
    assert summary["n_skipped"] == 0 and summary["n_ok"] == 2
    assert (tmp_path / "ent.json").read_text() == first
    rows = json.loads((tmp_path / "sweep.gpt2.json").read_text())["rows"]
    assert [r["lambda"] for r in rows] == [0.0, 0.5]


def test_output_options_go_under_the_jobs_folder(tmp_path: Path) -> None:
    jobs = parse_jobs(
        [{"name": "c", "args": ["circuits", "run", "--model", "tiny-llama"]},
         {"name": "v", "args": ["steer", "lofit", "train", "--model", "tiny-llama", "--task", "antonyms",
                                          "--out=/elsewhere/vecs"]},
         {"name": "s", "args": ["localist", "sweep", "--out", "../t.json", "--work", "w"]},
         {"name": "n", "args": ["steer", "contrastive", "--model", "tiny-llama", "--pos", "p.txt", "--neg", "n.txt",
                                "--layer", "1", "--alpha", "2", "--prompt", "x"]}],
        tmp_path,
    )  # fmt: skip
    root = tmp_path.resolve()
    argv = {j.name: j.argv for j in jobs}
    assert argv["c"][-3:] == ("--json", "--out", str(root / "c" / "circuit_report.json"))
    assert f"--out={root / 'v' / 'vecs'}" in argv["v"]
    s = argv["s"]
    assert s[s.index("--out") + 1] == str(root / "s" / "t.json") and s[s.index("--work") + 1] == str(
        root / "s" / "w"
    )
    assert "--out" not in argv["n"]  # no default path: the command saves nothing unless asked


@pytest.mark.parametrize(
    ("jobs", "message"),
    [
        ([], "non-empty list of jobs"),
        ([{"name": "a b", "args": ["models"]}], "name must match"),
        ([{"name": "a", "args": ["models"]}, {"name": "a", "args": ["models"]}], "used twice"),
        ([{"name": "summary", "args": ["models"]}], "reserved"),
        ([{"name": "a", "args": ["serve"]}], "`serve` cannot run as a batch job"),
        ([{"name": "a", "args": ["batch", "run", "x", "--out", "y"]}], "`batch` cannot run"),
        ([{"name": "a", "args": ["frobnicate"]}], "unknown command 'frobnicate'"),
        ([{"name": "a", "args": ["models"], "gpus": 1}], "unknown key(s) gpus"),
        ([{"name": "a", "args": "models"}], "args must be a non-empty list"),
        ([{"name": "a", "args": ["entropy", "--model", "tiny-llama"]}], "one of the arguments --text --file"),
        ([{"name": "a", "args": ["entropy", "--help"]}], "ask for help"),
        ([{"name": "a", "args": ["models"], "num_cpus": -1}], "num_cpus must be a number ≥ 0"),
        ([{"name": "a", "args": ["models"], "threads": 1.5}], "threads must be an integer"),
    ],
)
def test_bad_job_files_give_one_line(tmp_path: Path, jobs: Any, message: str) -> None:
    with pytest.raises(InputError) as e:
        parse_jobs(jobs, tmp_path)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_cli_refuses_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "jobs.json"
    bad.write_text('[{"name": "a", "args": ["models"]}')
    assert main(["batch", "run", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    good = tmp_path / "good.json"
    good.write_text(json.dumps([{"name": "a", "args": ["models"]}]))
    assert (
        main(["batch", "run", str(good), "--out", str(tmp_path / "o"), "--ray", "127.0.0.1:9", "--json"]) == 2
    )
    out = json.loads(capsys.readouterr().out)
    assert "does not answer" in out["error"] and not (tmp_path / "o" / "summary.json").exists()
    assert main(["batch", "run", str(good), "--out", str(tmp_path / "o"), "--ray", "no-port"]) == 2
    assert main(["batch", "run", str(good), "--out", str(tmp_path / "o"), "--replicas", "2"]) == 2
    assert len(read_jobs(good, tmp_path)) == 1


def test_cli_runs_a_batch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    jobs = tmp_path / "jobs.json"
    jobs.write_text(json.dumps({"jobs": [JOBS[0], JOBS[3]]}))
    assert main(["batch", "run", str(jobs), "--out", str(tmp_path / "o"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["n_ok"], out["n_error"], out["runner"]) == (1, 1, "in-process")


def test_each_job_gets_its_threads_a_fresh_rng_and_the_workers_models(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[tuple[int, float]] = []

    def fake_main(argv: list[str]) -> int:
        from headscope.models import ModelHandle

        ModelHandle.load("tiny-llama", device="cpu")
        seen.append((torch.get_num_threads(), float(torch.rand(1))))
        print("{}")
        return 0

    from headscope.batch.commands import CommandLine, command_line

    line = CommandLine(
        fake_main, command_line().parser
    )  # batch runs whatever command line the CLI registered
    monkeypatch.setattr("headscope.batch.commands._LINE", [line])
    handles: dict[Any, Any] = {}
    before = torch.get_num_threads()
    torch.rand(5)  # disturb the RNG: the job must not see it
    outs = [execute(["x"], threads=t, handles=handles) for t in (2, 1)]
    assert all(o.ok and o.stdout == "{}\n" for o in outs)
    assert [s[0] for s in seen] == [2, 1] and seen[0][1] == seen[1][1]
    assert torch.get_num_threads() == before and len(handles) == 1


def test_progress_is_read_from_the_commands_own_bar() -> None:
    from headscope.batch.execute import bar_progress

    bar = "λ sweep:   0%|          | 0/3 [00:00<?, ?λ/s]\rλ sweep:  33%|███▎      | 1/3 [00:00<00:00]"
    assert bar_progress(bar) == ("λ sweep", 0.33)
    assert bar_progress("headscope: note: text cut\n") is None


def test_the_app_runner_hands_jobs_without_a_command_to_its_fallback() -> None:
    from headscope.batch.board import ThreadRunner
    from headscope.batch.cluster import RayJobRunner, cluster_address
    from headscope.batch.protocol import JobSpec
    from headscope.errors import HeadscopeError

    spec = JobSpec("view", lambda report: {"ran": "here"}, model="tiny-llama")
    job = RayJobRunner(ThreadRunner()).start(spec, owner="me")
    assert job.result() == {"ran": "here"} and job.owner == "me" and job.status().state == "done"
    with pytest.raises(HeadscopeError, match="no command"):
        RayJobRunner().start(spec, owner="me")
    assert cluster_address() is None or isinstance(cluster_address(), str)


def test_the_app_sweeps_command_gives_the_app_sweeps_json(
    tiny_llama: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from headscope.attention import BlockSpec, LocalityDial
    from headscope.cli.probes import to_argv
    from headscope.probes import SweepConfig, eval_tokens, sweep_locality

    dial = LocalityDial(mode="block", schedule="explicit", layer_weights=(0.3, 1.0), heads="*.1, 0.3",
                        strength=0.7, blocks=BlockSpec(source="fixed", size=5))  # fmt: skip
    cfg = SweepConfig(lambdas=(0.0, 0.1, 1 / 3), dial=dial, target="local")
    tokens, cut = eval_tokens(tiny_llama, TEXT, max_tokens=20)
    want = sweep_locality(tiny_llama, tokens, cfg, truncated_from=cut).to_json()
    capsys.readouterr()
    assert main([*to_argv(cfg, model="tiny-llama", text=TEXT, max_tokens=20), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(want))


def test_a_cluster_job_whose_cluster_is_gone_ends_instead_of_hanging(monkeypatch: pytest.MonkeyPatch) -> None:
    """A job board can hold a Ray job from a cluster this process has left: waiting on it must neither block nor
    start a fresh local cluster (ray.wait would auto-initialise one); it reads as failed with one line."""
    ray = pytest.importorskip("ray")
    from headscope.batch import cluster
    from headscope.batch.cluster import ClusterJob
    from headscope.errors import HeadscopeError

    class _Method:
        def remote(self, *args: object) -> object:
            return object()  # a ref no cluster knows

    class _Actor:
        run = progress = _Method()

    def no_wait(*args: object, **kwargs: object) -> None:
        raise AssertionError("ray.wait would start a new local cluster")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # this process has left the job's cluster
    monkeypatch.setattr(ray, "wait", no_wait)
    monkeypatch.setattr(cluster, "model_actor", lambda model: _Actor())
    job = ClusterJob("old job", "visitor", "tiny-llama", ["locality", "view"])
    assert job.wait(0) and job.wait(None) and job.status().state == "failed"
    with pytest.raises(HeadscopeError, match="the cluster that ran this job is gone"):
        job.result()


def test_an_idle_clock_lets_its_actor_leave_only_when_no_job_came_for_idle_s() -> None:
    from headscope.batch.ray_runner import IdleClock

    now = [100.0]
    idle = IdleClock(30.0, clock=lambda: now[0])
    now[0] = 129.5
    assert not idle.leaving()
    assert idle.claim()  # a job at 129.5 s runs for 100 s: never idle meanwhile
    now[0] = 229.5
    assert not idle.leaving()
    idle.release()
    now[0] = 259.25
    assert not idle.leaving()  # 29.75 s after the job ended
    now[0] = 259.5
    assert idle.leaving() and idle.leaving()
    assert not idle.claim()  # too late: the caller sends the job to a fresh actor
    assert idle.busy == 0


def test_the_app_actors_idle_time_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from headscope.batch.cluster import DEFAULT_IDLE_S, IDLE_ENV, idle_seconds

    monkeypatch.delenv(IDLE_ENV, raising=False)
    assert idle_seconds() == DEFAULT_IDLE_S == 1800
    for raw, want in (("90", 90.0), ("0.5", 0.5), ("0", None)):
        monkeypatch.setenv(IDLE_ENV, raw)
        assert idle_seconds() == want
    for raw in ("-1", "nan", "inf", "soon"):
        monkeypatch.setenv(IDLE_ENV, raw)
        with pytest.raises(InputError, match=IDLE_ENV):
            idle_seconds()
