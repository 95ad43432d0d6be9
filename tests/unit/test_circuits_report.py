"""End to end on a tiny model: the report validates, round-trips, compares; invalid reports are refused."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from headscope.circuits.finder import METHODS, CircuitConfig, find_circuit
from headscope.circuits.report import (
    SCHEMA_VERSION,
    compare_reports,
    loads_report,
    read_report,
    validate_report,
    write_report,
)
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
def report(tiny_gpt2: ModelHandle) -> dict:
    cfg = CircuitConfig(task="custom", n_examples=4, n_train=4, sae=SAEConfig(epochs=30), circuit_k=3)
    return find_circuit(tiny_gpt2, cfg, task_spec=json.dumps(SPEC)).to_json()


def test_report_has_the_keys_outside_checks_read(report: dict, tiny_gpt2: ModelHandle) -> None:
    assert report["schema_version"] == SCHEMA_VERSION
    assert report["model"]["name"] == "tiny-gpt2" and report["task"]["name"] == "custom"
    assert report["task"]["title"] == "letters"
    assert len(report["circuit"]) == 3 and report["circuit_rule"] == {
        "method": "sae_node",
        "rule": "top_k",
        "k": 3,
        "size": 3,
    }
    for m in METHODS:
        grid = report["methods"][m]["scores"]
        assert (len(grid), len(grid[0])) == (tiny_gpt2.facts.n_layers, tiny_gpt2.facts.n_heads)
        assert "roc_auc" in report["metrics"][m] and report["runtime_s"][m] >= 0
    assert report["ground_truth"]["mode"] == "paired"
    assert any("cannot do this task" in w for w in report["warnings"])  # a random model cannot


def test_ground_truth_is_the_thresholded_patching_effect(report: dict) -> None:
    gt = report["ground_truth"]
    effects = report["methods"]["activation_patching"]["scores"]
    expected = [
        f"{layer}.{head}"
        for layer, row in enumerate(effects)
        for head, e in enumerate(row)
        if abs(e) >= gt["threshold_frac"] * abs(gt["gap"])
    ]
    assert gt["heads"] == expected and gt["n_positive"] == len(expected)


def test_round_trip(report: dict, tmp_path: Path) -> None:
    path = write_report(report, tmp_path / "r.json")
    assert read_report(path) == report
    assert loads_report(path.read_bytes()) == report


def test_compare(report: dict) -> None:
    other = copy.deepcopy(report)
    other["circuit"] = [*report["circuit"][1:], "1.3" if "1.3" not in report["circuit"] else "1.2"]
    other["metrics"]["sae_node"]["precision"] = 0.0
    diff = compare_reports(report, other)
    assert diff["heads_removed"] == report["circuit"][:1] and len(diff["heads_added"]) == 1
    assert diff["metrics"]["sae_node"]["precision"]["delta"] == -report["metrics"]["sae_node"]["precision"]
    alien = copy.deepcopy(report)
    alien["model"]["name"] = "tiny-llama"
    with pytest.raises(InputError, match="different models"):
        compare_reports(report, alien)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda r: r.update(schema_version="0.9"), "schema_version '0.9' is not supported"),
        (lambda r: r.pop("circuit"), "'circuit' is a required property"),
        (lambda r: r["circuit"].append("layer one"), "circuit"),
        (lambda r: r["methods"]["sae_node"]["scores"].pop(), "not 2 layers × 4 heads"),
        (lambda r: r["metrics"]["sae_edge"].update(roc_auc="high"), "metrics/sae_edge/roc_auc"),
        (lambda r: r.update(extra=1), "Additional properties"),
    ],
)
def test_invalid_reports_are_rejected(report: dict, mutate, match: str) -> None:
    bad = copy.deepcopy(report)
    mutate(bad)
    with pytest.raises(InputError, match=match):
        validate_report(bad)
    with pytest.raises(InputError):
        loads_report(json.dumps(bad))


def test_malformed_json_and_oversize_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not valid JSON"):
        loads_report(b"{not json")
    with pytest.raises(InputError, match="expected a JSON object"):
        loads_report(b"[1, 2]")
    with pytest.raises(InputError, match="larger than"):
        loads_report(b" " * 3_000_000)
    with pytest.raises(InputError, match="no such report"):
        read_report(tmp_path / "missing.json")
