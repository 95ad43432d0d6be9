"""The circuit finder on the real default model (SmolLM2-135M): IOI accuracy is reported, the run completes.

Kept short: 4 prompt pairs, 50 SAE epochs and the last of 30 layers (the full 270-head run is bench/circuits.py).
"""

from __future__ import annotations

import json

import pytest

from headscope.circuits.finder import METHODS, CircuitConfig, find_circuit
from headscope.circuits.report import loads_report
from headscope.circuits.sae import SAEConfig
from headscope.models import ModelHandle

pytestmark = pytest.mark.default_model


def test_ioi_end_to_end(default_model: ModelHandle) -> None:
    cfg = CircuitConfig(task="ioi", n_examples=4, n_train=6, sae=SAEConfig(epochs=50), layers=(29, 30))
    report = find_circuit(default_model, cfg).to_json()
    perf = report["task"]["performance"]
    print("IOI on SmolLM2-135M:", perf)
    assert 0.0 <= perf["positive"]["accuracy"] <= 1.0
    # the model does IOI: the indirect object beats the subject more often than chance, and more than on negatives
    assert perf["positive"]["accuracy"] > 0.5
    assert perf["positive"]["mean_logit_diff"] > perf["negative"]["mean_logit_diff"]
    assert report["ground_truth"]["mode"] == "paired"
    assert len(report["ranked"]) == 9 and len(report["circuit"]) == 1  # top 10 % of the analysed heads
    assert set(report["metrics"]) == set(METHODS)
    assert report["methods"]["sae_node"]["mse_final"] < report["methods"]["sae_node"]["mse_first_epoch"]
    assert report["published"] == []  # no published circuit for SmolLM2
    assert loads_report(json.dumps(report)) == report
