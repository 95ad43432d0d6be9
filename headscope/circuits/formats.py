"""Field formats for a circuit report, written so the field's own readers open them, and read back.

- **Attribution graph** (the JSON circuit-tracer's and Neuronpedia's graph viewers draw; checked in the tests with
  circuit-tracer 0.5.0's own `circuit_tracer.frontend.graph_models.Model`). Nodes as circuit-tracer builds them: one
  embedding node per prompt token (`E_{token id}_{pos}`, layer "E"), so the prompt lies along the axis; heads and MLPs
  at the prompt's last position, each `feature` the Cantor pairing of (layer, index in the layer: heads 0..H−1, the
  MLP H), as circuit-tracer encodes a (layer, feature) pair; one logit node for the answer (`feature` = its token id,
  clerp `Output "<token>" (p=<prob>)`). With edge scores (schema 2.1) the graph is the chosen edge method's MIB circuit
  at the chosen size (default 0.5 % of the edges: a graph the viewer can draw) — its nodes, and its edges as links (an edge into a head's q, k and v merges into one link, the
  sum of the three scores; `input`'s edges leave the last token's embedding node) — else the head circuit: analysed
  heads as nodes, links from circuit heads to the logit and the path-patched head → head edges. `influence` follows
  circuit-tracer's sense (lower = more important: the cumulative share of |node score| up to the node), and no
  `node_threshold` is set, so the viewer prunes nothing. `qParams.pinnedIds` = the circuit's nodes, `clickedId` = the
  logit node. `export_graph_dir` writes `<slug>.json` and `graph-metadata.json`, what circuit-tracer's `serve(DIR)`
  reads; slugs are unique per task, model, method and seed.
- **MIB circuit file** (MIB's circuit track: `cfg`, `nodes` {name: {in_graph, score}}, `edges` {"src->dst<q|k|v>":
  {score, in_graph}} in its Graph.to_json layout): every edge of MIB's graph of the model with the chosen edge
  method's score (this project's sign, `score_sign`), `in_graph` = that method's MIB circuit at `circuit_size`
  (default: the smallest MIB size whose measured faithfulness reaches 0.8, else 1 %). Needs a
  report with edge scores (`circuits run --edge-methods ...`).
Every export embeds the whole report (`headscope_report`), so import is lossless; the file's own circuit must still
agree with it (an edited circuit is refused). A file made elsewhere imports as its scores only (`ImportedScores`).
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np

from headscope import assets
from headscope.circuits.edges_graph import MIB_SIZES, EdgeGraph, circuit_nodes
from headscope.circuits.edges_result import EdgeAttribution, pack
from headscope.circuits.edges_run import circuit_at
from headscope.circuits.report import MAX_REPORT_BYTES, loads_report, migrate, validate_report
from headscope.codec import JsonCodec
from headscope.errors import InputError
from headscope.files import read_bytes

FORMATS = ("neuronpedia", "mib")
_SCHEMAS = {"neuronpedia": "neuronpedia_graph.schema.json", "mib": "mib_circuit.schema.json"}
MAX_IMPORT_BYTES = 4 * MAX_REPORT_BYTES
DEFAULT_SIZE = (
    0.01  # MIB files: a circuit of 1 % of the edges when no size is given and no curve reaches f ≥ 0.8
)
GRAPH_SIZE = 0.005  # attribution graphs: 0.5 % of the edges (616 on SmolLM2), a graph a viewer can still draw


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


def parse_size(text: str | float | None) -> float | None:
    """'5%' / '5' (percent) / 0.05 (a float below 1 is a fraction) → 0.05."""
    if text is None:
        return None
    raw = str(text).strip()
    try:
        value = float(raw.rstrip("%"))
    except ValueError:
        raise InputError(f"circuit size must be a percentage such as 5% or 0.5%, got {text!r}") from None
    fraction = value / 100 if raw.endswith("%") or value > 1 else value
    if not (math.isfinite(fraction) and 0 < fraction <= 1):
        raise InputError(f"circuit size must be in (0 %, 100 %], got {text!r}")
    return fraction


def _edges(report: dict[str, Any]) -> EdgeAttribution | None:
    ea = report.get("edge_attribution")
    return None if ea is None else EdgeAttribution.from_json(ea, "edge_attribution")


def _edge_method(ea: EdgeAttribution, method: str | None) -> str:
    if method is None:
        return "eap_ig" if "eap_ig" in ea.methods else next(iter(ea.methods))
    ea.method(method)
    return method


def default_size(ea: EdgeAttribution, method: str) -> float:
    """The smallest of MIB's sizes whose circuit recovers f ≥ 0.8, when measured; else 1 %."""
    curve = ea.faithfulness.curve(method) if ea.faithfulness else None
    if curve is not None:
        for size, f in zip(ea.faithfulness.sizes if ea.faithfulness else (), curve.faithfulness, strict=True):
            if f >= 0.8:
                return size
    return DEFAULT_SIZE


def slug(report: dict[str, Any], method: str) -> str:
    task, model = report["task"], report["model"]
    text = f"headscope-{task['name']}-{model['name']}-{method}-s{task['seed']}"
    return re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-")


# ---- attribution graph (circuit-tracer / Neuronpedia) ---------------------------------------------------------------
def cantor(x: int, y: int) -> int:
    """circuit-tracer's encoding of a (layer, feature index) pair as one integer."""
    return (x + y) * (x + y + 1) // 2 + y


def _influence(scores: dict[str, float]) -> dict[str, float]:
    """circuit-tracer's sense: the cumulative share of |score| up to and including the node (best first), so
    lower = more important."""
    order = sorted(scores, key=lambda k: -abs(scores[k]))
    total = sum(abs(v) for v in scores.values()) or 1.0
    out, acc = {}, 0.0
    for k in order:
        acc += abs(scores[k])
        out[k] = acc / total
    return out


@dataclass(frozen=True)
class _Axis:
    """Where nodes sit: the prompt tokens (ids), the last position, the model's layers and heads."""

    tokens: list[str]
    ids: list[int]
    n_layers: int
    n_heads: int

    @property
    def last(self) -> int:
        return len(self.tokens) - 1

    def embeddings(self) -> list[dict[str, Any]]:
        return [
            {"node_id": f"E_{t}_{p}", "feature": p, "layer": "E", "ctx_idx": p, "feature_type": "embedding",
             "jsNodeId": f"E_{t}-{p}", "clerp": ""}
            for p, t in enumerate(self.ids)
        ]  # fmt: skip

    def node_id(self, layer: int, index: int) -> str:
        return f"{layer}_{index}_{self.last}"

    def component(
        self, layer: int, index: int, clerp: str, influence: float, activation: float
    ) -> dict[str, Any]:
        kind = "attention head" if index < self.n_heads else "mlp"
        return {
            "node_id": self.node_id(layer, index), "feature": cantor(layer, index), "layer": str(layer),
            "ctx_idx": self.last, "feature_type": kind, "jsNodeId": f"{layer}_{index}-0", "clerp": clerp,
            "influence": influence, "activation": activation,
        }  # fmt: skip

    def logit(self, task: dict[str, Any]) -> dict[str, Any]:
        answer, prob = int(task.get("answer_id", -1)), task.get("answer_prob")
        token = str(task.get("answer_token") or "answer").replace('"', "'")
        p = float(prob) if prob is not None else 0.0
        return {
            "node_id": f"{self.n_layers + 1}_{max(answer, 0)}_{self.last}", "feature": max(answer, 0),
            "layer": str(self.n_layers + 1), "ctx_idx": self.last, "feature_type": "logit", "token_prob": p,
            "is_target_logit": True, "jsNodeId": f"L_{max(answer, 0)}-{self.last}",
            "clerp": f'Output "{token}" (p={p:.3f})',
        }  # fmt: skip


def _axis(report: dict[str, Any]) -> _Axis:
    task, model = report["task"], report["model"]
    tokens = list(task.get("example_tokens") or task.get("example_positive", "").split(" "))
    ids = list(task.get("example_token_ids") or range(len(tokens)))
    return _Axis(tokens, ids, model["n_layers"], model["n_heads"])


def _head_graph(report: dict[str, Any], method: str, ax: _Axis) -> tuple[list, list, list]:
    """Nodes, links and pinned ids of the head-level circuit."""
    scores = np.asarray(report["methods"][method]["scores"], dtype=float)
    effects = np.asarray(report["ground_truth"]["effects"], dtype=float)
    heads = [(la, h) for la in report["ground_truth"]["layers"] for h in range(ax.n_heads)]
    influence = _influence({ax.node_id(la, h): float(scores[la, h]) for la, h in heads})
    circuit, truth = set(report["circuit"]), set(report["ground_truth"]["heads"])
    nodes = []
    for la, h in heads:
        name = f"{la}.{h}"
        clerp = f"head {name}: {method} {scores[la, h]:.4g}" + ("; in circuit" if name in circuit else "")
        clerp += "; ground truth" if name in truth else ""
        nodes.append(ax.component(la, h, clerp, influence[ax.node_id(la, h)], float(effects[la, h])))
    logit = ax.logit(report["task"])["node_id"]
    links = []
    for name in report["circuit"]:
        la, h = (int(v) for v in name.split("."))
        links.append({"source": ax.node_id(la, h), "target": logit, "weight": float(scores[la, h])})
    for e in (report.get("edges") or {}).get("edges", []):
        (sl, sh), (rl, rh) = (tuple(int(v) for v in e[k].split(".")) for k in ("sender", "receiver"))
        links.append(
            {"source": ax.node_id(sl, sh), "target": ax.node_id(rl, rh), "weight": float(e["effect"])}
        )
    return nodes, links, [ax.node_id(*(int(v) for v in n.split("."))) for n in report["circuit"]]


def _sender_id(graph: EdgeGraph, u: int, ax: _Axis) -> str:
    if u == 0:
        return f"E_{ax.ids[ax.last]}_{ax.last}"
    layer, index = divmod(u - 1, graph.n_heads + 1)
    return ax.node_id(layer, index)


def _edge_graph(report: dict[str, Any], ea: EdgeAttribution, method: str, size: float, ax: _Axis):
    """Nodes, links and pinned ids of the edge method's MIB circuit at `size`."""
    graph, m = ea.graph, ea.method(method)
    kept = circuit_at(ea, method, size)
    logit = ax.logit(report["task"])["node_id"]
    weights: dict[tuple[str, str], float] = {}
    recv_node = graph.receiver_node
    for e in np.flatnonzero(kept).tolist():
        u, b = int(graph.src[e]), int(graph.dst[e])
        target = logit if recv_node[b] < 0 else _sender_id(graph, int(recv_node[b]), ax)
        key = (_sender_id(graph, u, ax), target)
        weights[key] = weights.get(key, 0.0) + float(m.scores[e])
    used = sorted({int(u) for u in graph.src[kept]} - {0})
    influence = _influence({_sender_id(graph, u, ax): m.node_scores[u] for u in used})
    nodes = []
    for u in used:
        name = graph.sender_names[u]
        nid = _sender_id(graph, u, ax)
        layer, index = divmod(u - 1, graph.n_heads + 1)
        clerp = f"{name}: {method} node score {m.node_scores[u]:.4g}"
        nodes.append(ax.component(layer, index, clerp, influence[nid], float(m.node_scores[u])))
    links = [{"source": s, "target": t, "weight": w} for (s, t), w in weights.items()]
    return nodes, links, [n["node_id"] for n in nodes]


def to_neuronpedia(
    report: dict[str, Any], method: str | None = None, size: float | None = None
) -> dict[str, Any]:
    """The report as an attribution graph circuit-tracer's viewer draws (see the module docstring)."""
    report = validate_report(migrate(report))
    ax, ea = _axis(report), _edges(report)
    if ea is not None and (method is None or method in ea.methods):
        method = _edge_method(ea, method)
        size = size if size is not None else GRAPH_SIZE
        nodes, links, pinned = _edge_graph(report, ea, method, size, ax)
    else:
        method = str(method or report["circuit_rule"]["method"])
        if method not in report["methods"]:
            raise InputError(f"method must be one of {', '.join(report['methods'])}, got {method!r}")
        size = None
        nodes, links, pinned = _head_graph(report, method, ax)
    logit = ax.logit(report["task"])
    task = report["task"]
    out = {
        "metadata": {
            "slug": slug(report, method), "scan": report["model"]["name"], "transcoder_list": [],
            "prompt_tokens": ax.tokens, "prompt": task.get("example_positive", ""),
            "info": {
                "description": f"headscope circuit for task {task['name']} ({method}"
                + (f" edges, MIB circuit of {size:.3%} of edges" if size is not None else " head scores")
                + f"; ground truth: {report['ground_truth']['method']}, {report['ground_truth']['mode']})",
                "generator": {"name": "headscope", "version": report["software"].get("headscope", "")},
                "method": method, "circuit_size": size,
            },
            "headscope_report": report,
        },
        "qParams": {"pinnedIds": [*pinned, logit["node_id"]], "supernodes": [], "linkType": "both",
                    "clickedId": logit["node_id"], "sg_pos": ""},
        "nodes": [*ax.embeddings(), *nodes, logit],
        "links": links,
    }  # fmt: skip
    check_format(out, "neuronpedia")
    return out


def graph_metadata(graph: dict[str, Any]) -> dict[str, Any]:
    """The entry `graph-metadata.json` lists for one graph (what circuit-tracer writes there)."""
    keep = ("slug", "scan", "transcoder_list", "prompt_tokens", "prompt")
    return {k: graph["metadata"][k] for k in keep} | {"node_threshold": None, "schema_version": 1}


def export_graph_dir(graph: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """`<slug>.json` and `graph-metadata.json` (existing entries kept, this slug replaced) in `out_dir`."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{graph['metadata']['slug']}.json"
    path.write_text(json.dumps(graph), encoding="utf-8")
    meta_path = folder / "graph-metadata.json"
    graphs = []
    if meta_path.is_file():
        try:
            graphs = list(json.loads(meta_path.read_text(encoding="utf-8")).get("graphs", []))
        except (json.JSONDecodeError, AttributeError):
            raise InputError(f"{meta_path} exists and is not a graph-metadata file") from None
    entry = graph_metadata(graph)
    graphs = [g for g in graphs if g.get("slug") != entry["slug"]] + [entry]
    meta_path.write_text(json.dumps({"graphs": graphs}, indent=1), encoding="utf-8")
    return path, meta_path


# ---- MIB -----------------------------------------------------------------------------------------------------------
def to_mib(report: dict[str, Any], method: str | None = None, size: float | None = None) -> dict[str, Any]:
    """Every edge of MIB's graph of the model with the edge method's score; `in_graph` = its circuit at `size`."""
    report = validate_report(migrate(report))
    ea = _edges(report)
    if ea is None:
        raise InputError(
            "this report has no edge scores: an MIB circuit file scores every edge of the model graph; run "
            "`headscope circuits run --edge-methods eap_ig` (or eap) first"
        )
    method = _edge_method(ea, method)
    size = size if size is not None else default_size(ea, method)
    graph, m = ea.graph, ea.method(method)
    kept = circuit_at(ea, method, size)
    in_nodes = set(circuit_nodes(graph, kept))
    nodes = {
        n: {"in_graph": n in in_nodes, "score": float(s)}
        for n, s in zip(graph.sender_names, m.node_scores, strict=True)
    }
    nodes["logits"] = {"in_graph": True}
    edges = {
        name: {"score": float(s), "in_graph": bool(k)}
        for name, s, k in zip(graph.edge_names(), m.scores.tolist(), kept.tolist(), strict=True)
    }
    out = {
        "cfg": {"n_layers": graph.n_layers, "n_heads": graph.n_heads, "parallel_attn_mlp": False,
                "d_model": report["model"].get("d_model", 0), "n_key_value_heads": graph.n_kv_heads},
        "nodes": nodes, "edges": edges, "score_method": method, "circuit_size": size,
        "score_sign": "metric(clean) - metric(edge patched); MIB ranks edges by |score|",
        "headscope_report": report,
    }  # fmt: skip
    check_format(out, "mib")
    return out


# ---- export / import ---------------------------------------------------------------------------------------------
def export_report(
    report: dict[str, Any], fmt: str, method: str | None = None, size: float | None = None
) -> dict[str, Any]:
    if fmt not in FORMATS:
        raise InputError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return to_neuronpedia(report, method, size) if fmt == "neuronpedia" else to_mib(report, method, size)


def detect_format(data: Any) -> str:
    if isinstance(data, dict) and {"metadata", "nodes", "links"} <= set(data):
        return "neuronpedia"
    if isinstance(data, dict) and {"cfg", "nodes", "edges"} <= set(data):
        return "mib"
    raise InputError(
        "not a Neuronpedia graph (metadata, nodes, links) nor an MIB circuit file (cfg, nodes, edges)"
    )


@dataclass(frozen=True)
class ImportedScores(JsonCodec):
    """What a file made elsewhere holds that headscope can use: its scores only (no report: no ground truth, no
    task). MIB files: every edge's score and in_graph in canonical order (`edges_graph`); attribution graphs: the
    nodes' influence/activation and the links."""

    source_format: str
    graph: EdgeGraph | None
    edge_scores: str | None  # base64 float32, canonical edge order (MIB files)
    in_graph: tuple[str, ...]  # edges (MIB) or pinned nodes (graphs) in the file's circuit
    nodes: dict[str, float]  # node → score (MIB) or influence (graphs)
    links: tuple[tuple[str, str, float], ...] = ()
    kind: str = "scores_only"


def _foreign_mib(data: dict[str, Any]) -> ImportedScores:
    cfg = data["cfg"]
    graph = EdgeGraph(
        int(cfg["n_layers"]), int(cfg["n_heads"]), int(cfg.get("n_key_value_heads") or cfg["n_heads"])
    )
    names = graph.edge_names()
    missing = [n for n in names if n not in data["edges"]]
    if missing or len(data["edges"]) != len(names):
        raise InputError(
            f"MIB file: its edges are not MIB's graph of a {graph.n_layers}-layer, {graph.n_heads}-head model "
            f"({len(missing)} missing, {len(data['edges'])} given, {len(names)} expected)"
        )
    scores = np.array([float(data["edges"][n]["score"]) for n in names])
    kept = tuple(n for n in names if data["edges"][n]["in_graph"])
    nodes = {n: float(v.get("score", math.nan)) for n, v in data["nodes"].items()}
    return ImportedScores("mib", graph, pack(scores), kept, nodes)


def _foreign_graph(data: dict[str, Any]) -> ImportedScores:
    nodes = {str(n["node_id"]): float(n.get("influence") or 0.0) for n in data["nodes"]}
    links = tuple((str(k["source"]), str(k["target"]), float(k["weight"])) for k in data["links"])
    pinned = tuple(str(p) for p in (data.get("qParams") or {}).get("pinnedIds", []))
    return ImportedScores("neuronpedia", None, None, pinned, nodes, links)


def import_report(data: Any) -> dict[str, Any] | ImportedScores:
    """The report inside a headscope export (its circuit must still agree with the report), or the scores of a
    file made elsewhere."""
    fmt = detect_format(data)
    check_format(data, fmt)
    holder = data["metadata"] if fmt == "neuronpedia" else data
    if "headscope_report" not in holder:
        return _foreign_mib(data) if fmt == "mib" else _foreign_graph(data)
    report = loads_report(json.dumps(holder["headscope_report"]))
    if fmt == "neuronpedia":
        info = data["metadata"].get("info") or {}
        again = to_neuronpedia(report, info.get("method"), info.get("circuit_size"))
        same = again["qParams"]["pinnedIds"] == data["qParams"]["pinnedIds"]
    else:
        again = to_mib(report, data.get("score_method"), data.get("circuit_size"))
        same = again["nodes"] == data["nodes"] and again["edges"] == data["edges"]
    if not same:
        raise InputError(f"the {fmt} file's circuit was edited and no longer matches its embedded report")
    return report


def loads_export(text: str | bytes) -> dict[str, Any] | ImportedScores:
    if len(text) > MAX_IMPORT_BYTES:
        raise InputError(f"file is larger than {MAX_IMPORT_BYTES // 1_000_000} MB")
    try:
        return import_report(json.loads(text))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise InputError(f"not valid JSON: {str(e)[:200]}") from None


def read_export(path: str | Path) -> dict[str, Any] | ImportedScores:
    return loads_export(read_bytes(path, "circuit export", limit=MAX_IMPORT_BYTES))


__all__ = [
    "FORMATS",
    "MIB_SIZES",
    "ImportedScores",
    "check_format",
    "detect_format",
    "export_graph_dir",
    "export_report",
    "import_report",
    "loads_export",
    "parse_size",
    "read_export",
    "slug",
    "to_mib",
    "to_neuronpedia",
]
