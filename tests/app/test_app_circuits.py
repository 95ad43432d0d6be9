"""Circuits tab through gradio_client: a run on a tiny model (views built from the report, checked against it),
ablating the shared selection (against the library), download → re-upload → compare, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from gradio_client import Client, handle_file

from headscope.app import circuits_views as cv
from headscope.app.circuits_tab import LAYER_SCOPES, OPTIONS, circuits_view
from headscope.circuits import patching
from headscope.circuits.faithfulness import ablate
from headscope.circuits.result import CircuitResult
from headscope.circuits.tasks import custom_task
from headscope.models import ModelHandle

SPEC = {
    "name": "letters",
    "positive": [
        {"prompt": "abcabcab", "answer": "c", "wrong": "a"},
        {"prompt": "xyzxyzxy", "answer": "z", "wrong": "x"},
        {"prompt": "pqrpqrpq", "answer": "r", "wrong": "p"},
    ],
    "negative": [{"prompt": "abcdefgh"}, {"prompt": "xyzuvwst"}, {"prompt": "pqrstuvw"}],
}
CUSTOM = json.dumps(SPEC)
RUN = ("tiny-llama", "custom", CUSTOM, 6, 0, 10, "mean", "reference_rows", LAYER_SCOPES[0])


@pytest.fixture(scope="module")
def run(client: Client) -> tuple:
    return client.predict(*RUN, list(OPTIONS[:2]), api_name="/circuits_run")


def test_run_returns_views_built_from_the_report(run: tuple) -> None:
    status, summary, sae, truth, heads, metrics, roc, faith, stab, edges, path, report = run
    assert status.startswith("done: custom on tiny-llama") and "letters" in summary
    assert report["schema_version"] == "2.0" and "activation_patching" not in report["methods"]
    assert json.loads(Path(path).read_text())["circuit"] == report["circuit"]
    assert np.allclose(sae["z"], report["methods"]["sae_node"]["scores"], atol=1e-4)  # view: 4 digits
    assert (
        np.allclose(truth["z"], report["ground_truth"]["effects"], atol=1e-3)
        and truth["scale"] == "diverging"
    )
    assert report["circuit"] and report["ground_truth"]["heads"]  # the marks below are checked on something
    for h in report["circuit"]:
        assert sae["marks"][h] in (cv.CIRCUIT, cv.BOTH)
    for h in report["ground_truth"]["heads"]:
        assert truth["marks"][h] in (cv.TRUTH, cv.BOTH)
    assert [r[0] for r in heads["data"]] == report["ranked"]  # a table of heads, not a JSON list of names
    aucs = {r[0]: r[1] for r in metrics["data"]}
    assert set(aucs) == set(report["metrics"])
    for m, auc in aucs.items():
        want = report["metrics"][m]["roc_auc"]
        assert (auc is None and want is None) or auc == pytest.approx(want, abs=1e-4)
    assert roc and faith
    assert len(stab["data"]) == 4 and "not computed" in edges["headers"][0]


def test_ablate_the_selection_equals_the_library(client: Client, tiny_llama: ModelHandle) -> None:
    client.predict("0.1, 1.*", "tiny-llama", api_name="/selection_set")
    text, rows, out = client.predict("tiny-llama", "custom", CUSTOM, 6, 0, api_name="/circuits_ablate")
    prep = patching.prepare(tiny_llama, custom_task(SPEC, tiny_llama.tokenizer))
    want = ablate(tiny_llama, prep, tiny_llama.head_set("0.1, 1.*"))
    assert out["selection_ablated"] == pytest.approx(want.selection_ablated, abs=1e-5)
    assert out["others_ablated"] == pytest.approx(want.others_ablated, abs=1e-5)
    assert [r[1] for r in rows["data"]] == pytest.approx(
        [want.clean_metric, want.selection_ablated, want.others_ablated, want.all_ablated], abs=1e-4
    )
    assert "0.1, 1.*" in text and "recovers" in text
    client.predict(api_name="/selection_clear")
    with pytest.raises(Exception, match="no head is selected"):
        client.predict("tiny-llama", "custom", CUSTOM, 6, 0, api_name="/circuits_ablate")


def test_upload_view_and_compare(client: Client, run: tuple) -> None:
    path, report = run[-2], run[-1]
    *views, diff, shown = client.predict(handle_file(path), None, api_name="/circuits_view")
    assert shown == report and "tiny-llama" in views[0] and "upload a second report" in diff["headers"][0]
    *_, diff, _ = client.predict(handle_file(path), handle_file(path), api_name="/circuits_view")
    added = next(r for r in diff["data"] if r[0] == "heads added to the circuit")
    assert added[2] == "—"


def test_bad_input_is_a_clear_error(client: Client, tmp_path: Path) -> None:
    with pytest.raises(Exception, match=r"not in the list of choices|task must be"):
        client.predict("tiny-llama", "nope", "", 6, 0, 10, "mean", "reference_rows", LAYER_SCOPES[0], [],
                       api_name="/circuits_run")  # fmt: skip
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema_version": "0.1"}))
    with pytest.raises(Exception, match="schema_version"):
        client.predict(handle_file(str(bad)), None, api_name="/circuits_view")
    with pytest.raises(Exception, match="2 tokens"):
        spec = json.loads(CUSTOM)
        spec["positive"][0]["answer"] = "cd"
        client.predict("tiny-llama", "custom", json.dumps(spec), *RUN[3:], [], api_name="/circuits_run")
    fitting = json.loads(Path(client.predict(*RUN, [], api_name="/circuits_run")[-2]).read_text())
    fitting["circuit"].append("99.99")  # a head outside the 2 × 4 model
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(fitting))
    with pytest.raises(Exception, match=r"99\.99, outside"):
        client.predict(handle_file(str(wrong)), None, api_name="/circuits_view")


def test_view_takes_bytes_not_paths() -> None:
    """Server side: an upload is bytes (or pasted text) with a size limit; a path string is just bad JSON."""
    with pytest.raises(gr.Error, match="not valid JSON"):
        circuits_view("/etc/passwd", None)
    with pytest.raises(gr.Error, match="larger than"):
        circuits_view(b" " * 3_000_000, None)
    with pytest.raises(gr.Error, match="upload report A"):
        circuits_view(None, None)


def test_unknown_metric_keys_do_not_break_the_views(run: tuple) -> None:
    report = json.loads(json.dumps(run[-1]))
    report["metrics"]["sae_node"]["auprc"] = 0.3  # a newer headscope's extra metric
    result = CircuitResult.from_json(report)
    assert cv.metrics_table(result)["headers"][1] == "ROC-AUC" and cv.summary(result)


@pytest.mark.parametrize(
    ("scope", "options"),
    [("all layers", []), ("last 2 layers", ["stability (bootstrap, 100 resamples)"]),
     ("last 4 layers", ["faithfulness curves", "edges (path patching; slow)"])],
)  # fmt: skip
def test_the_run_command_is_the_cli_running_the_same_config(scope: str, options: list[str]) -> None:
    """A cluster runner executes `run_command(cfg)`: the CLI must parse it back into the tab's config."""
    from headscope.app import circuits_tab as tab
    from headscope.cli import build_parser
    from headscope.cli.circuits import _config as cli_config
    from headscope.models import ModelHandle

    handle = ModelHandle.load("tiny-llama", device="cpu")
    cfg = tab._config(handle, "ioi", 8, 3, 20, "last", "atoms", scope, options)
    args = build_parser().parse_args([*tab.run_command(cfg), "--json"])
    assert cli_config(args) == cfg and args.print_report
