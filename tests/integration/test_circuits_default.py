"""The circuit finder on the real default model (SmolLM2-135M), with its numbers checked against independent
recomputations: the ground truth against one-head-per-forward patching, ROC-AUC against a pair count, the
faithfulness end point against a plain forward. Kept short: 4 prompt pairs, 30 SAE epochs, 2 EAP-IG steps, the last of 30
layers (the full 270-head run is bench/circuits.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from headscope.circuits import patching
from headscope.circuits.config import METHODS, CircuitConfig
from headscope.circuits.finder import find_circuit
from headscope.circuits.report import loads_report
from headscope.circuits.result import CircuitResult
from headscope.circuits.sae import SAEConfig
from headscope.circuits.tasks import make_task
from headscope.models import ModelHandle

pytestmark = pytest.mark.default_model


@pytest.fixture(scope="module")
def run(default_model: ModelHandle, one_thread: None) -> tuple[CircuitResult, dict]:
    cfg = CircuitConfig(
        task="ioi", n_examples=4, n_train=6, sae=SAEConfig(epochs=30), layers=(29, 30), ig_steps=2
    )
    result = find_circuit(default_model, cfg)
    return result, result.to_json()


def test_ioi_end_to_end(run: tuple[CircuitResult, dict], default_model: ModelHandle) -> None:
    _, report = run
    perf = report["task"]["performance"]
    # the model does IOI: the indirect object beats the subject more often than chance, and more than on negatives
    assert perf["positive"]["accuracy"] > 0.5
    assert perf["positive"]["mean_logit_diff"] > perf["negative"]["mean_logit_diff"]
    assert report["ground_truth"]["mode"] == "paired" and report["ground_truth"]["layers"] == [29]
    assert len(report["ranked"]) == 9 and len(report["circuit"]) == 1  # top 10 % of the analysed heads
    assert list(report["metrics"]) == list(METHODS)
    assert (
        report["methods"]["sae_node"]["info"]["mse_final"]
        < report["methods"]["sae_node"]["info"]["mse_first_epoch"]
    )
    assert report["methods"]["sae_node"]["info"]["n_code_examples"] == 8  # codes over every example
    assert report["published"] == []  # no published circuit for SmolLM2
    assert loads_report(json.dumps(report)) == report


def test_ground_truth_equals_unbatched_patching(
    run: tuple[CircuitResult, dict], default_model: ModelHandle
) -> None:
    result, _ = run
    prep = patching.prepare(default_model, make_task("ioi", default_model.tokenizer, n=4, seed=0))
    sources = patching.patch_sources(default_model, prep)
    clean = float(patching.metric(default_model, prep.clean, prep.answers).mean())
    assert result.ground_truth.clean_metric == pytest.approx(clean, abs=1e-4)
    for head in (0, 4, 8):
        one = clean - patching.patched_metric(default_model, prep, 29, head, sources[29])
        assert result.ground_truth.effects[29, head] == pytest.approx(one, abs=1e-4)
    assert result.faithfulness is not None
    assert result.faithfulness.full_metric == pytest.approx(clean, abs=1e-4)


def test_metrics_equal_a_pair_count(run: tuple[CircuitResult, dict]) -> None:
    result, _ = run
    truth = result.ground_truth.mask()[29]
    for m in result.methods:
        s = m.ranking()[29]
        pos, neg = s[truth], s[~truth]
        if len(pos) and len(neg):
            wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg)
            assert result.metrics[m.name].roc_auc == pytest.approx(wins / (len(pos) * len(neg)))
    gap = result.ground_truth.gap
    assert truth.tolist() == (np.abs(result.ground_truth.effects[29]) >= 0.03 * abs(gap)).tolist()


def test_exports_of_every_task_open_in_the_fields_readers(
    default_model: ModelHandle, one_thread: None
) -> None:
    """IOI, greater-than and docstring on SmolLM2 (2 pairs, the last layer's heads, EAP over the whole graph): the
    attribution graph validates with circuit-tracer's own model, the MIB file has every edge of MIB's graph of a
    30-layer, 9-query-head model (counted here from the format's description) with the method's scores."""
    from circuit_tracer.frontend.graph_models import Model

    from headscope.circuits.edges_result import EdgeAttribution
    from headscope.circuits.formats import export_report

    n_l, n_h = 30, 9
    n_edges = (
        sum(3 * n_h * (1 + la * (n_h + 1)) + 1 + la * (n_h + 1) + n_h for la in range(n_l))
        + 1
        + n_l * (n_h + 1)
    )
    for task in ("ioi", "greater_than", "docstring"):
        cfg = CircuitConfig(
            task=task, n_examples=2, n_train=4, sae=SAEConfig(epochs=5), layers=(29, 30), faithfulness=False,
            edge_methods=("eap",), edge_faithfulness=False, intervals=False,
        )  # fmt: skip
        report = find_circuit(default_model, cfg).to_json()
        graph = Model.model_validate(export_report(report, "neuronpedia"))
        assert graph.metadata.prompt_tokens == report["task"]["example_tokens"]
        assert next(n for n in graph.nodes if n.feature_type == "logit").clerp.startswith("Output ")
        mib = export_report(report, "mib", "eap", 0.01)
        assert len(mib["edges"]) == n_edges == 123_211 and mib["cfg"]["n_heads"] == n_h
        assert all(k.count("->") == 1 for k in mib["edges"])
        scores = EdgeAttribution.from_json(report["edge_attribution"]).method("eap").scores
        assert [e["score"] for e in mib["edges"].values()] == scores.tolist()
        assert 0 < sum(e["in_graph"] for e in mib["edges"].values()) <= int(0.01 * n_edges)
