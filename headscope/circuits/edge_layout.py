"""An edge circuit (`circuit_at`: a report's method at a size, as `edges_run.EdgeView`) and where its graph puts
things, as data a figure draws: the input at the bottom, layer l's heads on row l (its MLP right of them, half a
row up: it reads the heads), the logits on top, the prompt's tokens spread under the input; edges grouped by sign
and |score| bin (a few line traces, not one per edge), each with its midpoint and hover line (lines carry no hover
of their own). No plotting: the app draws it (app/circuits_edge_views.py)."""

from __future__ import annotations

from dataclasses import dataclass

from headscope.circuits.edges_run import EdgeView, ViewEdge, ViewNode, edge_view
from headscope.circuits.result import CircuitResult
from headscope.circuits.summary import title
from headscope.errors import InputError

XY = tuple[float, float]


def circuit_at(result: CircuitResult, method: str, percent: float) -> EdgeView:
    """The method's circuit at `percent` % of all edges, checked: a report with edge scores, a method it scored."""
    ea = result.edge_attribution
    if ea is None:
        raise InputError("this report has no edge scores: run with an edge method (EAP or EAP-IG) ticked")
    if method not in ea.methods:
        raise InputError(f"edge method must be one of {', '.join(ea.methods)}, got {method!r}")
    return edge_view(ea, method, float(percent) / 100.0, result.task.example_tokens)


def circuit_heads(result: CircuitResult, method: str, percent: float) -> list[str]:
    """The heads of that circuit as "L.H" (for a head selection); a circuit without heads is refused."""
    heads = circuit_at(result, method, percent).heads()
    if not heads:
        raise InputError(f"the {title(method)} circuit at {percent:g} % holds no head")
    return heads


NODE_WORDS = {"input": "token embeddings", "logits": "logits (the task metric)"}


def node_xy(node: ViewNode, n_heads: int, n_layers: int) -> XY:
    if node.kind == "input":
        return (n_heads - 1) / 2, -1.0
    if node.kind == "logits":
        return (n_heads - 1) / 2, float(n_layers)
    if node.kind == "mlp":
        return n_heads + 0.5, node.layer + 0.5
    return float(node.head or 0), float(node.layer)


def node_label(n: ViewNode) -> str:
    what = NODE_WORDS.get(n.kind) or (
        f"layer {n.layer}, head {n.head}" if n.kind == "head" else f"MLP {n.layer}"
    )
    score = "" if n.kind == "logits" else f"<br>node score {n.score:+.4g} (Σ of its outgoing edges)"
    return f"{n.name}: {what}{score}"


def edge_label(e: ViewEdge, title: str) -> str:
    via = f" ({e.via} input)" if e.via in ("q", "k", "v") else ""
    return f"{title}: {e.sender} → {e.receiver}{via}<br>score {e.score:+.4g}"


@dataclass(frozen=True)
class EdgeGroup:
    """Edges of one sign whose |score| falls in bin `width_bin` of `bins` (0 = weakest): drawn as one trace."""

    sign: int  # +1 helps the task, −1 hurts it
    width_bin: int
    bins: int
    xs: tuple[float | None, ...]  # x0, x1, None per edge (a break between segments)
    ys: tuple[float | None, ...]


def edge_groups(edges: list[ViewEdge], pos: dict[str, XY], bins: int) -> list[EdgeGroup]:
    """The edges by (sign, |score| bin of the strongest |score|), non-empty groups only; a zero score is in the
    first positive bin."""
    top = max((abs(e.score) for e in edges), default=1.0) or 1.0
    groups = []
    for sign in (1, -1):
        for b in range(bins):
            lo, hi = top * b / bins, top * (b + 1) / bins
            picked = [
                e
                for e in edges
                if _sign(e.score) == sign and (lo < abs(e.score) <= hi or (b == 0 and e.score == 0))
            ]
            xs = tuple(v for e in picked for v in (pos[e.sender][0], pos[e.receiver][0], None))
            ys = tuple(v for e in picked for v in (pos[e.sender][1], pos[e.receiver][1], None))
            if picked:
                groups.append(EdgeGroup(sign, b, bins, xs, ys))
    return groups


def _sign(x: float) -> int:
    return 1 if x >= 0 else -1  # 0 drawn with the positive edges (it hurts nothing)


def midpoints(edges: list[ViewEdge], pos: dict[str, XY]) -> list[XY]:
    return [
        ((pos[e.sender][0] + pos[e.receiver][0]) / 2, (pos[e.sender][1] + pos[e.receiver][1]) / 2)
        for e in edges
    ]


def token_xs(n_tokens: int, n_heads: int) -> list[float]:
    """The prompt's tokens evenly along the bottom, under the input node (edges are summed over positions)."""
    n = max(n_tokens, 1)
    return [-0.5 + (n_heads + 1.5) * (i + 0.5) / n for i in range(n_tokens)]


def positions(view: EdgeView, n_heads: int, n_layers: int) -> dict[str, XY]:
    return {n.name: node_xy(n, n_heads, n_layers) for n in view.nodes}
