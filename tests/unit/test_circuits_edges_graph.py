"""MIB's graph, its greedy circuits and the edge faithfulness curve, each against an independent recomputation: the
graph's edges from MIB's description, the greedy order from a naive loop over candidate sets, pruning by path
search, CPR/CMD by hand trapezoids from the per-pair circuit metrics, the intervals from the same bootstrap draws."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from headscope.circuits import patching
from headscope.circuits.edges import edge_scores, graph_for
from headscope.circuits.edges_faith import circuit_metrics
from headscope.circuits.edges_graph import MIB_SIZES, EdgeGraph, circuit, greedy_order, prune, size_edges
from headscope.circuits.edges_run import edge_faithfulness, edge_methods
from headscope.circuits.stability import draws
from headscope.circuits.tasks import make_task
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


def _described(n_layers: int, n_heads: int) -> list[str]:
    """MIB's graph from its description (every node into every later node's input; q/k/v per head)."""
    up, out = ["input"], []
    for la in range(n_layers):
        heads = [f"a{la}.h{h}" for h in range(n_heads)]
        out += [f"{u}->{h}<{x}>" for u in up for h in heads for x in "qkv"]
        up += heads
        out += [f"{u}->m{la}" for u in up]
        up.append(f"m{la}")
    return out + [f"{u}->logits" for u in up]


def test_graph_is_mibs() -> None:
    g = EdgeGraph(3, 4, 2)
    assert g.edge_names() == _described(3, 4) and EdgeGraph(30, 9, 3).n_edges == 123_211
    values = np.random.default_rng(0).normal(size=g.n_edges)
    assert np.array_equal(g.canonical(g.matrix(values)), values) and g.real.sum() == g.n_edges
    by_hand = np.zeros(g.n_forward)
    for name, v in zip(g.edge_names(), values, strict=True):
        by_hand[g.sender_names.index(name.split("->")[0])] += v
    np.testing.assert_allclose(g.node_scores(values), by_hand)
    with pytest.raises(InputError, match="must divide"):
        EdgeGraph(2, 4, 3)


def _naive_greedy(g: EdgeGraph, scores: np.ndarray, absolute: bool) -> list[int]:
    """Each step: among edges into receivers whose node is in the circuit, the best key (ties: lowest index)."""
    key = np.abs(scores) if absolute else scores
    in_circuit = {-1}  # the logits
    taken: list[int] = []
    recv_node = g.receiver_node[g.dst]
    left = set(range(g.n_edges))
    while left:
        cand = [e for e in left if int(recv_node[e]) in in_circuit]
        e = min(cand, key=lambda i: (-key[i], i))
        taken.append(e)
        left.discard(e)
        in_circuit.add(int(g.src[e]))
    return taken


@pytest.mark.parametrize("absolute", [True, False])
def test_greedy_order_equals_a_naive_greedy(absolute: bool) -> None:
    g = EdgeGraph(2, 3, 3)
    scores = np.random.default_rng(1).normal(size=g.n_edges)
    assert greedy_order(g, scores, absolute).tolist() == _naive_greedy(g, scores, absolute)


def _on_a_path(g: EdgeGraph, kept: np.ndarray) -> np.ndarray:
    """Edges u → v that are reachable from the input and reach the logits through kept edges (path search)."""
    recv_node = g.receiver_node[g.dst]
    edges = [(int(g.src[e]), int(recv_node[e]), e) for e in np.flatnonzero(kept)]
    reach = {0}
    for _ in range(g.n_forward):
        reach |= {v for u, v, _ in edges if u in reach and v >= 0}
    back = {-1}
    for _ in range(g.n_forward):
        back |= {u for u, v, _ in edges if v in back}
    ok = np.zeros(g.n_edges, dtype=bool)
    for u, v, e in edges:
        ok[e] = u in reach and (v in back)
    return ok


def test_pruned_circuits_are_the_input_to_logits_paths() -> None:
    g = EdgeGraph(3, 4, 2)
    rng = np.random.default_rng(2)
    for _ in range(5):
        chosen = rng.random(g.n_edges) < 0.08
        assert np.array_equal(prune(g, chosen), _on_a_path(g, chosen))
    order = greedy_order(g, rng.normal(size=g.n_edges))
    for frac in MIB_SIZES:
        kept = circuit(g, order, size_edges(g, frac))
        assert np.array_equal(kept, _on_a_path(g, kept)) and kept.sum() <= size_edges(g, frac)


@pytest.fixture(scope="module")
def curve(tiny_gpt2: ModelHandle, one_thread: None):
    prep = patching.prepare(tiny_gpt2, make_task("custom", tiny_gpt2.tokenizer, n=4, seed=0, spec=SPEC))
    methods = edge_methods(tiny_gpt2, prep, ("eap",))
    return prep, methods, edge_faithfulness(tiny_gpt2, prep, methods, n_bootstrap=40, seed=3)


def test_curve_is_recomputed_by_hand(tiny_gpt2: ModelHandle, curve) -> None:
    prep, methods, faith = curve
    g, s, c = graph_for(tiny_gpt2), methods["eap"].scores, faith.curves[0]
    np.testing.assert_allclose(methods["eap"].scores, edge_scores(tiny_gpt2, prep, "eap"), atol=1e-6)
    x = np.asarray(MIB_SIZES)
    full = float(patching.metric(tiny_gpt2, prep.clean, prep.answers).mean())
    empty = float(patching.metric(tiny_gpt2, prep.corrupt, prep.corrupt_answers).mean())  # paired task
    assert faith.full_metric == pytest.approx(full, abs=1e-5) and faith.empty_metric == pytest.approx(
        empty, abs=1e-5
    )
    per = {}
    for absolute in (True, False):
        order = greedy_order(g, s, absolute)
        masks = np.stack([circuit(g, order, int(f * g.n_edges)) for f in MIB_SIZES])
        per[absolute] = circuit_metrics(tiny_gpt2, prep, masks).numpy()
        f = (per[absolute].mean(1) - empty) / (full - empty)
        np.testing.assert_allclose(c.faithfulness if absolute else c.signed_faithfulness, f, atol=1e-5)
        area = sum((x[i + 1] - x[i]) * (f[i] + f[i + 1]) / 2 for i in range(len(x) - 1))
        gap = sum((x[i + 1] - x[i]) * (abs(1 - f[i]) + abs(1 - f[i + 1])) / 2 for i in range(len(x) - 1))
        if absolute:
            assert c.cmd == pytest.approx(gap, abs=1e-5) and f[-1] == pytest.approx(1.0, abs=1e-5)
        else:
            assert c.cpr == pytest.approx(area, abs=1e-5)
    # the interval from the same draws, by hand
    full_pp = patching.metric(tiny_gpt2, prep.clean, prep.answers).numpy()
    empty_pp = patching.metric(tiny_gpt2, prep.corrupt, prep.corrupt_answers).numpy()
    cprs = []
    for idx, _ in draws(4, 1, True, 40, 3):
        i = idx.numpy()
        f = (per[False][:, i].mean(1) - empty_pp[i].mean()) / (full_pp[i].mean() - empty_pp[i].mean())
        cprs.append(sum((x[k + 1] - x[k]) * (f[k] + f[k + 1]) / 2 for k in range(len(x) - 1)))
    assert c.cpr_ci == pytest.approx(tuple(np.quantile(cprs, [0.025, 0.975])), abs=1e-5)
    assert torch.get_num_threads() == 1
