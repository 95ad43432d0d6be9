"""Reports (schema 2.1): the typed result round-trips through JSON, the ground truth stays apart from the scored
methods, every ROC-AUC and CPR/CMD carries its bootstrap interval, 1.0 and 2.0 reports migrate on read, and invalid
or ill-fitting reports are refused with one line; the report's summary (circuits/summary.py: best method and ties,
near chance, boundary tie, unanalysed layers, ROC k, small gaps, table rows) agrees with independent computations."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from headscope.circuits import scoring
from headscope.circuits import summary as cs
from headscope.circuits.config import GROUND_TRUTH_METHOD, METHODS, CircuitConfig
from headscope.circuits.finder import find_circuit
from headscope.circuits.report import (
    SCHEMA_VERSION,
    compare_reports,
    comparison_rows,
    loads_report,
    loads_upload,
    migrate,
    read_report,
    validate_report,
    write_report,
)
from headscope.circuits.result import Circuit, CircuitResult, Metrics
from headscope.circuits.sae import SAEConfig
from headscope.errors import InputError
from headscope.models import ModelHandle

SPEC = {
    "name": "letters",
    "positive": [
        {"prompt": "abcabcab", "answer": "c", "wrong": "a"},
        {"prompt": "xyzxyzxy", "answer": "z", "wrong": "x"},
        {"prompt": "pqrpqrpq", "answer": "r", "wrong": "p"},
        {"prompt": "klmklmkl", "answer": "m", "wrong": "k"},
    ],
    "negative": [
        {"prompt": "abcdefgh"},
        {"prompt": "xyzuvwst"},
        {"prompt": "pqrstuvw"},
        {"prompt": "klmnopqr"},
    ],
}


@pytest.fixture(scope="module")
def result(tiny_gpt2: ModelHandle) -> CircuitResult:
    cfg = CircuitConfig(task="custom", n_examples=4, n_train=4, sae=SAEConfig(epochs=30), circuit_k=3)
    return find_circuit(tiny_gpt2, cfg, task_spec=json.dumps(SPEC))


@pytest.fixture(scope="module")
def report(result: CircuitResult) -> dict:
    return result.to_json()


def test_report_layout(report: dict, tiny_gpt2: ModelHandle) -> None:
    assert report["schema_version"] == SCHEMA_VERSION == "2.1"
    assert report["model"]["name"] == "tiny-gpt2" and report["task"]["title"] == "letters"
    assert report["circuit_rule"] == {"method": "sae_node", "rule": "top_k", "k": 3, "size": 3}
    assert list(report["methods"]) == list(METHODS) == list(report["metrics"]) == list(report["runtime_s"])
    assert GROUND_TRUTH_METHOD not in report["methods"]  # the ground truth is never a scored method
    gt = report["ground_truth"]
    assert gt["method"] == "activation_patching" and gt["mode"] == "paired" and gt["metric"] == "logit_diff"
    assert gt["runtime_s"] > 0 and gt["layers"] == [0, 1]
    shape = (tiny_gpt2.facts.n_layers, tiny_gpt2.facts.n_heads)
    assert np.shape(gt["effects"]) == shape and all(
        np.shape(b["scores"]) == shape for b in report["methods"].values()
    )
    assert report["task"]["example_tokens"] == list("abcabcab")
    assert any("cannot do this task" in w for w in report["warnings"])  # a random model cannot
    assert report["intervals"]["n_bootstrap"] == 200 and report["edge_attribution"] is None


def test_every_roc_auc_and_area_has_its_interval(report: dict) -> None:
    for m, body in report["metrics"].items():
        if body["roc_auc"] is not None:
            lo, hi = body["roc_auc_ci"]
            assert 0 <= lo <= hi <= 1, m
    for c in report["faithfulness"]["curves"]:
        for key in ("cpr", "cmd"):
            lo, hi = c[f"{key}_ci"]
            assert lo <= hi and np.isfinite([lo, hi]).all()


def test_ground_truth_is_the_thresholded_patching_effect(report: dict) -> None:
    gt = report["ground_truth"]
    gap = gt["clean_metric"] - gt["corrupt_metric"]
    expected = [
        f"{layer}.{head}"
        for layer, row in enumerate(gt["effects"])
        for head, e in enumerate(row)
        if abs(e) >= gt["threshold_frac"] * abs(gap)
    ]
    assert gt["heads"] == expected and gt["n_positive"] == len(expected)


def test_metrics_are_recomputed_independently(report: dict) -> None:
    """Each method's ROC-AUC equals a brute-force pair count against the report's own truth and scores."""
    truth = np.zeros((2, 4), dtype=bool)
    for h in report["ground_truth"]["heads"]:
        truth[tuple(int(v) for v in h.split("."))] = True
    for m, body in report["metrics"].items():
        s = np.asarray(report["methods"][m]["scores"], dtype=float)
        s = np.abs(s) if m in ("attribution_patching", "eap_ig") else s
        pos, neg = s[truth], s[~truth]
        if len(pos) and len(neg):
            wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg)
            assert body["roc_auc"] == pytest.approx(wins / (len(pos) * len(neg)))
        else:
            assert body["roc_auc"] is None
        fpr, tpr = body["roc"]["fpr"], body["roc"]["tpr"]
        assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)


def test_typed_round_trip(result: CircuitResult, report: dict, tmp_path: Path) -> None:
    again = CircuitResult.from_json(report)
    assert again.to_json() == report
    assert again.ground_truth.heads == result.ground_truth.heads
    assert np.allclose(again.method("eap_ig").scores, result.method("eap_ig").scores)
    path = write_report(report, tmp_path / "r.json")
    assert read_report(path) == report and loads_report(path.read_bytes()) == report
    assert loads_upload(path.read_bytes(), "report A") == loads_upload(path.read_text(), "report A") == report


def test_compare(report: dict) -> None:
    other = copy.deepcopy(report)
    other["circuit"] = [*report["circuit"][1:], "1.3" if "1.3" not in report["circuit"] else "1.2"]
    other["metrics"]["sae_node"]["precision"] = 0.0
    diff = compare_reports(report, other)
    assert diff["heads_removed"] == report["circuit"][:1] and len(diff["heads_added"]) == 1
    assert diff["metrics"]["sae_node"]["precision"]["delta"] == -report["metrics"]["sae_node"]["precision"]
    rows = {r["what"]: r for r in comparison_rows(diff)}
    assert rows["heads removed from the circuit"]["a"] == report["circuit"][0]
    assert rows["heads added to the circuit"]["b"] == diff["heads_added"][0]
    assert rows["sae_node: precision"] == {
        "what": "sae_node: precision",
        **diff["metrics"]["sae_node"]["precision"],
    }
    assert len(rows) == 2 + sum(len(v) for v in diff["metrics"].values())
    alien = copy.deepcopy(report)
    alien["model"]["name"] = "tiny-llama"
    with pytest.raises(InputError, match="different models"):
        compare_reports(report, alien)


def _self_scored(r: dict) -> None:
    r["methods"]["activation_patching"] = {"scores": r["ground_truth"]["effects"]}
    r["runtime_s"]["activation_patching"] = 1.0


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda r: r.update(schema_version="0.9"), "schema_version '0.9' is not supported"),
        (lambda r: r.pop("circuit"), "'circuit' is a required property"),
        (lambda r: r["circuit"].append("layer one"), "circuit"),
        (lambda r: r["methods"]["sae_node"]["scores"].pop(), "not 2 layers × 4 heads"),
        (lambda r: r["ground_truth"]["effects"][0].pop(), "ground_truth.effects is not 2 layers × 4 heads"),
        (lambda r: r["metrics"]["sae_edge"].update(roc_auc="high"), "metrics/sae_edge/roc_auc"),
        (lambda r: r.update(extra=1), "Additional properties"),
        (_self_scored, "ground truth's own method"),
        (lambda r: r["circuit"].append("99.99"), "head 99.99, outside the model's 2 layers × 4 heads"),
        (lambda r: r["ground_truth"]["heads"].append("1.4"), "head 1.4, outside"),
        (lambda r: r["runtime_s"].pop("eap_ig"), "runtime_s must list exactly the scored methods"),
    ],
)
def test_invalid_reports_are_rejected(report: dict, mutate, match: str) -> None:
    bad = copy.deepcopy(report)
    mutate(bad)
    with pytest.raises(InputError, match=match):
        validate_report(bad)
    with pytest.raises(InputError):
        loads_report(json.dumps(bad))


def test_unknown_metric_keys_are_kept_and_ignored(report: dict) -> None:
    extra = copy.deepcopy(report)
    extra["metrics"]["sae_node"]["auprc"] = 0.4  # a newer headscope's metric
    assert loads_report(json.dumps(extra))["metrics"]["sae_node"]["auprc"] == 0.4
    assert (
        CircuitResult.from_json(extra).metrics["sae_node"].roc_auc == report["metrics"]["sae_node"]["roc_auc"]
    )


def test_a_1_0_report_migrates_on_read() -> None:
    old = json.loads(REPORT_1_0)
    new = loads_report(REPORT_1_0)
    assert new["schema_version"] == "2.1" and "activation_patching" not in new["methods"]
    assert new["edge_attribution"] is None and new["intervals"] is None
    gt = new["ground_truth"]
    assert gt["effects"] == old["methods"]["activation_patching"]["scores"]
    assert (
        gt["heads"] == old["ground_truth"]["heads"]
        and gt["runtime_s"] == old["runtime_s"]["activation_patching"]
    )
    assert gt["clean_metric"] - gt["corrupt_metric"] == pytest.approx(old["ground_truth"]["gap"], abs=1e-5)
    assert new["config"]["sae"]["decoder_norm"] == "atoms"
    assert new["methods"]["sae_node"]["scores"] == old["methods"]["sae_node"]["scores"]
    for m in ("sae_node", "sae_edge", "attribution_patching"):
        assert new["metrics"][m]["roc_auc"] == pytest.approx(old["metrics"][m]["roc_auc"])
    truth = np.zeros((2, 4), dtype=bool)
    for h in gt["heads"]:
        truth[tuple(int(v) for v in h.split("."))] = True
    s = np.asarray(new["methods"]["sae_node"]["scores"])
    assert new["metrics"]["sae_node"]["roc"]["fpr"] == scoring.roc_curve(s, truth)[0]
    assert any("migrated from schema 1.0" in w for w in new["warnings"])
    assert migrate(new) is new  # the current version passes through
    assert CircuitResult.from_json(old).ground_truth.mode == old["ground_truth"]["mode"]


def test_a_2_0_report_reads_as_2_1_without_the_new_parts(report: dict) -> None:
    old = copy.deepcopy(report)
    old["schema_version"] = "2.0"
    for key in ("edge_attribution", "intervals", "sae"):  # what 2.1 added
        old.pop(key, None)
    for body in old["metrics"].values():
        del body["roc_auc_ci"]
    for c in old["faithfulness"]["curves"]:
        del c["cpr_ci"], c["cmd_ci"]
    del old["config"]["edge_methods"], old["config"]["edge_faithfulness"], old["config"]["intervals"]
    new = loads_report(json.dumps(old))
    assert new["schema_version"] == "2.1" and new["intervals"] is None and new["edge_attribution"] is None
    typed = CircuitResult.from_json(old)
    assert typed.metrics["sae_node"].roc_auc_ci is None and typed.config.edge_methods == ()
    bad = copy.deepcopy(old)
    bad["circuit"] = "1.2"
    with pytest.raises(InputError, match="circuit"):
        loads_report(json.dumps(bad))


def test_malformed_json_and_oversize_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not valid JSON"):
        loads_report(b"{not json")
    with pytest.raises(InputError, match="expected a JSON object"):
        loads_report(b"[1, 2]")
    with pytest.raises(InputError, match="larger than"):
        loads_report(b" " * 9_000_000)
    with pytest.raises(InputError, match="circuit report file not found"):
        read_report(tmp_path / "missing.json")
    with pytest.raises(InputError, match="upload report A as a JSON file"):
        loads_upload(None, "report A")
    with pytest.raises(InputError, match="not valid JSON"):
        loads_upload("/etc/passwd", "report A")  # a path string is text, never opened


# A schema-1.0 report written by the previous headscope (commit 7d246f2) on tiny-gpt2, floats rounded.
REPORT_1_0 = (
    '{"schema_version":"1.0","created_at":"2026-11-29T17:52:19+00:00","software":{"headscope":"0.1.0","torch"'
    ':"2.13.0+cpu","transformers":"5.24.0","transformer_lens":"3.9.0","numpy":"2.4.6","scipy":"1.17.1","pytho'
    'n":"3.11.7"},"model":{"name":"tiny-gpt2","kind":"tiny","source":"random init (seeded) tiny-gpt2","sha256'
    '":null,"revision":null,"license":"n/a (random weights)","n_layers":2,"n_heads":4,"d_model":64},"task":{"'
    'name":"custom","title":"letters","seed":0,"n_positive":4,"n_negative":4,"notes":[],"example_positive":"a'
    'bcabcab","example_negative":"abcdefgh","performance":{"positive":{"accuracy":0.75,"mean_logit_diff":0.11'
    '8685},"negative":{"accuracy":0.5,"mean_logit_diff":0.034467},"can_do_task":false}},"config":{"task":"cus'
    'tom","n_examples":4,"seed":0,"n_train":4,"reduce":"mean","sae":{"n_latents":200,"l1":0.02,"lr":0.001,"ep'
    'ochs":30},"circuit_k":3,"circuit_threshold":null,"gt_frac":0.03,"layers":null,"sae_seed":null},"seeds":{'
    '"data":0,"sae":0,"split":0},"methods":{"sae_node":{"scores":[[0.0,0.0,1.0,0.0],[1.0,0.0,1.0,0.0]],"mse_f'
    'irst_epoch":2.6e-05,"mse_final":3.3e-05,"n_train_examples":4,"n_eval_examples":4,"n_distinct_codes":6},"'
    'sae_edge":{"scores":[[4.0,4.0,10.0,4.0],[4.0,1.0,4.0,1.0]],"mse_first_epoch":2.6e-05,"mse_final":3.3e-05'
    ',"n_train_examples":4,"n_eval_examples":4,"n_distinct_codes":6},"attribution_patching":{"scores":[[-0.00'
    '342,-0.01202,-0.004045,0.005498],[0.006587,0.000121,-0.000804,-0.005829]],"source":"paired"},"activation'
    '_patching":{"scores":[[-0.003399,-0.011996,-0.003869,0.00556],[0.006665,0.000361,-0.000783,-0.005715]],"'
    'mode":"paired","clean_metric":0.118685,"corrupt_metric":0.034467}},"ranked":["0.2","1.0","1.2","0.0","0.'
    '1","0.3","1.1","1.3"],"circuit":["0.2","1.0","1.2"],"circuit_rule":{"method":"sae_node","rule":"top_k","'
    'k":3,"size":3},"ground_truth":{"kind":"activation_patching","mode":"paired","threshold_frac":0.03,"gap":'
    '0.084218,"n_positive":6,"heads":["0.0","0.1","0.2","0.3","1.0","1.3"]},"metrics":{"sae_node":{"roc_auc":'
    '0.416667,"precision":0.666667,"recall":0.333333,"spearman":-0.056344},"sae_edge":{"roc_auc":0.708333,"pr'
    'ecision":1.0,"recall":0.5,"spearman":0.151211},"attribution_patching":{"roc_auc":1.0,"precision":1.0,"re'
    'call":0.5,"spearman":1.0},"activation_patching":{"roc_auc":1.0,"precision":1.0,"recall":0.5,"spearman":1'
    '.0}},"published":[],"runtime_s":{"sae_node":1.0168,"sae_edge":1.0479,"attribution_patching":0.2165,"acti'
    'vation_patching":0.7074},"warnings":["the model cannot do this task (accuracy 0.75 on positives; mean lo'
    "git difference 0.12 on positives vs 0.03 on negatives): circuit scores and their metrics are not meaning"
    'ful"]}'
)


# ---- the report's summary (circuits/summary.py), against independent computations --------------------------------
def _with_aucs(result: CircuitResult, aucs: dict[str, tuple[float, tuple[float, float]]]) -> CircuitResult:
    m = dict(result.metrics)
    for name, (auc, ci) in aucs.items():
        m[name] = replace(m[name], roc_auc=auc, roc_auc_ci=ci)
    return replace(result, metrics=m)


def test_best_method_ties_and_near_chance(result: CircuitResult) -> None:
    a, b, c, d = list(result.metrics)
    r = _with_aucs(result, {a: (0.56, (0.41, 0.7)), b: (0.9, (0.8, 0.97)), c: (0.9004, (0.51, 0.99)),
                            d: (0.3, (0.2, 0.45))})  # fmt: skip
    got = cs.agreement(r)
    assert got.best == (b, c) and got.roc_auc == 0.9 and got.roc_auc_ci is None  # equal at 3 decimals: a tie
    assert got.near_chance == (a,)  # only a's interval holds 0.5; d is worse than chance, not near it
    text = "\n".join(cs.agreement_lines(r))
    assert f"**tie** between {cs.title(b)} and {cs.title(c)}" in text and "[0.41, 0.70] contains 0.5" in text
    alone = cs.agreement(_with_aucs(r, {c: (0.8, (0.6, 0.9))}))
    assert alone.best == (b,) and alone.roc_auc == 0.9 and alone.roc_auc_ci == (0.8, 0.97)
    none = replace(r, metrics={k: replace(v, roc_auc=None) for k, v in r.metrics.items()})
    assert cs.agreement(none).best == () and "No method has a ROC-AUC" in cs.agreement_lines(none)[0]


def test_near_chance_is_not_judged_without_intervals(result: CircuitResult) -> None:
    bare = replace(result, intervals=None)
    assert not cs.agreement(bare).judged
    assert "near-chance methods are not judged" in cs.agreement_lines(bare)[-1]


def test_the_boundary_tie_is_read_from_the_scores(result: CircuitResult) -> None:
    c = result.circuit
    scores = result.method(c.method).scores
    n_heads = scores.shape[1]
    flat = [float(scores[int(h.split(".")[0]), int(h.split(".")[1])]) for h in c.ranked]
    k = len(c.heads)
    tie = cs.boundary_tie(result)
    assert (tie is not None) == (c.rule == "top_k" and 0 < k < len(flat) and flat[k - 1] == flat[k])
    # force a tie: every head scores the same, the circuit is the first 3 in ranked order
    flat_scores = np.ones_like(scores)
    methods = tuple(replace(m, scores=flat_scores) if m.name == c.method else m for m in result.methods)
    tied = replace(result, methods=methods, circuit=Circuit(c.ranked, c.ranked[:3], c.method, "top_k"))
    got = cs.boundary_tie(tied)
    assert got is not None and got.heads == c.ranked and got.inside == 3 and got.k == 3 and got.score == 1.0
    assert len(c.ranked) == len(result.ground_truth.layers) * n_heads
    assert "Tie at the circuit's boundary" in "\n".join(cs.summarize(tied).text)


def test_an_undefined_spearman_is_said_with_its_reason(result: CircuitResult) -> None:
    assert all(m.spearman is not None for m in result.metrics.values())
    assert cs.undefined_spearman_text(result) == []
    # one method scoring every head the same: scoring.spearman has no ranks to correlate, the table cell is blank
    name = result.methods[0].name
    flat = replace(result.method(name), scores=np.full_like(result.method(name).scores, 0.5))
    metrics = {**result.metrics, name: replace(result.metrics[name], spearman=None)}
    assert scoring.spearman(flat.scores.ravel(), np.abs(result.ground_truth.effects).ravel()) is None
    tied = replace(result, methods=(flat, *result.methods[1:]), metrics=metrics)
    (line,) = cs.undefined_spearman_text(tied)
    assert (
        line.startswith(f"Spearman vs |effect| is undefined for {cs.title(name)}:") and "same score" in line
    )
    assert line in cs.summarize(tied).text
    row = next(r for r in cs.metric_rows(tied) if r["method"] == name)
    assert row["spearman"] is None
    # every head with the same effect: undefined for every method, and the reason is the ground truth's
    gt = replace(result.ground_truth, effects=np.ones_like(result.ground_truth.effects))
    none = replace(
        result, ground_truth=gt, metrics={k: replace(v, spearman=None) for k, v in result.metrics.items()}
    )
    (line,) = cs.undefined_spearman_text(none)
    assert "same patching effect" in line and all(cs.title(m.name) in line for m in result.methods)


def test_unanalysed_layers_are_none_and_roc_k_counts_heads(result: CircuitResult) -> None:
    gt = result.ground_truth
    one = replace(result, ground_truth=replace(gt, layers=(1,)))
    grid = cs.analysed(one, gt.effects)
    assert grid[0] == [None] * gt.effects.shape[1] and grid[1] == pytest.approx(gt.effects[1].tolist())
    assert (
        "hatched (not analysed, not zero)" in (cs.skipped_caption(one) or "")
        and cs.skipped_caption(result) is None
    )
    truth = set(gt.heads)
    for name, met in result.metrics.items():
        ks = cs.roc_k(result, name)
        assert ks[0] == 0 and ks[-1] == len(result.circuit.ranked)
        # independently: at each ROC point, TP + FP heads are above the threshold
        for f, t, k in zip(met.roc.fpr, met.roc.tpr, ks, strict=True):
            assert k == round(t * len(truth) + f * (len(result.circuit.ranked) - len(truth)))


def test_small_gap_warning(result: CircuitResult) -> None:
    f = result.faithfulness
    assert f is not None
    heads = replace(result, edge_attribution=None)
    small = replace(heads, faithfulness=replace(f, full_metric=2.0, empty_metric=1.85))
    assert cs.gap_warnings(small) == [cs.gap_warning("head", 2.0, 1.85)]
    assert "|m(N) − m(∅)| = 0.15, under 10 % of |m(N)| = 2" in cs.gap_warnings(small)[0]
    assert not cs.gap_warnings(replace(heads, faithfulness=replace(f, full_metric=2.0, empty_metric=1.7)))
    assert cs.summarize(small).warnings[-1] == cs.gap_warnings(small)[0]


def test_rows_are_the_results_values(result: CircuitResult) -> None:
    rows = cs.head_rows(result)
    assert [r["head"] for r in rows] == list(result.circuit.ranked) and [r["rank"] for r in rows][:2] == [
        1,
        2,
    ]
    for r in rows:
        layer, head = map(int, r["head"].split("."))
        assert r["effect"] == pytest.approx(float(result.ground_truth.effects[layer, head]))
        assert r["sae_node"] == pytest.approx(float(result.method("sae_node").scores[layer, head]))
        assert (r["truth"] == "yes") == (r["head"] in result.ground_truth.heads)
    for r in cs.metric_rows(result):
        met: Metrics = result.metrics[r["method"]]
        assert r["auc"] == met.roc_auc and r["auc_ci"] == cs.ci_text(met.roc_auc_ci)
    assert (
        cs.ci_text((0.123, 0.987)) == "[0.12, 0.99]" and cs.num(None) == "n/a" and cs.num(1e-5) == "1.00e-05"
    )
    assert (
        cs.default_percent(123_211) == 0.5
        and cs.default_percent(110) == 50.0
        and cs.default_percent(10) == 100.0
    )


def test_the_summary_round_trips_as_json(result: CircuitResult) -> None:
    s = cs.summarize(result)
    data = json.loads(json.dumps(s.to_json()))
    assert cs.CircuitSummary.from_json(data) == s
    assert data["agreement"]["best"] == list(cs.agreement(result).best) and s.text[0].startswith("**")


def test_an_edge_circuit_needs_edge_scores_and_a_scored_method(result: CircuitResult) -> None:
    from headscope.circuits.edge_layout import circuit_at
    from headscope.errors import InputError

    with pytest.raises(InputError, match="no edge scores"):
        circuit_at(replace(result, edge_attribution=None), "eap", 5)
    if result.edge_attribution is not None:
        with pytest.raises(InputError, match="edge method must be one of"):
            circuit_at(result, "sae_node", 5)
