"""Field formats for a circuit report: a Neuronpedia-style attribution graph and an MIB-style circuit file, with
import back. Our schema stays the source of truth: each export carries the full report (`headscope_report`), so
import → report is lossless, and the format's own fields are derived from it.

- **Neuronpedia graph** (the "Anthropic Attribution Graph" JSON that Neuronpedia's graph viewer reads; required:
  metadata {slug, scan, prompt_tokens, prompt}, qParams, nodes {node_id, feature, layer, ctx_idx, feature_type,
  jsNodeId, clerp}, links {source, target, weight}). One node per analysed head at the prompt's last position
  (`feature_type` "attention head", `feature` = head index, `influence` = the method's normalised score,
  `activation` = the ground-truth patching effect), one logit node; links from circuit heads to the logit
  (weight = score) and, when the report has edges, head → head links (weight = path-patching effect). The circuit
  is pinned in qParams.
- **MIB circuit file** (the MIB circuit-localisation track's JSON: cfg {n_layers, n_heads, d_model}, nodes
  {"input", "a{l}.h{h}", "m{l}", "logits": {in_graph, score}}, edges {"src->dst": {score, in_graph}}). Heads carry
  the method's score and in_graph = in the circuit; MLPs, input and logits are not analysed here and stay in the
  graph (never ablated). Edges are the path-patched head pairs (through q, k and v at once, so no <q>/<k>/<v>
  suffix) with in_graph = in the edge ground truth.
Both exports are checked against the required fields listed in assets/schemas/ before they are written.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np

from headscope import assets
from headscope.circuits.report import MAX_REPORT_BYTES, loads_report, migrate, validate_report
from headscope.errors import InputError
from headscope.files import read_bytes

FORMATS = ("neuronpedia", "mib")
_SCHEMAS = {"neuronpedia": "neuronpedia_graph.schema.json", "mib": "mib_circuit.schema.json"}
MAX_IMPORT_BYTES = 4 * MAX_REPORT_BYTES


@functools.cache
def _schema(fmt: str) -> dict[str, Any]:
    return assets.read_json("schemas", _SCHEMAS[fmt])


def check_format(data: Any, fmt: str) -> None:
    """InputError unless `data` has the format's required fields."""
    errors = sorted(
        jsonschema.Draft202012Validator(_schema(fmt)).iter_errors(data), key=lambda e: list(e.path)
    )
    if errors:
        where = "/".join(str(p) for p in errors[0].absolute_path) or "(top level)"
        raise InputError(f"not a valid {fmt} file at {where}: {errors[0].message[:200]}")


def _scores(report: dict[str, Any], method: str) -> np.ndarray:
    if method not in report["methods"]:
        raise InputError(f"method must be one of {', '.join(report['methods'])}, got {method!r}")
    grid = np.asarray(report["methods"][method]["scores"], dtype=float)
    return np.abs(grid) if method in ("attribution_patching", "eap_ig") else grid


def _heads(report: dict[str, Any]) -> list[tuple[int, int]]:
    rows = report["ground_truth"]["layers"]
    return [(layer, h) for layer in rows for h in range(report["model"]["n_heads"])]


# ---- Neuronpedia -------------------------------------------------------------------------------------------------
def to_neuronpedia(report: dict[str, Any], method: str | None = None) -> dict[str, Any]:
    report = validate_report(migrate(report))
    method = str(method or report["circuit_rule"]["method"])
    scores, effects = _scores(report, method), np.asarray(report["ground_truth"]["effects"], dtype=float)
    task = report["task"]
    tokens = task.get("example_tokens") or task.get("example_positive", "").split(" ")
    ctx = max(0, len(tokens) - 1)
    top = float(np.abs(scores).max()) or 1.0
    circuit, truth = set(report["circuit"]), set(report["ground_truth"]["heads"])

    def node_id(layer: int, head: int) -> str:
        return f"{layer}_{head}_{ctx}"

    nodes = [
        {
            "node_id": node_id(layer, h), "feature": h, "layer": str(layer), "ctx_idx": ctx,
            "feature_type": "attention head", "jsNodeId": f"{layer}_{h}-0",
            "clerp": f"head {layer}.{h}: {method} {scores[layer, h]:.4g}"
            + ("; in circuit" if f"{layer}.{h}" in circuit else "") + ("; ground truth" if f"{layer}.{h}" in truth else ""),
            "influence": float(abs(scores[layer, h]) / top), "activation": float(effects[layer, h]),
        }
        for layer, h in _heads(report)
    ]  # fmt: skip
    logit = f"L_answer_{ctx}"
    nodes.append({
        "node_id": logit, "feature": None, "layer": str(report["model"]["n_layers"]), "ctx_idx": ctx,
        "feature_type": "logit", "jsNodeId": "L_answer-0", "clerp": "task metric (logit difference)",
        "influence": None, "activation": report["ground_truth"]["clean_metric"],
    })  # fmt: skip
    links = [
        {"source": node_id(*(int(v) for v in h.split("."))), "target": logit, "weight": float(scores[tuple(int(v) for v in h.split("."))])}
        for h in report["circuit"]
    ]  # fmt: skip
    for e in (report.get("edges") or {}).get("edges", []):
        s, r = (tuple(int(v) for v in e[k].split(".")) for k in ("sender", "receiver"))
        links.append({"source": node_id(*s), "target": node_id(*r), "weight": float(e["effect"])})
    out = {
        "metadata": {
            "slug": f"headscope-{task['name']}-{report['model']['name']}".replace("/", "-").lower(),
            "scan": report["model"]["name"], "prompt_tokens": tokens, "prompt": task.get("example_positive", ""),
            "info": {
                "description": f"headscope circuit for task {task['name']} ({method} scores; ground truth: "
                f"{report['ground_truth']['method']}, {report['ground_truth']['mode']})",
                "generator": {"name": "headscope", "version": report["software"].get("headscope", "")},
            },
            "headscope_report": report,
        },
        "qParams": {"pinnedIds": [k["source"] for k in links if k["target"] == logit], "linkType": "both"},
        "nodes": nodes,
        "links": links,
    }  # fmt: skip
    check_format(out, "neuronpedia")
    return out


# ---- MIB ---------------------------------------------------------------------------------------------------------
def to_mib(report: dict[str, Any], method: str | None = None) -> dict[str, Any]:
    report = validate_report(migrate(report))
    method = str(method or report["circuit_rule"]["method"])
    scores = _scores(report, method)
    n_l, circuit = report["model"]["n_layers"], set(report["circuit"])
    analysed = set(_heads(report))
    nodes: dict[str, Any] = {"input": {"in_graph": True}}
    for layer in range(n_l):
        for h in range(report["model"]["n_heads"]):
            node: dict[str, Any] = {"in_graph": f"{layer}.{h}" in circuit or (layer, h) not in analysed}
            if (layer, h) in analysed:
                node["score"] = float(scores[layer, h])
            nodes[f"a{layer}.h{h}"] = node
        nodes[f"m{layer}"] = {"in_graph": True}
    nodes["logits"] = {"in_graph": True}
    edges = {
        f"a{e['sender'].replace('.', '.h')}->a{e['receiver'].replace('.', '.h')}": {"score": e["effect"], "in_graph": e["in_truth"]}
        for e in (report.get("edges") or {}).get("edges", [])
    }  # fmt: skip
    out = {
        "cfg": {"n_layers": n_l, "n_heads": report["model"]["n_heads"], "parallel_attn_mlp": False,
                "d_model": report["model"].get("d_model", 0)},
        "nodes": nodes, "edges": edges, "score_method": method, "headscope_report": report,
    }  # fmt: skip
    check_format(out, "mib")
    return out


# ---- export / import ---------------------------------------------------------------------------------------------
def export_report(report: dict[str, Any], fmt: str, method: str | None = None) -> dict[str, Any]:
    if fmt not in FORMATS:
        raise InputError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return to_neuronpedia(report, method) if fmt == "neuronpedia" else to_mib(report, method)


def detect_format(data: Any) -> str:
    if isinstance(data, dict) and {"metadata", "nodes", "links"} <= set(data):
        return "neuronpedia"
    if isinstance(data, dict) and {"cfg", "nodes", "edges"} <= set(data):
        return "mib"
    raise InputError(
        "not a Neuronpedia graph (metadata, nodes, links) nor an MIB circuit file (cfg, nodes, edges)"
    )


def _embedded(data: dict[str, Any], fmt: str) -> dict[str, Any]:
    holder = data["metadata"] if fmt == "neuronpedia" else data
    if "headscope_report" not in holder:
        raise InputError(
            f"this {fmt} file was not exported by headscope (no embedded report); only headscope exports import losslessly"
        )
    return loads_report(json.dumps(holder["headscope_report"]))


def import_report(data: Any) -> dict[str, Any]:
    """The report inside a headscope export; the file's own circuit fields must still agree with it."""
    fmt = detect_format(data)
    check_format(data, fmt)
    report = _embedded(data, fmt)
    again = export_report(report, fmt, data.get("score_method") if fmt == "mib" else None)
    key = ("qParams", "pinnedIds") if fmt == "neuronpedia" else ("nodes", None)
    mine = data[key[0]][key[1]] if key[1] else data[key[0]]
    if mine != (again[key[0]][key[1]] if key[1] else again[key[0]]):
        raise InputError(f"the {fmt} file's circuit was edited and no longer matches its embedded report")
    return report


def loads_export(text: str | bytes) -> dict[str, Any]:
    if len(text) > MAX_IMPORT_BYTES:
        raise InputError(f"file is larger than {MAX_IMPORT_BYTES // 1_000_000} MB")
    try:
        return import_report(json.loads(text))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise InputError(f"not valid JSON: {str(e)[:200]}") from None


def read_export(path: str | Path) -> dict[str, Any]:
    return loads_export(read_bytes(path, "circuit export", limit=MAX_IMPORT_BYTES))
