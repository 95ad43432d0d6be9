"""`headscope circuits run|compare|export|import|faithfulness|ablate` on a tiny model: JSON out, valid files on
disk, values checked against the library, clear one-line errors."""

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
    assert main([*_run(tmp_path, "a.json", "--edges", "--stability", "--n-bootstrap", "10"), "--json"]) == 0
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
    assert main([*_run(tmp_path, "b.json", "--seed", "1", "--circuit-k", "2", "--no-faithfulness")]) == 0
    assert "circuit (top_k)" in capsys.readouterr().out
    assert read_report(tmp_path / "b.json")["faithfulness"] is None
    assert main(["circuits", "compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == "tiny-llama"
    for fmt in ("neuronpedia", "mib"):
        exported, back = tmp_path / f"{fmt}.json", tmp_path / f"{fmt}-back.json"
        assert (
            main(["circuits", "export", str(tmp_path / "a.json"), "--format", fmt, "--out", str(exported)])
            == 0
        )
        assert main(["circuits", "import", str(exported), "--out", str(back)]) == 0
        assert read_report(back) == report
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
    assert "not exported by headscope" in capsys.readouterr().err
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
