"""Typed edge-level results (schema 2.1's `edge_attribution`), through the one codec (headscope/codec.py).

Edge scores are stored compactly: one array per method in the graph's canonical edge order (edges_graph.py: MIB's
own construction order), written as base64 of little-endian float32 — 123,211 edges on SmolLM2 make ~657 KB of text
per method, against ~1.5 MB as a JSON list of rounded numbers. The graph is described once (`graph`), so every
position of the array names one edge (`EdgeGraph.edge_names()`); node scores (each sender's outgoing sum) are stored
beside it as a short list.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Literal

import numpy as np

from headscope.circuits.edges_graph import EdgeGraph
from headscope.codec import JsonCodec, jfield
from headscope.errors import InputError

ENCODING = "base64-float32-le"
CI = tuple[float, float]


def pack(values: np.ndarray) -> str:
    return base64.b64encode(np.asarray(values, dtype="<f4").tobytes()).decode("ascii")


def unpack(text: str) -> np.ndarray:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise InputError("edge scores are not valid base64") from None
    if len(raw) % 4:
        raise InputError("edge scores are not a whole number of float32 values")
    return np.frombuffer(raw, dtype="<f4").astype(np.float64)


@dataclass(frozen=True)
class EdgeMethod(JsonCodec):
    """One edge method's scores (canonical edge order; the project's sign: ≈ m(clean) − m(edge patched))."""

    node_scores: tuple[float, ...]  # per sender, forward order: the sum of its outgoing edge scores
    scores: np.ndarray = jfield(encode=pack, decode=unpack)
    runtime_s: float = jfield(digits=4)
    steps: int | None = None  # EAP-IG interpolation points

    def ranking(self) -> np.ndarray:
        return np.abs(self.scores)


@dataclass(frozen=True)
class EdgeCurve(JsonCodec):
    """One method's MIB faithfulness at the protocol's sizes, with MIB's two rankings: greedy circuits by |score|
    (`kept_edges`, `faithfulness`; CMD = area under |1 − f|) and by the signed score (`signed_kept_edges`,
    `signed_faithfulness`; CPR = area under f), each area with its bootstrap interval over prompt pairs."""

    method: str
    n_edges: tuple[int, ...]  # edges asked for at each size (⌊fraction × all edges⌋)
    kept_edges: tuple[int, ...]  # after pruning to input → logits paths (|score| ranking)
    kept_nodes: tuple[int, ...]
    faithfulness: tuple[float, ...]  # f at each size, |score| ranking
    signed_kept_edges: tuple[int, ...]
    signed_faithfulness: tuple[float, ...]  # f at each size, signed ranking
    cpr: float
    cmd: float
    cpr_ci: CI | None = None
    cmd_ci: CI | None = None


@dataclass(frozen=True)
class EdgeFaithfulness(JsonCodec):
    intervention: Literal[
        "patching", "mean"
    ]  # outside edges carry the paired corrupted run's or the mean value
    sizes: tuple[float, ...]  # fractions of all edges
    full_metric: float  # m(N): the clean model
    empty_metric: float  # m(∅): every edge carries its corrupted value
    curves: tuple[EdgeCurve, ...]
    runtime_s: float = jfield(digits=4)

    def curve(self, method: str) -> EdgeCurve | None:
        return next((c for c in self.curves if c.method == method), None)


@dataclass(frozen=True)
class EdgeAttribution(JsonCodec):
    """Edge scores over MIB's whole model graph for each edge method, and their MIB faithfulness."""

    graph: EdgeGraph
    methods: dict[str, EdgeMethod]
    faithfulness: EdgeFaithfulness | None = None
    encoding: Literal["base64-float32-le"] = ENCODING
    sign: Literal["clean_minus_patched"] = "clean_minus_patched"

    def __post_init__(self) -> None:
        for name, m in self.methods.items():
            if np.shape(m.scores) != (self.graph.n_edges,):
                raise InputError(
                    f"edge method {name} has {np.size(m.scores)} scores; the graph has {self.graph.n_edges} edges"
                )
            if len(m.node_scores) != self.graph.n_forward:
                raise InputError(
                    f"edge method {name} has {len(m.node_scores)} node scores, not {self.graph.n_forward}"
                )

    def method(self, name: str) -> EdgeMethod:
        if name not in self.methods:
            raise InputError(
                f"edge method must be one of {', '.join(self.methods) or '(none)'}, got {name!r}"
            )
        return self.methods[name]


def edge_method(graph: EdgeGraph, scores: np.ndarray, runtime_s: float, steps: int | None) -> EdgeMethod:
    """Scores rounded to float32 as stored, with the node scores summed from those stored values."""
    stored = np.asarray(scores, dtype="<f4").astype(np.float64)
    return EdgeMethod(tuple(float(v) for v in graph.node_scores(stored)), stored, runtime_s, steps)
