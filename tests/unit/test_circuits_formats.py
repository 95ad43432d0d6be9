"""Exports the field's readers open: attribution graphs validated by circuit-tracer 0.5.0's own graph model, MIB
circuit files read by a loader written here from MIB's published format description (its Graph.to_json layout);
import gives back the report exactly, edited files are refused, files made elsewhere import as scores only."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from circuit_tracer.frontend.graph_models import Model

from headscope.circuits.config import CircuitConfig
from headscope.circuits.edges_result import EdgeAttribution
from headscope.circuits.edges_run import circuit_at
from headscope.circuits.finder import find_circuit
from headscope.circuits.formats import (
    ImportedScores,
    check_format,
    export_graph_dir,
    export_report,
    import_report,
    loads_export,
    parse_size,
)
from headscope.circuits.known import model_path
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


@pytest.fixture(scope="module")
def report(tiny_llama: ModelHandle, one_thread: None) -> dict:
    cfg = CircuitConfig(
        task="custom", n_examples=3, sae=SAEConfig(epochs=10), edges=True, circuit_k=2, edge_methods=("eap", "eap_ig"),
        n_bootstrap=20,
    )  # fmt: skip
    return find_circuit(tiny_llama, cfg, task_spec=SPEC).to_json()


def mib_edge_names(n_layers: int, n_heads: int) -> list[str]:
    """MIB's graph (parallel_attn_mlp = false) from its description: every node feeds the input of every later
    node; heads of a layer come before its MLP; an edge into a head is one per q, k, v input."""
    upstream, names = ["input"], []
    for layer in range(n_layers):
        heads = [f"a{layer}.h{h}" for h in range(n_heads)]
        names += [f"{u}->{h}<{x}>" for u in upstream for h in heads for x in "qkv"]
        upstream += heads
        names += [f"{u}->m{layer}" for u in upstream]
        upstream.append(f"m{layer}")
    return names + [f"{u}->logits" for u in upstream]


def load_mib(data: dict) -> dict:
    """A reader of MIB circuit files written from the format description: cfg, nodes {name: {in_graph, score?}},
    edges {name: {score, in_graph}}; every edge of the model's graph must be present."""
    cfg = data["cfg"]
    assert cfg["parallel_attn_mlp"] is False
    expected = mib_edge_names(cfg["n_layers"], cfg["n_heads"])
    missing = set(expected) - set(data["edges"])
    assert not missing and len(data["edges"]) == len(expected), sorted(missing)[:5]
    for name, e in data["edges"].items():
        assert isinstance(e["score"], float) and isinstance(e["in_graph"], bool), name
    nodes = {"input", "logits"} | {f"m{la}" for la in range(cfg["n_layers"])}
    nodes |= {f"a{la}.h{h}" for la in range(cfg["n_layers"]) for h in range(cfg["n_heads"])}
    assert set(data["nodes"]) == nodes and all(
        isinstance(n["in_graph"], bool) for n in data["nodes"].values()
    )
    return {
        "scores": np.array([data["edges"][n]["score"] for n in expected]),
        "in_graph": np.array([data["edges"][n]["in_graph"] for n in expected]),
    }


def test_attribution_graph_validates_with_circuit_tracer(report: dict) -> None:
    for method in ("eap_ig", "eap", "sae_node"):  # two edge graphs and the head graph
        g = export_report(report, "neuronpedia", method)
        Model.model_validate(g)  # circuit-tracer's own reader
        nodes = {n["node_id"]: n for n in g["nodes"]}
        assert all(isinstance(n["feature"], int) for n in g["nodes"])
        logit = nodes[g["qParams"]["clickedId"]]
        assert logit["feature_type"] == "logit" and logit["clerp"].startswith('Output "c" (p=')
        assert 0 < float(logit["clerp"].split("(p=")[1].rstrip(")")) < 1
        emb = [n for n in g["nodes"] if n["feature_type"] == "embedding"]
        assert [n["ctx_idx"] for n in emb] == list(range(8)) and g["metadata"]["prompt_tokens"] == list(
            "abcabcab"
        )
        assert g["metadata"].get("node_threshold") is None and g["qParams"]["supernodes"] == []
        assert set(g["qParams"]["pinnedIds"]) <= set(nodes) and all(
            k["source"] in nodes and k["target"] in nodes for k in g["links"]
        )
        assert g["metadata"]["slug"] == f"headscope-custom-tiny-llama-{method.replace('_', '_')}-s0"


def test_edge_graph_is_the_methods_circuit(report: dict) -> None:
    ea = EdgeAttribution.from_json(report["edge_attribution"])
    g = export_report(report, "neuronpedia", "eap", 0.2)
    kept = circuit_at(ea, "eap", 0.2)
    names = {ea.graph.sender_names[u] for u in ea.graph.src[kept]} - {"input"}
    heads = [n for n in g["nodes"] if n["feature_type"] in ("attention head", "mlp")]
    assert len(heads) == len(names)
    for n in heads:
        layer, index = int(n["layer"]), n["node_id"].split("_")[1]
        name = f"m{layer}" if int(index) == 4 else f"a{layer}.h{index}"
        assert name in names
        assert n["feature"] == (layer + int(index)) * (layer + int(index) + 1) // 2 + int(index)
    total = sum(k["weight"] for k in g["links"])
    assert total == pytest.approx(float(ea.method("eap").scores[kept].sum()), rel=1e-5, abs=1e-7)
    influence = sorted(n["influence"] for n in heads)  # lower = more important, the best node first
    assert influence[-1] == pytest.approx(1.0)


def test_mib_file_has_every_edge_with_the_methods_scores(report: dict) -> None:
    ea = EdgeAttribution.from_json(report["edge_attribution"])
    for method in ("eap", "eap_ig"):
        m = export_report(report, "mib", method, parse_size("20%"))
        read = load_mib(m)
        np.testing.assert_allclose(read["scores"], ea.method(method).scores, rtol=0, atol=0)
        assert np.array_equal(read["in_graph"], circuit_at(ea, method, 0.2))
        assert m["score_method"] == method and m["circuit_size"] == 0.2 and read["in_graph"].any()


def test_mib_needs_edge_scores(report: dict) -> None:
    bare = copy.deepcopy(report)
    bare["edge_attribution"] = None
    with pytest.raises(InputError, match="no edge scores"):
        export_report(bare, "mib")


@pytest.mark.parametrize("fmt", ["neuronpedia", "mib"])
def test_round_trip_is_lossless(report: dict, fmt: str) -> None:
    text = json.dumps(export_report(report, fmt))
    assert loads_export(text) == report
    assert import_report(json.loads(text)) == report


def test_edited_foreign_and_broken_files(report: dict) -> None:
    g = export_report(report, "neuronpedia")
    edited = copy.deepcopy(g)
    edited["qParams"]["pinnedIds"] = edited["qParams"]["pinnedIds"][1:]
    with pytest.raises(InputError, match="was edited"):
        import_report(edited)
    m = export_report(report, "mib")
    edited = copy.deepcopy(m)
    first = next(iter(edited["edges"]))
    edited["edges"][first]["in_graph"] = not edited["edges"][first]["in_graph"]
    with pytest.raises(InputError, match="was edited"):
        import_report(edited)
    foreign = import_report({k: v for k, v in m.items() if k != "headscope_report"})
    assert isinstance(foreign, ImportedScores) and foreign.kind == "scores_only"
    assert foreign.graph is not None and foreign.graph.n_edges == len(m["edges"])
    assert set(foreign.in_graph) == {n for n, e in m["edges"].items() if e["in_graph"]}
    foreign_g = import_report(
        {**g, "metadata": {k: v for k, v in g["metadata"].items() if k != "headscope_report"}}
    )
    assert isinstance(foreign_g, ImportedScores) and len(foreign_g.links) == len(g["links"])
    with pytest.raises(InputError, match="nor an MIB"):
        import_report({"nodes": []})
    with pytest.raises(InputError, match="not a valid neuronpedia file"):
        check_format({"metadata": {}, "qParams": {}, "nodes": [], "links": []}, "neuronpedia")
    with pytest.raises(InputError, match="not valid JSON"):
        loads_export("{")
    with pytest.raises(InputError, match="format must be one of"):
        export_report(report, "graphml")
    for bad in ("0%", "150%", "abc"):
        with pytest.raises(InputError, match="circuit size"):
            parse_size(bad)


def test_out_dir_is_what_circuit_tracer_serves(report: dict, tmp_path: Path) -> None:
    graphs = [export_report(report, "neuronpedia", m) for m in ("eap", "eap_ig")]
    for g in graphs:
        export_graph_dir(g, tmp_path)
    export_graph_dir(graphs[0], tmp_path)  # again: replaced, not duplicated
    meta = json.loads((tmp_path / "graph-metadata.json").read_text())
    assert sorted(e["slug"] for e in meta["graphs"]) == sorted(g["metadata"]["slug"] for g in graphs)
    for entry in meta["graphs"]:
        Model.model_validate(json.loads((tmp_path / f"{entry['slug']}.json").read_text()))


def test_greater_than_and_known_answer_exports_validate(tiny_llama: ModelHandle, one_thread: None) -> None:
    known = ModelHandle.load(str(model_path()), device="cpu")
    runs = [(tiny_llama, "greater_than"), (known, "induction")]
    for handle, task in runs:
        cfg = CircuitConfig(
            task=task, n_examples=3, sae=SAEConfig(epochs=5), edge_methods=("eap",), edge_faithfulness=False,
            faithfulness=False, n_bootstrap=10,
        )  # fmt: skip
        rep = find_circuit(handle, cfg).to_json()
        for method in ("eap", "sae_node"):
            Model.model_validate(export_report(rep, "neuronpedia", method))
        load_mib(export_report(rep, "mib", "eap", 0.05))


def test_edge_view_is_the_circuit_as_data(report: dict) -> None:
    from headscope.circuits.edges_run import edge_view

    ea = EdgeAttribution.from_json(report["edge_attribution"])
    view = edge_view(ea, "eap_ig", 0.2, tuple(report["task"]["example_tokens"]))
    kept = circuit_at(ea, "eap_ig", 0.2)
    names = np.array(ea.graph.edge_names())[kept]
    assert len(view.edges) == int(kept.sum()) and view.tokens == tuple("abcabcab")
    got = {f"{e.sender}->{e.receiver}" + (f"<{e.via}>" if e.via in "qkv" else "") for e in view.edges}
    assert got == set(names.tolist())
    assert [abs(e.score) for e in view.edges] == sorted((abs(e.score) for e in view.edges), reverse=True)
    assert {n.name for n in view.nodes} == {e.sender for e in view.edges} | {"logits"}
    assert view.heads() == [n.name[1:].replace(".h", ".") for n in view.nodes if n.kind == "head"]
    assert type(view).from_json(json.loads(json.dumps(view.to_json()))) == view
