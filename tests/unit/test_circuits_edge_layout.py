"""circuits/edge_layout.py: where the edge graph puts nodes and tokens, and how edges are grouped for drawing,
checked on a hand-made 2-layer × 3-head circuit against values worked out here."""

from __future__ import annotations

from headscope.circuits import edge_layout as lay
from headscope.circuits.edges_run import EdgeView, ViewEdge, ViewNode

NODES = (
    ViewNode("input", "input", -1, None, 1.5),
    ViewNode("a0.h2", "head", 0, 2, 0.5),
    ViewNode("m1", "mlp", 1, None, -0.25),
    ViewNode("logits", "logits", 2, None, 0.0),
)
EDGES = [
    ViewEdge("input", "a0.h2", "q", 1.0),
    ViewEdge("a0.h2", "m1", "mlp", -0.5),
    ViewEdge("m1", "logits", "logits", 0.1),
    ViewEdge("input", "logits", "logits", 0.0),
]
VIEW = EdgeView("eap", 0.5, NODES, tuple(EDGES), ("a", " b"))


def test_nodes_sit_on_their_rows() -> None:
    pos = lay.positions(VIEW, n_heads=3, n_layers=2)
    assert pos == {"input": (1.0, -1.0), "a0.h2": (2.0, 0.0), "m1": (3.5, 1.5), "logits": (1.0, 2.0)}
    assert lay.midpoints(EDGES[:1], pos) == [(1.5, -0.5)]
    assert lay.token_xs(2, 3) == [-0.5 + 4.5 * 0.25, -0.5 + 4.5 * 0.75] and lay.token_xs(0, 3) == []
    assert lay.node_label(NODES[1]) == "a0.h2: layer 0, head 2<br>node score +0.5 (Σ of its outgoing edges)"
    assert lay.node_label(NODES[3]) == "logits: logits (the task metric)"
    assert lay.edge_label(EDGES[0], "EAP") == "EAP: input → a0.h2 (q input)<br>score +1"


def test_every_edge_is_in_one_group_by_sign_and_strength() -> None:
    pos = lay.positions(VIEW, n_heads=3, n_layers=2)
    groups = lay.edge_groups(EDGES, pos, bins=4)
    # |score| / top: 1.0 → bin 3, 0.5 → bin 1 (negative), 0.1 → bin 0, 0.0 → bin 0 (with the positives)
    assert [(g.sign, g.width_bin) for g in groups] == [(1, 0), (1, 3), (-1, 1)]
    assert sum(len(g.xs) // 3 for g in groups) == len(EDGES)
    weakest = groups[0]
    assert weakest.xs == (3.5, 1.0, None, 1.0, 1.0, None) and weakest.ys == (1.5, 2.0, None, -1.0, 2.0, None)
