"""Edge-level part of a circuit run: each asked-for edge method over the whole model graph, then MIB's edge
faithfulness of each, as the typed `EdgeAttribution` a report stores (schema 2.1); and the view-independent data
of an edge circuit (`edge_view`: nodes, edges, prompt tokens) that the app's edge graph draws."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from headscope.circuits.edges import IG_STEPS, graph_for, run_edge_method
from headscope.circuits.edges_faith import EdgeCurves, areas, curve_values, edge_curves
from headscope.circuits.edges_graph import EdgeGraph, circuit, greedy_order, size_edges
from headscope.circuits.edges_result import (
    EdgeAttribution,
    EdgeCurve,
    EdgeFaithfulness,
    EdgeMethod,
    edge_method,
)
from headscope.circuits.patching import Prepared
from headscope.circuits.stability import curve_intervals, draws
from headscope.codec import JsonCodec
from headscope.errors import InputError
from headscope.models import ModelHandle
from headscope.progress import StepCounter


def edge_methods(
    handle: ModelHandle,
    prep: Prepared,
    methods: tuple[str, ...],
    steps: int = IG_STEPS,
    progress: StepCounter | None = None,
) -> dict[str, EdgeMethod]:
    """Each method's scores, as stored (float32) — circuits are built from the stored values, so an export of the
    report rebuilds exactly the circuits that were measured."""
    graph = graph_for(handle)
    out = {}
    for i, m in enumerate(methods):
        run = run_edge_method(handle, prep, m, steps)
        out[m] = edge_method(graph, run.scores, run.runtime_s, run.steps)
        if progress is not None:
            progress(i + 1, len(methods))
    return out


def edge_faithfulness(
    handle: ModelHandle,
    prep: Prepared,
    methods: dict[str, EdgeMethod],
    *,
    n_bootstrap: int = 0,
    seed: int = 0,
    progress: StepCounter | None = None,
) -> EdgeFaithfulness:
    """MIB's curve for each method, with CPR/CMD intervals from the per-pair metrics when `n_bootstrap` > 0."""
    runs = edge_curves(handle, prep, {m: v.scores for m, v in methods.items()}, progress=progress)
    idx = [i for i, _ in draws(len(runs.full), 1, True, n_bootstrap, seed)] if n_bootstrap else []
    curves = tuple(_curve(runs, m, idx) for m in methods)
    return EdgeFaithfulness(
        "patching" if prep.paired else "mean", runs.sizes, float(runs.full.mean()), float(runs.empty.mean()),
        curves, runs.runtime_s,
    )  # fmt: skip


def _curve(runs: EdgeCurves, method: str, idx: list) -> EdgeCurve:
    """CMD from the |score| circuits, CPR from the signed ones (MIB's reporting), each with its interval."""
    by_abs, by_sign = runs.run(method, True), runs.run(method, False)
    f_abs, (_, cmd) = curve_values(by_abs, runs.full, runs.empty, runs.sizes)
    f_sign, (cpr, _) = curve_values(by_sign, runs.full, runs.empty, runs.sizes)

    def both(g: np.ndarray) -> tuple[float, float]:
        return areas(runs.sizes, g)

    cmd_ci = curve_intervals(by_abs.per_pair, runs.full, runs.empty, both, idx)[1]
    cpr_ci = curve_intervals(by_sign.per_pair, runs.full, runs.empty, both, idx)[0]
    return EdgeCurve(
        method, by_abs.n_edges, by_abs.kept_edges, by_abs.kept_nodes, tuple(float(v) for v in f_abs),
        by_sign.kept_edges, tuple(float(v) for v in f_sign), cpr, cmd, cpr_ci, cmd_ci,
    )  # fmt: skip


def run_edges(
    handle: ModelHandle,
    prep: Prepared,
    methods: tuple[str, ...],
    *,
    steps: int = IG_STEPS,
    faithfulness: bool = True,
    n_bootstrap: int = 0,
    seed: int = 0,
    stage: Callable[[str], StepCounter] | None = None,
) -> EdgeAttribution:
    """Scores for `methods` and (with `faithfulness`) their MIB curves; `stage(name)` announces a stage and gives
    its (done, total) progress callback ("edge attribution", "edge faithfulness")."""
    scored = edge_methods(handle, prep, methods, steps, stage("edge attribution") if stage else None)
    faith = None
    if faithfulness:
        tick = stage("edge faithfulness") if stage else None
        faith = edge_faithfulness(handle, prep, scored, n_bootstrap=n_bootstrap, seed=seed, progress=tick)
    return EdgeAttribution(graph_for(handle), scored, faith)


def circuit_at(ea: EdgeAttribution, method: str, fraction: float) -> np.ndarray:
    """The method's MIB circuit of `fraction` of all edges (bool per canonical edge): greedy from the logits on
    the stored scores, pruned — the circuit its faithfulness curve measured at that size."""
    if not 0 <= fraction <= 1:
        raise InputError(f"circuit size must be a fraction in [0, 1], got {fraction!r}")
    graph: EdgeGraph = ea.graph
    scores = ea.method(method).scores
    return circuit(graph, greedy_order(graph, scores), size_edges(graph, fraction))


# ---- what a view of the edge circuit needs (the app's edge graph; no drawing here) -------------------------------
@dataclass(frozen=True)
class ViewNode(JsonCodec):
    name: str  # MIB's node name: input, a{l}.h{h}, m{l}, logits
    kind: str  # "input", "head", "mlp" or "logits"
    layer: int  # -1 for the input, n_layers for the logits
    head: int | None
    score: float  # the node's score (Σ of its outgoing edges; 0 for the logits)


@dataclass(frozen=True)
class ViewEdge(JsonCodec):
    sender: str
    receiver: str  # the receiving node's name
    via: str  # "q", "k", "v" (a head's input), "mlp" or "logits"
    score: float


@dataclass(frozen=True)
class EdgeView(JsonCodec):
    """One method's MIB circuit at `fraction` of the edges, as data a view draws: its nodes (the prompt tokens sit
    under `input`), its edges with their scores, and the heads it holds (for a head selection)."""

    method: str
    fraction: float
    nodes: tuple[ViewNode, ...]
    edges: tuple[ViewEdge, ...]
    tokens: tuple[str, ...]

    def heads(self) -> list[str]:
        """The circuit's heads as "L.H" (the shared selection's grammar)."""
        return [f"{n.layer}.{n.head}" for n in self.nodes if n.kind == "head"]


def _node(graph: EdgeGraph, u: int, score: float) -> ViewNode:
    if u == 0:
        return ViewNode("input", "input", -1, None, score)
    layer, index = divmod(u - 1, graph.n_heads + 1)
    if index == graph.n_heads:
        return ViewNode(f"m{layer}", "mlp", layer, None, score)
    return ViewNode(f"a{layer}.h{index}", "head", layer, index, score)


def edge_view(ea: EdgeAttribution, method: str, fraction: float, tokens: tuple[str, ...] = ()) -> EdgeView:
    """The edges and nodes of `method`'s circuit at `fraction` (circuit_at), strongest edges first."""
    graph, m = ea.graph, ea.method(method)
    kept = np.flatnonzero(circuit_at(ea, method, fraction))
    kept = kept[np.argsort(-np.abs(m.scores[kept]), kind="stable")]
    senders = sorted({int(u) for u in graph.src[kept]})
    nodes = [_node(graph, u, m.node_scores[u]) for u in senders]
    if kept.size:
        nodes.append(ViewNode("logits", "logits", graph.n_layers, None, 0.0))
    edges = []
    for e in kept.tolist():
        recv = graph.receiver_names[int(graph.dst[e])]
        name, _, via = recv.partition("<")
        via = via.rstrip(">") or ("logits" if name == "logits" else "mlp")
        edges.append(ViewEdge(graph.sender_names[int(graph.src[e])], name, via, float(m.scores[e])))
    return EdgeView(method, fraction, tuple(nodes), tuple(edges), tuple(tokens))
