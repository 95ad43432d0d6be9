"""Edge attribution and edge circuits over MIB's graph, checked against single edges patched by hand-placed hooks.

Oracles (tiny models: GPT-2-like with 4 heads, Llama-like with 4 query heads sharing 2 key/value heads):
- every EAP edge score equals the derivative of the metric under patching that one edge, measured by central
  differences with hooks placed here (the first-order claim, to 1e-3 relative);
- the full single-edge patch agrees with the EAP score to first order (stated tolerance below);
- a node's outgoing edge scores sum to its own attribution-patching score (attribution.py, computed through z);
- the circuit runner with one edge outside equals the hand patch of that edge; with every edge outside it equals
  the corrupted run, with none the clean run.
On the grouped-query model a k/v edge into query head h is patched as MIB's ungrouped graph has it: a second copy
of the rows carries the patched shared input, and only head h's attention scores (k) or z (v) are taken from it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from headscope.circuits import attribution, patching
from headscope.circuits.edges import edge_scores, graph_for, sender_outputs
from headscope.circuits.edges_faith import circuit_metrics
from headscope.circuits.tasks import make_task
from headscope.models import ModelHandle, hooks

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
def setup(tiny: ModelHandle, one_thread: None) -> dict[str, Any]:
    prep = patching.prepare(tiny, make_task("custom", tiny.tokenizer, n=3, seed=0, spec=SPEC))
    delta = sender_outputs(tiny, prep.corrupt) - sender_outputs(tiny, prep.clean)  # corrupt − clean
    eap, ig = edge_scores(tiny, prep, "eap"), edge_scores(tiny, prep, "eap_ig")
    return {"prep": prep, "graph": graph_for(tiny), "delta": delta, "eap": eap, "eap_ig": ig}


def _receiver(graph, b: int) -> tuple[str, int, int]:
    """(kind, layer, head) of a backward index: kind q/k/v/mlp/logits."""
    if b == graph.logits_bwd:
        return "logits", graph.n_layers - 1, -1
    layer, rest = divmod(b, 3 * graph.n_heads + 1)
    if rest == 3 * graph.n_heads:
        return "mlp", layer, -1
    return "qkv"[rest // graph.n_heads], layer, rest % graph.n_heads


def _patched_metric(handle: ModelHandle, prep, graph, u: int, b: int, add: torch.Tensor) -> float:
    """Mean metric with `add` (the sender's change, [batch, pos, d]) reaching only receiver b: hand-placed hooks."""
    kind, layer, head = _receiver(graph, b)
    n = prep.clean.ids.shape[0]
    if kind == "logits":
        plan = [(hooks.resid(layer, "post"), lambda x, hook: x + add)]
    elif kind == "mlp":
        plan = [(hooks.sublayer_in(layer, "mlp"), lambda x, hook: x + add)]
    elif kind == "q" or graph.group == 1:

        def qkv(x: torch.Tensor, hook: Any) -> torch.Tensor:
            x = x.clone()
            x[:, :, head] += add
            return x

        plan = [(hooks.sublayer_in(layer, kind), qkv)]
    else:  # grouped k/v: rows n.. carry the patched shared input; head `head` alone reads from them
        group = head // graph.group

        def shared(x: torch.Tensor, hook: Any) -> torch.Tensor:
            x = x.clone()
            x[n:, :, group] += add
            return x

        def take(x: torch.Tensor, hook: Any) -> torch.Tensor:
            x = x.clone()
            if kind == "k":  # attention scores [batch, head, q, k]
                x[:n, head] = x[n:, head]
            else:  # z [batch, pos, head, d_head]
                x[:n, :, head] = x[n:, :, head]
            return x

        site = hooks.scores(layer) if kind == "k" else hooks.z(layer)
        ids = prep.clean.ids.repeat(2, 1)
        logits = handle.forward(ids, fwd_hooks=[(hooks.sublayer_in(layer, kind), shared), (site, take)])[:n]
        return float(patching.logit_diff(patching.final_logits(logits, prep.clean), prep.answers).mean())
    logits = handle.forward(prep.clean.ids, fwd_hooks=plan)
    return float(patching.logit_diff(patching.final_logits(logits, prep.clean), prep.answers).mean())


def test_eap_is_the_derivative_of_single_edge_patching(tiny: ModelHandle, setup: dict[str, Any]) -> None:
    prep, graph, delta, eap = setup["prep"], setup["graph"], setup["delta"], setup["eap"]
    eps = 1e-2
    fd = np.empty(graph.n_edges)
    for e, (u, b) in enumerate(zip(graph.src.tolist(), graph.dst.tolist(), strict=True)):
        plus = _patched_metric(tiny, prep, graph, u, b, eps * delta[u])
        minus = _patched_metric(tiny, prep, graph, u, b, -eps * delta[u])
        fd[e] = (minus - plus) / (2 * eps)  # d/dε of m(clean) − m(ε-patched): the project's sign
    scale = np.abs(eap).max()
    assert scale > 1e-3
    np.testing.assert_allclose(eap, fd, atol=1e-3 * scale)


def test_eap_agrees_with_the_full_single_edge_patch_to_first_order(
    tiny: ModelHandle, setup: dict[str, Any]
) -> None:
    prep, graph, delta, eap = setup["prep"], setup["graph"], setup["delta"], setup["eap"]
    clean = float(patching.metric(tiny, prep.clean, prep.answers).mean())
    effect = np.array([
        clean - _patched_metric(tiny, prep, graph, u, b, delta[u])
        for u, b in zip(graph.src.tolist(), graph.dst.tolist(), strict=True)
    ])  # fmt: skip
    # First order only. Measured on these random tiny models: Pearson r 0.97 on both, median |error| 0.05 % of the
    # largest effect, worst edge input → m0 (the whole embedding difference into one MLP) 12-34 % of it.
    err, top = np.abs(eap - effect), np.abs(effect).max()
    assert np.corrcoef(eap, effect)[0, 1] > 0.95
    assert np.median(err) <= 0.01 * top and err.max() <= 0.5 * top


def test_eap_and_eap_ig_share_the_oracles_sign(tiny: ModelHandle, setup: dict[str, Any]) -> None:
    """One convention for both methods: score > 0 = patching the edge alone lowers the metric (the edge carries the
    task), so signed top-k keeps helpful edges. Measured here: Pearson r with the single-edge patch 0.97 (EAP) and
    0.99 (EAP-IG); on the edges whose |effect| exceeds 5 % of the largest, EAP-IG's sign always agrees, EAP's on
    93-94 % (first-order misses; on SmolLM2 IOI its input → m0 is −3.7 where the patch gives +3.1, EAP-IG +4.3)."""
    prep, graph, delta = setup["prep"], setup["graph"], setup["delta"]
    clean = float(patching.metric(tiny, prep.clean, prep.answers).mean())
    effect = np.array([
        clean - _patched_metric(tiny, prep, graph, u, b, delta[u])
        for u, b in zip(graph.src.tolist(), graph.dst.tolist(), strict=True)
    ])  # fmt: skip
    big = np.abs(effect) > 0.05 * np.abs(effect).max()
    assert big.sum() >= 10
    for method, floor in (("eap", 0.9), ("eap_ig", 1.0)):
        scores = setup[method]
        assert np.corrcoef(scores, effect)[0, 1] > 0.95, method
        assert (np.sign(scores[big]) == np.sign(effect[big])).mean() >= floor, method


def test_outgoing_edges_sum_to_the_node_score(tiny: ModelHandle, setup: dict[str, Any]) -> None:
    graph, prep = setup["graph"], setup["prep"]
    for method, node_fn in (("eap", attribution.attribution_patching), ("eap_ig", attribution.eap_ig)):
        scores = setup[method]
        nodes = graph.node_scores(scores)
        heads = node_fn(tiny, prep).mean(0).numpy()
        mine = np.array([[nodes[graph.head_fwd(la, h)] for h in range(graph.n_heads)] for la in range(2)])
        np.testing.assert_allclose(mine, heads, atol=1e-6)


def test_chunked_passes_give_the_same_scores(tiny: ModelHandle, setup: dict[str, Any]) -> None:
    prep = setup["prep"]
    np.testing.assert_allclose(edge_scores(tiny, prep, "eap", max_rows=2), setup["eap"], atol=1e-7)
    a = edge_scores(tiny, prep, "eap_ig", steps=3)
    np.testing.assert_allclose(edge_scores(tiny, prep, "eap_ig", steps=3, max_rows=3), a, atol=1e-7)


def test_circuit_runner_equals_hand_patches(tiny: ModelHandle, setup: dict[str, Any]) -> None:
    prep, graph, delta = setup["prep"], setup["graph"], setup["delta"]
    picks = np.random.default_rng(0).choice(graph.n_edges, 12, replace=False)
    masks = np.ones((len(picks) + 2, graph.n_edges), dtype=bool)
    for i, e in enumerate(picks):
        masks[i, e] = False  # that one edge carries its corrupted value
    masks[-1] = False  # the empty circuit
    got = circuit_metrics(tiny, prep, masks, max_rows=2 * 3 * graph.group).mean(1).numpy()
    for i, e in enumerate(picks):
        u, b = int(graph.src[e]), int(graph.dst[e])
        assert got[i] == pytest.approx(_patched_metric(tiny, prep, graph, u, b, delta[u]), abs=1e-5)
    assert got[-2] == pytest.approx(float(patching.metric(tiny, prep.clean, prep.answers).mean()), abs=1e-5)
    corrupted = float(patching.metric(tiny, prep.corrupt, prep.corrupt_answers).mean())
    assert got[-1] == pytest.approx(corrupted, abs=1e-5)
