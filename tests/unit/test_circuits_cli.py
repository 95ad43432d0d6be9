"""`headscope circuits run|compare|export|import|faithfulness|ablate` on a tiny model: JSON out, valid files on
disk, values checked against the library, clear one-line errors; edge commands (`--edge-methods`, `faithfulness
--level edge`, `export --format mib --method --circuit-size`, `--out-dir`); `to_argv` inverts the run parser."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from headscope.circuits import patching
from headscope.circuits.faithfulness import ablate
from headscope.circuits.report import read_report
from headscope.circuits.tasks import custom_task
from headscope.cli import main
from headscope.models import ModelHandle

SPEC = {
    "name": "letters",
    "positive": [
        {"prompt": "abcabcab", "answer": "c", "wrong": "a"},
        {"prompt": "xyzxyzxy", "answer": "z", "wrong": "x"},
    ],
    "negative": [{"prompt": "abcdefgh"}, {"prompt": "xyzuvwst"}],
}


@pytest.fixture(autouse=True)
def _threads(one_thread: None) -> None:
    return None


def _task(tmp_path: Path) -> str:
    task = tmp_path / "task.json"
    task.write_text(json.dumps(SPEC))
    return str(task)


def _run(tmp_path: Path, name: str, *extra: str) -> list[str]:
    return ["circuits", "run", "--task", "custom", "--task-file", _task(tmp_path), "--model", "tiny-llama",
            "--epochs", "10", "--n-examples", "4", "--out", str(tmp_path / name), *extra]  # fmt: skip


def test_run_compare_export_import(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_a = _run(
        tmp_path, "a.json", "--edges", "--stability", "--n-bootstrap", "10", "--edge-methods", "eap,eap_ig"
    )
    assert main([*run_a, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    report = read_report(tmp_path / "a.json")
    assert out["report"].endswith("a.json") and out["roc_auc"] == {
        m: v["roc_auc"] for m, v in report["metrics"].items()
    }
    assert (
        "activation_patching" not in out["roc_auc"] and out["ground_truth"]["method"] == "activation_patching"
    )
    assert report["edges"] is not None and report["stability"]["n_bootstrap"] == 10
    assert report["faithfulness"] is not None
    ea = report["edge_attribution"]
    assert (
        list(ea["methods"]) == ["eap", "eap_ig"] and out["edges"]["n_edges"] == ea["graph"]["n_edges"] == 110
    )
    curve = ea["faithfulness"]["curves"][1]
    assert out["edges"]["faithfulness"]["eap_ig"] == {k: curve[k] for k in ("cpr", "cpr_ci", "cmd", "cmd_ci")}
    aucs = {m: round(v["roc_auc"], 3) for m, v in report["metrics"].items() if v["roc_auc"] is not None}
    agree = out["summary"]["agreement"]  # the app's verdicts, from the report's own numbers
    assert agree["best"] == [m for m, v in aucs.items() if v == max(aucs.values())]
    assert agree["near_chance"] == [
        m
        for m, v in report["metrics"].items()
        if v.get("roc_auc_ci") and v["roc_auc_ci"][0] <= 0.5 <= v["roc_auc_ci"][1]
    ]
    assert out["summary"]["warnings"][: len(report["warnings"])] == report["warnings"]
    assert main([*_run(tmp_path, "b.json", "--seed", "1", "--circuit-k", "2", "--no-faithfulness")]) == 0
    text = capsys.readouterr().out
    assert "circuit (top_k)" in text and "best agreement with the ground truth: " in text
    assert read_report(tmp_path / "b.json")["faithfulness"] is None
    assert main(["circuits", "compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == "tiny-llama"
    for fmt in ("neuronpedia", "mib"):
        exported, back = tmp_path / f"{fmt}.json", tmp_path / f"{fmt}-back.json"
        argv = ["circuits", "export", str(tmp_path / "a.json"), "--format", fmt, "--out", str(exported)]
        assert main([*argv, "--method", "eap", "--circuit-size", "20%", "--json"]) == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["method"] == "eap" and summary["circuit_size"] == 0.2
        assert main(["circuits", "import", str(exported), "--out", str(back)]) == 0
        assert read_report(back) == report and capsys.readouterr().out.startswith("report: ")
    mib = json.loads((tmp_path / "mib.json").read_text())
    assert len(mib["edges"]) == 110 and mib["score_method"] == "eap"
    folder = tmp_path / "graphs"
    argv = [
        "circuits",
        "export",
        str(tmp_path / "a.json"),
        "--format",
        "neuronpedia",
        "--out-dir",
        str(folder),
    ]
    assert main([*argv, "--json"]) == 0
    files = json.loads(capsys.readouterr().out)["files"]
    slug = "headscope-custom-tiny-llama-eap_ig-s0"
    assert files == [str(folder / f"{slug}.json"), str(folder / "graph-metadata.json")]
    assert [g["slug"] for g in json.loads((folder / "graph-metadata.json").read_text())["graphs"]] == [slug]
    capsys.readouterr()


def test_faithfulness_is_computed_when_the_report_has_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*_run(tmp_path, "a.json")]) == 0
    assert main([*_run(tmp_path, "b.json", "--no-faithfulness")]) == 0
    capsys.readouterr()
    with_curves = read_report(tmp_path / "a.json")["faithfulness"]
    args = ["circuits", "faithfulness", str(tmp_path / "b.json"), "--task-file", _task(tmp_path), "--json"]
    assert main([*args, "--out", str(tmp_path / "c.json")]) == 0
    got = json.loads(capsys.readouterr().out)
    # same prompts, same model, same scores: the same curves as the run computed (runtime aside)
    assert {k: v for k, v in got.items() if k != "runtime_s"} == {
        k: v for k, v in with_curves.items() if k != "runtime_s"
    }
    assert read_report(tmp_path / "c.json")["faithfulness"]["curves"] == got["curves"]
    assert (
        main(["circuits", "faithfulness", str(tmp_path / "a.json"), "--json"]) == 0
    )  # already there: no model
    assert json.loads(capsys.readouterr().out) == with_curves


def test_edge_faithfulness_is_computed_when_the_report_has_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ("--no-faithfulness", "--edge-methods", "eap", "--n-bootstrap", "10")
    assert main([*_run(tmp_path, "a.json", *common)]) == 0
    assert main([*_run(tmp_path, "b.json", *common, "--no-edge-faithfulness")]) == 0
    capsys.readouterr()
    want = read_report(tmp_path / "a.json")["edge_attribution"]["faithfulness"]
    assert read_report(tmp_path / "b.json")["edge_attribution"]["faithfulness"] is None
    args = [
        "circuits",
        "faithfulness",
        str(tmp_path / "b.json"),
        "--level",
        "edge",
        "--task-file",
        _task(tmp_path),
    ]
    assert main([*args, "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert {k: v for k, v in got.items() if k != "runtime_s"} == {
        k: v for k, v in want.items() if k != "runtime_s"
    }
    assert main(["circuits", "faithfulness", str(tmp_path / "a.json"), "--level", "edge", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == want  # already there: no model
    assert main(["circuits", "run", "--task", "ioi", "--edge-methods", "acdc", "--model", "tiny-llama"]) == 2
    assert "edge_methods must be one of eap, eap_ig" in capsys.readouterr().err
    assert main([*_run(tmp_path, "c.json", "--no-faithfulness")]) == 0
    capsys.readouterr()
    assert (
        main(
            ["circuits", "export", str(tmp_path / "c.json"), "--format", "mib", "--out", str(tmp_path / "m")]
        )
        == 2
    )
    assert "no edge scores" in capsys.readouterr().err


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"task": "ioi", "edge_methods": ("eap_ig", "eap"), "edge_faithfulness": False, "layers": (2, 5)},
        {"circuit_threshold": 0.25, "sae_seed": 3, "ig_steps": 7, "intervals": False, "faithfulness": False},
        {
            "circuit_k": 4,
            "edges": True,
            "stability": True,
            "stability_seeds": 2,
            "n_bootstrap": 50,
            "gt_frac": 0.1,
        },
    ],
)
def test_to_argv_is_the_exact_inverse_of_the_run_parser(kwargs: dict) -> None:
    from headscope.circuits.config import CircuitConfig
    from headscope.circuits.sae import SAEConfig
    from headscope.cli import build_parser
    from headscope.cli.circuits import _config, to_argv

    sae = (
        SAEConfig(n_latents=64, l1=0.125, lr=3e-3, epochs=7, decoder_norm="atoms") if kwargs else SAEConfig()
    )
    cfg = CircuitConfig(**{"n_examples": 6, "seed": 2, "n_train": 4, "reduce": "last", "sae": sae, **kwargs})
    args = build_parser().parse_args(to_argv(cfg))
    assert _config(args) == cfg


def test_ablate_argv_parses_back_into_the_same_config_and_heads() -> None:
    from headscope.circuits.ablate import AblationConfig
    from headscope.cli import build_parser
    from headscope.cli.circuits import ablate_argv, cmd_ablate

    cfg = AblationConfig("greater_than", 12, 7)
    args = build_parser().parse_args(ablate_argv(cfg, "9.4, 12.*"))
    assert args.func is cmd_ablate and args.heads == "9.4, 12.*" and args.task_file is None
    assert AblationConfig(args.task, args.n_examples, args.seed) == cfg


def test_ablate_prints_the_library_values(
    tmp_path: Path, tiny_llama: ModelHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["circuits", "ablate", "--task", "custom", "--task-file", _task(tmp_path), "--n-examples", "2",
            "--heads", "0.1, 1.*", "--model", "tiny-llama", "--json"]  # fmt: skip
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    prep = patching.prepare(tiny_llama, custom_task(SPEC, tiny_llama.tokenizer))
    want = ablate(tiny_llama, prep, tiny_llama.head_set("0.1, 1.*")).to_json()
    assert {k: out[k] for k in want} == pytest.approx(want)
    assert out["heads"] == "0.1, 1.*" and out["clean_metric"] != out["selection_ablated"]


def test_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["circuits", "run", "--task", "custom", "--model", "tiny-llama"]) == 2
    assert "needs --task-file" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    assert main(["circuits", "compare", str(bad), str(bad)]) == 2
    err = capsys.readouterr().err
    assert "not valid JSON" in err and err.count("\n") == 1
    assert main(["circuits", "ablate", "--task", "ioi", "--heads", "3", "--model", "tiny-llama"]) == 2
    assert "'*.3'" in capsys.readouterr().err  # the grammar is checked before the model loads
    assert main(["circuits", "ablate", "--task", "ioi", "--heads", "9.9", "--model", "tiny-llama"]) == 2
    assert "out of range" in capsys.readouterr().err
    bad.write_text(json.dumps({"cfg": {"n_layers": 2, "n_heads": 4}, "nodes": {}, "edges": {}}))
    assert main(["circuits", "import", str(bad), "--out", str(tmp_path / "x.json")]) == 2
    assert "not MIB's graph of a 2-layer, 4-head model" in capsys.readouterr().err
    assert main(["circuits", "run", "--task", "ioi", "--epochs", "0", "--model", "tiny-llama"]) == 2
    assert "epochs must be an integer in [1, 10000]" in capsys.readouterr().err


def test_print_report_prints_the_whole_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """What the app's cluster job returns for a circuit run: the report itself (it loads as a CircuitResult, the
    same as the report file would), and no file written with `--out -`."""
    from headscope.circuits.result import CircuitResult

    task = _task(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    argv = ["circuits", "run", "--task", "custom", "--task-file", task, "--model", "tiny-llama", "--epochs", "10",
            "--n-examples", "4", "--no-faithfulness", "--print-report", "--json"]  # fmt: skip
    assert main([*argv, "--out", "-"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert CircuitResult.from_json(printed).model.name == "tiny-llama" and not list(work.iterdir())
    assert (
        main([*argv, "--out", str(tmp_path / "r.json")]) == 0
    )  # with --out: the file holds what was printed
    again = json.loads(capsys.readouterr().out)
    assert json.loads((tmp_path / "r.json").read_text()) == again
