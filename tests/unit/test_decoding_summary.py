"""decoding.summary on hand-built traces: the speed-up table against greedy, the drafted trees' paths, the
per-token entropy matrices and the first departure, each checked against a computation written out here."""

from __future__ import annotations

import itertools

import pytest
import torch

from headscope.decoding import Comparison, DecodeConfig, Step, StrategyResult, Trace
from headscope.decoding import summary as ds

LAYERS, HEADS = 2, 3


def _bits(seed: int, n: int) -> torch.Tensor:
    return torch.rand(n, LAYERS, HEADS, generator=torch.Generator().manual_seed(seed)) * 4


def _step(
    i: int, accepted: tuple[int, ...], drafted: tuple[int, ...] = (), n_acc: int = 0, seed: int = 0
) -> Step:
    n = len(accepted)
    return Step(
        i,
        drafted,
        "lookup" if drafted else "none",
        accepted,
        n_acc,
        (0.5,) * n,
        (1.0,) * n,
        attention_bits=_bits(seed + i, n),
    )


def _trace(name: str, steps: list[Step], wall_s: float, intervention: str | None = None) -> Trace:
    ids = tuple(t for s in steps for t in s.accepted)
    return Trace(strategy=name, token_ids=ids, steps=tuple(steps), wall_s=wall_s, intervention=intervention)


GREEDY = _trace("greedy", [_step(i, (t,)) for i, t in enumerate((11, 12, 13, 14))], wall_s=0.4)
NGRAM = _trace("ngram", [_step(0, (11, 12), (12, 9), 1), _step(1, (13, 14), (13,), 1, seed=5)], wall_s=0.1)
SLOW = _trace("sample", [_step(i, (t,), seed=9) for i, t in enumerate((11, 12, 7, 14))], wall_s=0.8)


def _comparison(*runs: Trace, cfg: DecodeConfig | None = None, reference: Trace | None = None) -> Comparison:
    greedy = reference or GREEDY
    results = tuple(StrategyResult.of(r, greedy) for r in runs)
    return Comparison("tiny", (1,), cfg or DecodeConfig(), results, reference=reference)


def test_speed_rows_are_ratios_to_greedy_flagged_below_1x() -> None:
    rows = ds.speed_rows(_comparison(GREEDY, NGRAM, SLOW))
    assert [r.run for r in rows] == ["greedy", "ngram", "sample"]
    g_mat, g_rate = 4 / 4, 4 / 0.4
    for row, (fwd, wall) in zip(rows, ((4, 0.4), (2, 0.1), (4, 0.8)), strict=True):
        assert row.forwards == fwd and row.tokens_per_forward == pytest.approx(4 / fwd)
        assert row.x_forward == pytest.approx((4 / fwd) / g_mat, abs=1e-3)
        assert row.x_wall == pytest.approx((4 / wall) / g_rate, abs=1e-3)
        assert row.below_1x_wall == ((4 / wall) / g_rate < 1) and row.below_1x_forward == (fwd > 4)
    assert [r.same_as_greedy for r in rows] == [True, True, False]
    assert ds.slower_than_greedy(_comparison(GREEDY, NGRAM, SLOW)) == ["sample"]


def test_under_an_intervention_greedy_is_its_own_first_row_and_the_runs_are_named_for_it() -> None:
    cfg = DecodeConfig(ablate_heads="1.2")
    ablated = _trace("greedy", list(SLOW.steps), wall_s=0.4, intervention="1.2")
    c = _comparison(ablated, cfg=cfg, reference=GREEDY)
    rows = ds.speed_rows(c)
    assert [r.run for r in rows] == ["greedy", "greedy + ablation of 1.2"]
    assert rows[0].x_wall == 1.0 and not rows[0].below_1x_wall
    assert [name for name, _ in ds.shown_runs(c)] == ["greedy (reference)", "greedy + ablation of 1.2"]
    assert ds.intervention_label(DecodeConfig(ablate_heads="1.2", ablation="zero")) == "zero-ablation of 1.2"
    assert ds.intervention_label(DecodeConfig()) is None


def test_tree_paths_run_root_to_leaf_with_the_accepted_path_first() -> None:
    parents = (-1, 0, 0, 1, -1)
    step = Step(
        0,
        (5, 6, 7, 8, 9),
        "recycling",
        (5, 7, 3),
        2,
        (0.5,) * 3,
        (1.0,) * 3,
        draft_parents=parents,
        accepted_path=(0, 2),
    )
    paths = ds.tree_paths(step)
    for p in paths:  # independent: each node's parent is the node before it, from a root to a leaf
        assert parents[p[0]] == -1 and all(parents[b] == a for a, b in itertools.pairwise(p))
    assert sorted(p[-1] for p in paths) == sorted(set(range(5)) - set(parents))
    assert paths[0] == (0, 2) and set(paths) == {(0, 2), (0, 1, 3), (4,)}
    chain = Step(0, (5, 6, 7), "lookup", (5, 9), 1, (0.5, 0.5), (1.0, 1.0), accepted_path=(0,))
    assert ds.tree_paths(chain) == [(0, 1, 2)]
    assert [r.strategy for r in ds.drafting_runs(_comparison(GREEDY, NGRAM, SLOW))] == ["ngram"]


def test_entropy_runs_are_token_by_head_matrices_of_every_run() -> None:
    runs = ds.entropy_runs(_comparison(GREEDY, NGRAM))
    assert [r.name for r in runs] == ["greedy (reference)", "ngram"]
    want = NGRAM.attention_entropy
    assert want is not None
    assert runs[1].heads == tuple(f"{layer}.{h}" for layer in range(LAYERS) for h in range(HEADS))
    assert torch.allclose(
        torch.tensor(runs[1].bits, dtype=torch.float64), want.reshape(len(want), -1).double(), atol=1e-6
    )
    assert runs[1].token_ids == NGRAM.token_ids


def test_the_departure_names_the_heads_whose_entropy_changed_most() -> None:
    d = ds.departure(_comparison(GREEDY, SLOW))
    assert d is not None and (d.run, d.position, d.token, d.greedy_token) == ("sample", 2, 7, 13)
    run_bits, greedy_bits = SLOW.attention_entropy, GREEDY.attention_entropy
    assert run_bits is not None and greedy_bits is not None
    change = (run_bits[2] - greedy_bits[2]).double()
    assert torch.allclose(torch.tensor(d.change_bits, dtype=torch.float64), change, atol=1e-6)
    assert torch.allclose(
        torch.tensor(d.greedy_bits, dtype=torch.float64), greedy_bits[2].double(), atol=1e-6
    )
    ranked = sorted(
        ((f"{la}.{h}", float(change[la, h])) for la in range(LAYERS) for h in range(HEADS)),
        key=lambda kv: -abs(kv[1]),
    )
    assert [h for h, _ in d.top_heads] == [h for h, _ in ranked[: ds.TOP_HEADS]]
    assert ds.departure(_comparison(GREEDY, NGRAM)) is None
