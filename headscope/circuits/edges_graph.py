"""The model graph of MIB's circuit track (papers.md §10.1) and the circuits built on it.

Nodes (MIB's names): `input`, every head `a{l}.h{h}`, every MLP `m{l}`, `logits`. With `parallel_attn_mlp = false`
an edge runs from every node to the input of every later node; the heads of layer l come before `m{l}`, and an edge
into a head is three edges, into its query, key and value inputs (`a0.h1->a1.h2<q>`). Grouped-query models keep one
q, k and v input per *query* head, as MIB's ungrouped graph does (`edges.py` says how those are scored).

Indices are MIB's: a sender's forward index (input 0, `a{l}.h{h}` 1 + l(H+1) + h, `m{l}` 1 + l(H+1) + H) and a
receiver's backward index (`a{l}.h{h}<q|k|v>` l(3H+1) + {0,1,2}·H + h, `m{l}` l(3H+1) + 3H, logits last). Edge
scores live in a [forward, backward] matrix; the **canonical edge order** — the order of `edge_names()`, of every
score array a report stores and of an MIB file's edges — is MIB's own construction order: layer by layer, first
every earlier node into each head's q, k, v (sender-major, then head, then q/k/v), then every earlier node into the
MLP; last, every node into the logits.

Circuits are built as MIB builds them (`greedy_order` + `prune`): starting from the logits, repeatedly take the
highest-|score| edge whose receiving node is already in the circuit, adding its sender; a circuit of n edges is the
first n of that order, then pruned to the edges on some input → logits path.
"""

from __future__ import annotations

import functools
import heapq
from dataclasses import dataclass

import numpy as np

from headscope import checks
from headscope.codec import JsonCodec
from headscope.errors import InputError

QKV = "qkv"
# MIB's circuit sizes: fractions of all edges (its `percentages`)
MIB_SIZES: tuple[float, ...] = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


@dataclass(frozen=True)
class EdgeGraph(JsonCodec):
    """MIB's model graph for a model of `n_layers` × `n_heads` (`n_kv_heads` key/value heads)."""

    n_layers: int
    n_heads: int
    n_kv_heads: int
    parallel_attn_mlp: bool = False

    json_extra = ("n_forward", "n_backward", "n_edges", "order")

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "n_layers", checks.integer(self.n_layers, "n_layers", 1, 1000))
        set_(self, "n_heads", checks.integer(self.n_heads, "n_heads", 1, 1000))
        set_(self, "n_kv_heads", checks.integer(self.n_kv_heads, "n_kv_heads", 1, self.n_heads))
        if self.n_heads % self.n_kv_heads:
            raise InputError(f"n_kv_heads ({self.n_kv_heads}) must divide n_heads ({self.n_heads})")
        if self.parallel_attn_mlp is not False:
            raise InputError("only the sequential graph (parallel_attn_mlp = false) is supported")

    @property
    def order(self) -> str:
        return "mib"

    @property
    def group(self) -> int:
        """Query heads per key/value head."""
        return self.n_heads // self.n_kv_heads

    @property
    def n_forward(self) -> int:
        return 1 + self.n_layers * (self.n_heads + 1)

    @property
    def n_backward(self) -> int:
        return self.n_layers * (3 * self.n_heads + 1) + 1

    @property
    def n_edges(self) -> int:
        return int(self.src.size)

    # ---- indices ---------------------------------------------------------------------------------------------
    def head_fwd(self, layer: int, head: int) -> int:
        return 1 + layer * (self.n_heads + 1) + head

    def mlp_fwd(self, layer: int) -> int:
        return 1 + layer * (self.n_heads + 1) + self.n_heads

    def head_bwd(self, layer: int, head: int, letter: str) -> int:
        return layer * (3 * self.n_heads + 1) + QKV.index(letter) * self.n_heads + head

    def mlp_bwd(self, layer: int) -> int:
        return layer * (3 * self.n_heads + 1) + 3 * self.n_heads

    @property
    def logits_bwd(self) -> int:
        return self.n_backward - 1

    def attn_senders(self, layer: int) -> int:
        """How many senders (a prefix of the forward order) feed layer `layer`'s heads."""
        return 1 + layer * (self.n_heads + 1)

    def mlp_senders(self, layer: int) -> int:
        return self.attn_senders(layer) + self.n_heads

    # ---- names -----------------------------------------------------------------------------------------------
    @functools.cached_property
    def sender_names(self) -> tuple[str, ...]:
        names = ["input"]
        for layer in range(self.n_layers):
            names += [f"a{layer}.h{h}" for h in range(self.n_heads)] + [f"m{layer}"]
        return tuple(names)

    @functools.cached_property
    def receiver_names(self) -> tuple[str, ...]:
        names: list[str] = []
        for layer in range(self.n_layers):
            for letter in QKV:
                names += [f"a{layer}.h{h}<{letter}>" for h in range(self.n_heads)]
            names.append(f"m{layer}")
        return (*names, "logits")

    @functools.cached_property
    def receiver_node(self) -> np.ndarray:
        """For each receiver, the forward index of its node (-1 for the logits)."""
        out = np.full(self.n_backward, -1, dtype=np.int64)
        for layer in range(self.n_layers):
            for letter in QKV:
                for h in range(self.n_heads):
                    out[self.head_bwd(layer, h, letter)] = self.head_fwd(layer, h)
            out[self.mlp_bwd(layer)] = self.mlp_fwd(layer)
        return out

    @functools.cached_property
    def _edges(self) -> tuple[np.ndarray, np.ndarray]:
        src: list[np.ndarray] = []
        dst: list[np.ndarray] = []
        n_h = self.n_heads
        for layer in range(self.n_layers):
            u, h, q = np.meshgrid(
                np.arange(self.attn_senders(layer)), np.arange(n_h), np.arange(3), indexing="ij"
            )
            src.append(u.ravel())
            dst.append((layer * (3 * n_h + 1) + q * n_h + h).ravel())
            n_mlp = self.mlp_senders(layer)
            src.append(np.arange(n_mlp))
            dst.append(np.full(n_mlp, self.mlp_bwd(layer)))
        src.append(np.arange(self.n_forward))
        dst.append(np.full(self.n_forward, self.logits_bwd))
        return np.concatenate(src).astype(np.int64), np.concatenate(dst).astype(np.int64)

    @property
    def src(self) -> np.ndarray:
        """Forward index of each edge's sender, in canonical order."""
        return self._edges[0]

    @property
    def dst(self) -> np.ndarray:
        """Backward index of each edge's receiver, in canonical order."""
        return self._edges[1]

    def edge_names(self) -> list[str]:
        s, r = self.sender_names, self.receiver_names
        return [f"{s[a]}->{r[b]}" for a, b in zip(self.src.tolist(), self.dst.tolist(), strict=True)]

    @functools.cached_property
    def real(self) -> np.ndarray:
        """[forward, backward] bool: which (sender, receiver) pairs are edges of the graph."""
        mask = np.zeros((self.n_forward, self.n_backward), dtype=bool)
        mask[self.src, self.dst] = True
        return mask

    def canonical(self, matrix: np.ndarray) -> np.ndarray:
        """A [forward, backward] matrix as one value per edge, in canonical order."""
        return np.asarray(matrix)[self.src, self.dst]

    def matrix(self, values: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """The inverse of `canonical`: per-edge values back into a [forward, backward] matrix."""
        values = np.asarray(values)
        if values.shape != (self.n_edges,):
            raise InputError(f"expected {self.n_edges} edge values, got shape {values.shape}")
        out = np.full((self.n_forward, self.n_backward), fill, dtype=values.dtype)
        out[self.src, self.dst] = values
        return out

    def node_scores(self, edge_scores: np.ndarray) -> np.ndarray:
        """Each sender's score: the sum of its outgoing edges' scores (papers.md §10.1)."""
        return np.bincount(self.src, weights=np.asarray(edge_scores, dtype=float), minlength=self.n_forward)


def graph_of(n_layers: int, n_heads: int, n_kv_heads: int | None = None) -> EdgeGraph:
    return EdgeGraph(n_layers, n_heads, n_kv_heads or n_heads)


# ---- circuits ------------------------------------------------------------------------------------------------------
def _receivers_of(graph: EdgeGraph) -> list[list[int]]:
    """For each sender node, the receivers (backward indices) that are its inputs (none for `input`)."""
    out: list[list[int]] = [[] for _ in range(graph.n_forward)]
    for b, node in enumerate(graph.receiver_node.tolist()):
        if node >= 0:
            out[node].append(b)
    return out


def greedy_order(graph: EdgeGraph, scores: np.ndarray, absolute: bool = True) -> np.ndarray:
    """The order in which MIB's greedy construction adds edges (canonical edge indices), over all edges.

    Candidates are the edges into receivers whose node is in the circuit (at first only the logits); the highest
    |score| candidate (`absolute=False`: the highest score, as MIB ranks for CPR) is taken next (ties: canonical
    order), and when its sender enters the circuit, the edges into that sender's inputs become candidates. A
    circuit of n edges is the first n of this order."""
    mags = np.asarray(scores, dtype=float)
    mags = np.abs(mags) if absolute else mags
    by_recv: dict[int, np.ndarray] = {}
    order_idx = np.lexsort((np.arange(mags.size), -mags))  # key descending, then canonical
    recv_sorted = graph.dst[order_idx]
    split = np.argsort(recv_sorted, kind="stable")
    bounds = np.searchsorted(recv_sorted[split], np.arange(graph.n_backward + 1))
    for b in range(graph.n_backward):
        by_recv[b] = order_idx[split[bounds[b] : bounds[b + 1]]]
    inputs = _receivers_of(graph)
    heap: list[tuple[float, int, int, int]] = []  # (-|score|, edge index, receiver, position in its list)

    def open_receiver(b: int) -> None:
        edges = by_recv[b]
        if edges.size:
            e = int(edges[0])
            heapq.heappush(heap, (-mags[e], e, b, 0))

    open_receiver(graph.logits_bwd)
    in_circuit = np.zeros(graph.n_forward, dtype=bool)
    out = np.empty(mags.size, dtype=np.int64)
    for i in range(mags.size):
        _, e, b, pos = heapq.heappop(heap)
        out[i] = e
        if pos + 1 < by_recv[b].size:
            nxt = int(by_recv[b][pos + 1])
            heapq.heappush(heap, (-mags[nxt], nxt, b, pos + 1))
        u = int(graph.src[e])
        if not in_circuit[u]:
            in_circuit[u] = True
            for r in inputs[u]:
                open_receiver(r)
    return out


def prune(graph: EdgeGraph, included: np.ndarray) -> np.ndarray:
    """The edges (bool per canonical edge) that lie on some input → logits path through included edges: nodes
    without an included incoming edge (other than `input`) or outgoing edge (other than the logits) are dropped
    with their edges until nothing changes, as MIB's `prune`."""
    keep = np.asarray(included, dtype=bool).copy()
    recv_node = graph.receiver_node[graph.dst]
    while True:
        has_out = np.zeros(graph.n_forward, dtype=bool)
        has_out[graph.src[keep]] = True
        has_in = np.zeros(graph.n_forward, dtype=bool)
        has_in[recv_node[keep & (recv_node >= 0)]] = True
        has_in[0] = True
        node = has_out & has_in
        recv_ok = np.where(recv_node >= 0, node[np.maximum(recv_node, 0)], True)
        new = keep & node[graph.src] & recv_ok
        if np.array_equal(new, keep):
            return keep
        keep = new


def circuit(graph: EdgeGraph, order: np.ndarray, n_edges: int) -> np.ndarray:
    """MIB's greedy circuit of `n_edges` edges (bool per canonical edge), pruned."""
    n = checks.integer(n_edges, "n_edges", 0, graph.n_edges)
    chosen = np.zeros(graph.n_edges, dtype=bool)
    chosen[order[:n]] = True
    return prune(graph, chosen)


def size_edges(graph: EdgeGraph, fraction: float) -> int:
    """Edges in a circuit of `fraction` of all edges, rounded down as MIB does."""
    return int(fraction * graph.n_edges)


def circuit_nodes(graph: EdgeGraph, edges: np.ndarray) -> list[str]:
    """The nodes (forward order, then `logits`) that the included edges touch."""
    used = np.zeros(graph.n_forward, dtype=bool)
    used[graph.src[edges]] = True
    names = [n for n, u in zip(graph.sender_names, used.tolist(), strict=True) if u]
    return [*names, "logits"] if edges.any() else names
