"""Circuits tab: a run through gradio_client on a tiny model (the report; every view drawn from it and checked
against it), the edge graph and edge faithfulness against the library, "select these heads", the exports
validated by their readers, ablating the shared selection (against the library), download → re-upload → compare,
the summary's verdicts (best method, near chance by the CI, ties, small gaps), bad input."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from circuit_tracer.frontend.graph_models import Model
from gradio_client import Client, handle_file

from headscope.app import circuits_edge_views as ev
from headscope.app import circuits_views as cv
from headscope.app.circuits_tab import (
    EDGE_PERCENT,
    LAYER_SCOPES,
    OPTIONS,
    config_of,
    draw,
    draw_edges,
    edge_circuit_heads,
    export,
    run_command,
    view,
)
from headscope.app.wiring import Ctx, handler
from headscope.circuits import patching
from headscope.circuits import summary as cs
from headscope.circuits.config import CircuitConfig
from headscope.circuits.edges_run import edge_view
from headscope.circuits.faithfulness import ablate
from headscope.circuits.result import CircuitResult, Metrics
from headscope.circuits.tasks import custom_task
from headscope.circuits.variants_score import SCORE_UNITS, SCORES
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
def report(client: Client) -> dict:
    raw, status = client.predict(
        *RUN, list(OPTIONS[:2]), ["eap", "eap_ig"], "reference", api_name="/circuits_run"
    )
    assert status.startswith("done: custom on tiny-llama")
    return raw


@pytest.fixture(scope="module")
def views(report: dict) -> dict:
    return draw({"raw": report, "selection": None, "edge_method": None}, Ctx())


def test_the_views_are_drawn_from_the_report(report: dict, views: dict) -> None:
    assert report["schema_version"] == "2.1" and "activation_patching" not in report["methods"]
    assert report["config"]["sae_variant"] == report["sae"]["variant"] == "reference"  # the dropdown's value
    assert "letters" in views["summary"] and json.loads(Path(views["report_file"]).read_text()) == report
    assert np.allclose(views["sae_grid"]["z"], report["methods"]["sae_node"]["scores"], atol=1e-4)
    truth = views["truth_grid"]
    assert (
        np.allclose(truth["z"], report["ground_truth"]["effects"], atol=1e-3)
        and truth["scale"] == "diverging"
    )
    assert report["circuit"] and report["ground_truth"]["heads"]  # the marks below are checked on something
    for h in report["circuit"]:
        assert views["sae_grid"]["marks"][h] in (cv.CIRCUIT, cv.BOTH)
    for h in report["ground_truth"]["heads"]:
        assert truth["marks"][h] in (cv.TRUTH, cv.BOTH)
    assert [r[0] for r in views["heads"]["data"]] == report["ranked"]
    head = views["metrics"]["headers"]
    for row in views["metrics"]["data"]:
        want = report["metrics"][row[0]]
        assert (row[1] is None and want["roc_auc"] is None) or row[1] == pytest.approx(
            want["roc_auc"], abs=1e-4
        )
        ci = want.get("roc_auc_ci")
        assert row[head.index("ROC-AUC 95 % CI")] == (cs.ci_text(tuple(ci)) if ci else "")
    assert len(views["stability"]["data"]) == 4 and "not computed" in views["edges"]["headers"][0]


def test_edge_views_are_the_librarys_circuit(report: dict, views: dict) -> None:
    result = CircuitResult.from_json(report)
    ea = result.edge_attribution
    assert ea is not None and ea.faithfulness is not None
    assert (
        views["edge_method"].value == "eap_ig"
        and views["edge_percent"] == cs.default_percent(ea.graph.n_edges) == 50
    )
    assert cs.default_percent(123_211) == EDGE_PERCENT  # SmolLM2: 616 edges
    for method, percent in (("eap", 20.0), ("eap_ig", 100.0)):
        fig = ev.edge_graph_figure(result, method, percent)
        want = edge_view(ea, method, percent / 100, result.task.example_tokens)
        hover = next(t for t in fig.data if t.hovertemplate == "%{text}<extra></extra>")
        assert len(hover.text) == min(len(want.edges), ev.MAX_DRAWN) > 0
        assert all(f"{e.sender} → {e.receiver}" in t for e, t in zip(want.edges, hover.text, strict=False))
        lines = [t for t in fig.data if t.mode == "lines" and t.showlegend is False]
        assert sum(len([x for x in t.x if x is not None]) // 2 for t in lines) == len(hover.text)
        tokens = next(t for t in fig.data if t.mode == "text")
        assert len(tokens.text) == len(result.task.example_tokens) == 8
        assert edge_circuit_heads(report, method, percent) == ", ".join(want.heads())
    wide = ev.edge_graph_figure(result, "eap_ig", 100.0)
    drawn = [t for t in wide.data if t.mode == "lines" and t.showlegend is False]
    by_width = sorted(drawn, key=lambda t: t.line.width)
    assert by_width[0].line.width < by_width[-1].line.width  # width grows with |score|
    table = views["edge_table"]
    for row, c in zip(table["data"], ea.faithfulness.curves, strict=True):
        assert row[1] == pytest.approx(c.cpr, abs=1e-4) and row[3] == pytest.approx(c.cmd, abs=1e-4)
        assert row[2] == cs.ci_text(c.cpr_ci)
    fig = views["edge_faithfulness"]
    assert len(fig.data) == 2 * len(ea.faithfulness.curves) and fig.layout.legend.x > 1  # legend outside
    assert (
        "EAP-IG" in fig.data[-1].hovertemplate
        and "k = %{customdata[0]:,} edges" in fig.data[-1].hovertemplate
    )
    assert fig.layout.height - fig.layout.margin.t - fig.layout.margin.b >= 300


def test_exports_open_in_their_readers(client: Client, report: dict) -> None:
    edge_in = {"raw": report, "edge_method": "eap", "edge_percent": 20}
    graph = json.loads(
        Path(export({**edge_in, "format": "neuronpedia"}, Ctx())["neuronpedia_file"]).read_text()
    )
    Model.model_validate(graph)  # circuit-tracer's own reader
    mib = json.loads(Path(export({**edge_in, "format": "mib"}, Ctx())["mib_file"]).read_text())
    ea = CircuitResult.from_json(report).edge_attribution
    assert ea is not None and len(mib["edges"]) == ea.graph.n_edges
    kept = {e.sender + "->" + e.receiver for e in edge_view(ea, "eap", 0.2).edges}
    assert {n.split("<")[0] for n, e in mib["edges"].items() if e["in_graph"]} == kept
    path = client.predict(report, "eap_ig", 5, api_name="/circuits_export_mib")
    assert json.loads(Path(path).read_text())["edges"]


def test_select_these_heads_gives_the_circuits_heads(report: dict) -> None:
    ea = CircuitResult.from_json(report).edge_attribution
    assert ea is not None
    heads = edge_circuit_heads(report, "eap_ig", 100.0)
    assert heads and heads == ", ".join(edge_view(ea, "eap_ig", 1.0).heads())  # what the button adds
    endpoint = handler(
        draw_edges, {"raw": None, "edge_method": None, "edge_percent": None}, {"edge_graph": None}
    )
    with pytest.raises(gr.Error, match=r"circuit size \(% of edges\) must be"):
        endpoint(report, "eap", 500)
    with pytest.raises(gr.Error, match="edge method must be"):
        endpoint(report, "sae_node", 5)


def test_ablate_the_selection_equals_the_library(client: Client, tiny_llama: ModelHandle) -> None:
    client.predict("0.1, 1.*", "tiny-llama", api_name="/selection_set")
    text, rows, out = client.predict("tiny-llama", "custom", CUSTOM, 6, 0, api_name="/circuits_ablate")
    prep = patching.prepare(tiny_llama, custom_task(SPEC, tiny_llama.tokenizer))
    want = ablate(tiny_llama, prep, tiny_llama.head_set("0.1, 1.*"))
    assert out["selection_ablated"] == pytest.approx(want.selection_ablated, abs=1e-5)
    assert [r[1] for r in rows["data"]] == pytest.approx(
        [want.clean_metric, want.selection_ablated, want.others_ablated, want.all_ablated], abs=1e-4
    )
    assert "0.1, 1.*" in text and "recovers" in text
    client.predict(api_name="/selection_clear")
    with pytest.raises(Exception, match="no head is selected"):
        client.predict("tiny-llama", "custom", CUSTOM, 6, 0, api_name="/circuits_ablate")


def test_upload_view_and_compare(client: Client, report: dict, tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps(report))
    shown, diff = client.predict(handle_file(str(path)), None, api_name="/circuits_view")
    assert shown == report and "upload a second report" in diff["headers"][0]
    _, diff = client.predict(handle_file(str(path)), handle_file(str(path)), api_name="/circuits_view")
    assert next(r for r in diff["data"] if r[0] == "heads added to the circuit")[2] == "—"


def test_bad_input_is_a_clear_error(client: Client, report: dict, tmp_path: Path) -> None:
    with pytest.raises(Exception, match=r"not in the list of choices|task must be"):
        client.predict("tiny-llama", "nope", "", *RUN[3:], [], [], "reference", api_name="/circuits_run")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema_version": "0.1"}))
    with pytest.raises(Exception, match="schema_version"):
        client.predict(handle_file(str(bad)), None, api_name="/circuits_view")
    spec = {**SPEC, "positive": [{**SPEC["positive"][0], "answer": "cd"}, *SPEC["positive"][1:]]}
    with pytest.raises(Exception, match="2 tokens"):
        client.predict(
            "tiny-llama", "custom", json.dumps(spec), *RUN[3:], [], [], "reference", api_name="/circuits_run"
        )
    wrong = json.loads(json.dumps(report))
    wrong["circuit"].append("99.99")  # a head outside the 2 × 4 model
    (tmp_path / "wrong.json").write_text(json.dumps(wrong))
    with pytest.raises(Exception, match=r"99\.99, outside"):
        client.predict(handle_file(str(tmp_path / "wrong.json")), None, api_name="/circuits_view")
    with pytest.raises(Exception, match=r"circuit size \(% of edges\) must be"):
        client.predict(report, "eap", 0, api_name="/circuits_edges")


def test_view_takes_bytes_not_paths() -> None:
    """Server side: an upload is bytes (or pasted text) with a size limit; a path string is just bad JSON."""
    endpoint = handler(view, {"report_a": None, "report_b": None}, {"raw": None, "comparison": None})
    with pytest.raises(gr.Error, match="not valid JSON"):
        endpoint("/etc/passwd", None)
    with pytest.raises(gr.Error, match="larger than"):
        endpoint(b" " * 9_000_000, None)
    with pytest.raises(gr.Error, match="upload report A"):
        endpoint(None, None)


def test_the_summary_judges_by_the_interval_and_says_ties(report: dict) -> None:
    result = CircuitResult.from_json(report)
    m = dict(result.metrics)
    names = list(m)
    base: Metrics = m[names[0]]
    m[names[0]] = replace(base, roc_auc=0.56, roc_auc_ci=(0.41, 0.7))  # contains 0.5: near chance
    m[names[1]] = replace(base, roc_auc=0.9, roc_auc_ci=(0.8, 0.97))
    m[names[2]] = replace(base, roc_auc=0.9, roc_auc_ci=(0.51, 0.99))  # tied best; its CI excludes 0.5
    m[names[3]] = replace(base, roc_auc=0.3, roc_auc_ci=(0.2, 0.45))  # worse than chance, but not near it
    text = "\n".join(cs.agreement_lines(replace(result, metrics=m)))
    t = cs.METHOD_TITLES
    assert f"**tie** between {t[names[1]]} and {t[names[2]]}" in text
    assert f"{t[names[0]]} is near chance" in text and "[0.41, 0.70] contains 0.5" in text
    assert text.count("near chance") == 1
    m[names[2]] = replace(base, roc_auc=0.8, roc_auc_ci=(0.6, 0.9))
    assert (
        f"Best agreement with the ground truth: **{t[names[1]]}** (ROC-AUC 0.900, 95 % CI [0.80, 0.97])"
        in ("\n".join(cs.agreement_lines(replace(result, metrics=m))))
    )
    f = result.faithfulness
    assert f is not None
    heads = replace(result, edge_attribution=None)  # the head curves' warning alone
    small = replace(heads, faithfulness=replace(f, full_metric=2.0, empty_metric=1.85))
    assert [w[:4] for w in cs.gap_warnings(small)] == ["head"]
    assert "under 10 % of |m(N)| = 2" in cs.gap_warnings(small)[0] and "under 10 %" in cv.summary(small)
    assert not cs.gap_warnings(replace(heads, faithfulness=replace(f, full_metric=2.0, empty_metric=1.7)))


def test_unanalysed_layers_are_hatched_not_zero(report: dict) -> None:
    result = CircuitResult.from_json(report)
    one = replace(result, ground_truth=replace(result.ground_truth, layers=(1,)))
    for grid in (cv.score_grid(one, "sae_node", []), cv.truth_grid(one, [])):
        assert grid["z"][0] == [None] * 4 and None not in grid["z"][1]
        assert "hatched (not analysed, not zero)" in grid["caption"] and grid["missing"] == "not analysed"
    roc = cv.roc_figure(result)
    assert all("top k = %{customdata} heads" in t.hovertemplate for t in roc.data[1:])


def test_the_drawn_roc_encloses_the_stated_auc(report: dict) -> None:
    """Tied scores move FPR and TPR at once: the curve joins its points straight, so the area under what is drawn
    is the ROC-AUC in the legend (a step drawn horizontal-first showed 0.6 under a legend saying 0.8)."""
    from headscope.circuits.scoring import roc_auc, roc_curve

    scores, truth = np.array([3.0, 2.0, 2.0, 2.0, 2.0, 1.0]), np.array([1, 1, 0, 1, 0, 0], dtype=bool)
    fpr, tpr = roc_curve(scores, truth)
    assert roc_auc(scores, truth) == pytest.approx(7 / 9)  # P(pos > neg) with ties ½, counted by hand
    result = CircuitResult.from_json(report)
    name = next(iter(result.metrics))
    met = result.metrics[name]
    tied = replace(result, metrics={name: replace(met, roc=replace(met.roc, fpr=tuple(fpr), tpr=tuple(tpr)))})
    trace = cv.roc_figure(tied).data[1]
    assert trace.line.shape in (None, "linear")
    assert float(np.trapezoid(trace.y, trace.x)) == pytest.approx(7 / 9)  # drawn as a step: 5 / 9
    faith = cv.faithfulness_figure(result)
    assert faith.layout.legend.x > 1 and faith.layout.height - 60 - 70 >= 300
    assert all("k = %{customdata} of 8 heads" in t.hovertemplate for t in faith.data)


def test_each_grid_names_the_unit_of_its_scores(report: dict) -> None:
    result = CircuitResult.from_json(report)
    assert result.sae is not None and result.sae.config["score"] == "set_difference"  # the reference variant
    assert cv.score_grid(result, "sae_node", [])["unit"] == "codes (count)"
    before_variants = replace(result, sae=None)  # a report from before SAE variants: the reference
    assert cv.score_unit(before_variants, "sae_node") == "codes (count)"
    # the default variant's separation score is an effect size, not a count
    separated = replace(result, sae=replace(result.sae, config={**result.sae.config, "score": "separation"}))
    assert cv.score_grid(separated, "sae_node", [])["unit"] == "effect size (pooled sd)"
    assert cv.score_unit(result, "sae_edge") == "count" and "Δ logit" in cv.score_unit(result, "eap_ig")
    assert set(SCORE_UNITS) == set(SCORES)  # every score a variant can use has its unit


def test_unknown_metric_keys_do_not_break_the_views(report: dict) -> None:
    data = json.loads(json.dumps(report))
    data["metrics"]["sae_node"]["auprc"] = 0.3  # a newer headscope's extra metric
    result = CircuitResult.from_json(data)
    assert cv.metrics_table(result)["headers"][1] == "ROC-AUC" and cv.summary(result)


@pytest.mark.parametrize(
    ("scope", "options", "edges"),
    [("all layers", [], []), ("last 2 layers", ["stability (bootstrap, 100 resamples)"], ["eap"]),
     ("last 4 layers", ["faithfulness curves", "edges (path patching; slow)"], ["eap_ig", "eap"])],
)  # fmt: skip
def test_the_run_command_is_the_cli_running_the_same_config(
    scope: str, options: list[str], edges: list[str]
) -> None:
    """A cluster runner executes `run_command(cfg)`: the CLI must parse it back into the tab's config."""
    from headscope.cli import build_parser
    from headscope.cli.circuits import config_from_argv

    inputs = {"task": "ioi", "n_examples": 8, "seed": 3, "epochs": 20, "reduce": "last", "norm": "atoms",
              "scope": scope, "options": options, "edge_methods": edges}  # fmt: skip
    cfg = config_of({**inputs, "sae_variant": "reference" if edges else None}, 30)
    assert cfg.sae_variant == ("reference" if edges else CircuitConfig().sae_variant)
    argv = run_command(cfg)
    assert config_from_argv(argv) == cfg and build_parser().parse_args([*argv, "--json"]).print_report


def test_progress_says_the_sub_step_and_the_time_left() -> None:
    from headscope.app import circuits_tab as tab
    from headscope.circuits.finder import _Stages

    clock = iter(
        [100.0, 110.0, 130.0]
    )  # the job starts at 100 s, the stage at 110 s, its 17th layer at 130 s
    shown: list[tuple[float | None, str]] = []
    # a clock of its own: patching time.monotonic would stop the app server's threads that read it too
    say = tab.with_time_left(lambda frac, desc="": shown.append((frac, desc)), clock=lambda: next(clock))
    assert say is not None
    stages = _Stages(lambda stage, frac: say(frac, desc=stage), {"task": 1.0, "ground truth": 3.0})
    stages("ground truth")(17, 30)
    frac = 0.25 + 0.75 * 17 / 30
    assert shown[0] == (0.25, "ground truth, ~30 s left")  # 10 s for a quarter
    assert shown[1] == (
        pytest.approx(frac),
        f"ground truth: patching layer 17/30, ~{round(30 * (1 - frac) / frac)} s left",
    )
