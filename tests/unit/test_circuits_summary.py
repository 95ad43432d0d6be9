"""circuits/summary.py, the view-model of a report, against independent computations on a tiny run: the best
method and ties from the ROC-AUCs, near chance from the intervals, the boundary tie from the scores, unanalysed
layers as None, the k behind each ROC point from the scores themselves, the small-gap warning, the table rows and
the JSON round trip (what `headscope circuits run --json` prints)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from headscope.circuits import summary as cs
from headscope.circuits.config import CircuitConfig
from headscope.circuits.finder import find_circuit
from headscope.circuits.result import Circuit, CircuitResult, Metrics
from headscope.circuits.sae import SAEConfig
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
