"""Neuronpedia-graph and MIB-circuit exports: they carry the required fields of the published formats, their own
fields say what the report says, and import gives back the report exactly; edited or foreign files are refused."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from headscope.circuits.config import CircuitConfig
from headscope.circuits.finder import find_circuit
from headscope.circuits.formats import check_format, export_report, import_report, loads_export
from headscope.circuits.sae import SAEConfig
from headscope.errors import InputError
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
# The required fields of the published formats, written out here independently of assets/schemas.
NEURONPEDIA_NODE = {"node_id", "feature", "layer", "ctx_idx", "feature_type", "jsNodeId", "clerp"}


@pytest.fixture(scope="module")
def report(tiny_llama: ModelHandle) -> dict:
    cfg = CircuitConfig(task="custom", n_examples=3, sae=SAEConfig(epochs=10), edges=True, circuit_k=2)
    return find_circuit(tiny_llama, cfg, task_spec=SPEC).to_json()


def test_neuronpedia_export(report: dict) -> None:
    g = export_report(report, "neuronpedia")
    assert {"metadata", "qParams", "nodes", "links"} <= set(g)
    assert {"slug", "scan", "prompt_tokens", "prompt"} <= set(g["metadata"])
    assert g["metadata"]["prompt_tokens"] == list("abcabcab") and g["metadata"]["scan"] == "tiny-llama"
    assert all(set(n) >= NEURONPEDIA_NODE for n in g["nodes"])
    assert all({"source", "target", "weight"} <= set(k) for k in g["links"])
    heads = [n for n in g["nodes"] if n["feature_type"] == "attention head"]
    assert len(heads) == 8
    scores = np.asarray(report["methods"]["sae_node"]["scores"])
    for n in heads:
        layer, head = int(n["layer"]), int(n["feature"])
        assert n["activation"] == pytest.approx(report["ground_truth"]["effects"][layer][head])
        assert n["influence"] == pytest.approx(scores[layer, head] / np.abs(scores).max())
    pinned = {p.rsplit("_", 1)[0].replace("_", ".") for p in g["qParams"]["pinnedIds"]}
    assert pinned == set(report["circuit"])
    n_edges = len(report["edges"]["edges"])
    assert len(g["links"]) == len(report["circuit"]) + n_edges


def test_mib_export(report: dict) -> None:
    m = export_report(report, "mib", "eap_ig")
    assert m["cfg"]["n_layers"] == 2 and m["cfg"]["n_heads"] == 4
    eap = np.abs(np.asarray(report["methods"]["eap_ig"]["scores"]))
    for layer in range(2):
        for head in range(4):
            node = m["nodes"][f"a{layer}.h{head}"]
            assert node["score"] == pytest.approx(eap[layer, head])
            assert node["in_graph"] == (f"{layer}.{head}" in report["circuit"])
        assert m["nodes"][f"m{layer}"]["in_graph"]
    edges = report["edges"]["edges"]
    assert len(m["edges"]) == len(edges)
    e = edges[0]
    key = f"a{e['sender'].replace('.', '.h')}->a{e['receiver'].replace('.', '.h')}"
    assert m["edges"][key] == {"score": e["effect"], "in_graph": e["in_truth"]}


@pytest.mark.parametrize("fmt", ["neuronpedia", "mib"])
def test_round_trip_is_lossless(report: dict, fmt: str) -> None:
    text = json.dumps(export_report(report, fmt))
    assert loads_export(text) == report
    assert import_report(json.loads(text)) == report


def test_edited_foreign_and_broken_files_are_refused(report: dict) -> None:
    g = export_report(report, "neuronpedia")
    edited = copy.deepcopy(g)
    edited["qParams"]["pinnedIds"] = edited["qParams"]["pinnedIds"][:1]
    with pytest.raises(InputError, match="was edited"):
        import_report(edited)
    m = export_report(report, "mib")
    edited = copy.deepcopy(m)
    edited["nodes"]["a0.h0"]["in_graph"] = not edited["nodes"]["a0.h0"]["in_graph"]
    with pytest.raises(InputError, match="was edited"):
        import_report(edited)
    foreign = {k: v for k, v in m.items() if k != "headscope_report"}
    with pytest.raises(InputError, match="not exported by headscope"):
        import_report(foreign)
    with pytest.raises(InputError, match="nor an MIB"):
        import_report({"nodes": []})
    with pytest.raises(InputError, match="not a valid neuronpedia file"):
        check_format({"metadata": {}, "qParams": {}, "nodes": [], "links": []}, "neuronpedia")
    with pytest.raises(InputError, match="not valid JSON"):
        loads_export("{")
    with pytest.raises(InputError, match="format must be one of"):
        export_report(report, "graphml")
