"""Discrete-SAE variants: every score against an independent recomputation by explicit loops (contingency-table
mutual information, histogram distances, pair by pair contrasts, a primal ridge probe per head), the reference
variant against the frozen golden codes, resampling against rescoring from scratch, and the registry's rules."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from headscope.circuits import scoring
from headscope.circuits.config import CircuitConfig
from headscope.circuits.sae import SAEConfig
from headscope.circuits.variants import DEFAULT_VARIANT, VARIANTS, SAEVariant, check_variant, variant_choices
from headscope.circuits.variants_fit import (
    fit_variant,
    node_scores,
    order,
    resampled_scores,
    resolved,
    ties_in_top,
)
from headscope.circuits.variants_score import (
    SCORES,
    Stored,
    baseline_stored,
    distributions,
    probe_folds,
    sae_stored,
)
from headscope.errors import InputError

GOLDEN = Path(__file__).parent / "golden" / "circuits_sae_reference.json"
N_POS, N_HEADS, N_LAT = 8, 5, 6


def _acts(seed: int = 0) -> torch.Tensor:
    """Sparse non-negative activations [16 examples, 5 heads, 6 latents] with silent cells; head 1 separates."""
    g = torch.Generator().manual_seed(seed)
    f = torch.relu(torch.randn(2 * N_POS, N_HEADS, N_LAT, generator=g) - 0.6)
    f[:N_POS, 1, 2] += 2.0
    f[N_POS:, 1, 4] += 2.0
    f[3, 0] = 0.0  # a silent cell
    return f


def _mi_by_hand(labels: list[int], codes: list[int]) -> float:
    n = len(labels)
    joint, pc, py = Counter(zip(codes, labels, strict=True)), Counter(codes), Counter(labels)
    return sum(c / n * math.log((c / n) / (pc[a] / n * py[b] / n)) for (a, b), c in joint.items())


@pytest.mark.parametrize("paired", [True, False])
def test_argmax_scores_equal_contingency_tables(paired: bool) -> None:
    f = _acts()
    s = sae_stored(f, N_POS, paired, "argmax")
    codes = [[int(f[e, h].argmax()) if f[e, h].max() > 0 else -1 for h in range(N_HEADS)] for e in range(16)]
    labels = [1] * N_POS + [0] * N_POS
    for h in range(N_HEADS):
        col = [codes[e][h] for e in range(16)]
        assert SCORES["mutual_information"](s)[h] == pytest.approx(_mi_by_hand(labels, col), abs=1e-12)
        pos, neg = Counter(col[:N_POS]), Counter(col[N_POS:])
        tv = 0.5 * sum(abs(pos[c] / N_POS - neg[c] / N_POS) for c in set(col))
        assert SCORES["divergence"](s)[h] == pytest.approx(tv, abs=1e-12)
        if paired:
            changed = np.mean([col[i] != col[N_POS + i] for i in range(N_POS)])
            assert SCORES["paired"](s)[h] == pytest.approx(changed, abs=1e-12)
    assert np.argmax(SCORES["mutual_information"](s)) == 1  # the separating head


def test_separation_is_the_best_latents_effect_size() -> None:
    f = _acts(6)
    s = sae_stored(f, N_POS, True, "magnitude")
    got = SCORES["separation"](s)
    a = f.double().numpy()
    for h in range(N_HEADS):
        best = 0.0
        for j in range(N_LAT):
            p, n = a[:N_POS, h, j], a[N_POS:, h, j]
            sd = math.sqrt(0.5 * p.var() + 0.5 * n.var())
            if sd > 0:
                best = max(best, abs(p.mean() - n.mean()) / sd)
        assert got[h] == pytest.approx(best, rel=1e-9)
    assert np.argmax(got) == 1


def test_unpaired_contrast_averages_every_combination() -> None:
    f = _acts(1)
    s = sae_stored(f, N_POS, False, "soft")
    q = s.q
    assert q is not None
    want = np.mean(
        [[0.5 * np.abs(q[i] - q[N_POS + j]).sum(-1) for j in range(N_POS)] for i in range(N_POS)], (0, 1)
    )
    np.testing.assert_allclose(SCORES["paired"](s), want, atol=1e-12)


def test_code_distributions() -> None:
    f = _acts(2).double().numpy()
    for code, k in (("argmax", 1), ("topk", 3), ("soft", 1)):
        q = distributions(f, code, k)
        np.testing.assert_allclose(
            q.sum(-1), 1.0, atol=1e-12
        )  # every cell is a distribution (silent: last bin)
        for e, h in ((0, 0), (3, 0), (5, 1)):
            active = np.flatnonzero(f[e, h] > 0)
            if active.size == 0:
                assert q[e, h, -1] == 1.0
            elif code == "soft":
                np.testing.assert_allclose(q[e, h, :-1], f[e, h] / f[e, h].sum())
            else:
                top = sorted(active, key=lambda j: -f[e, h, j])[:k]
                assert set(np.flatnonzero(q[e, h, :-1])) == set(top)


def test_rarity_and_topk_set_difference_by_hand() -> None:
    f = _acts(3)
    s = sae_stored(f, N_POS, True, "topk", 2)
    q = s.q
    assert q is not None
    freq = (q > 0).astype(float) * q
    weight = -np.log(freq.sum((0, 1)) / (16 * N_HEADS))
    for h in range(N_HEADS):
        pos_bins = {b for e in range(N_POS) for b in np.flatnonzero(q[e, h])}
        neg_bins = {b for e in range(N_POS, 16) for b in np.flatnonzero(q[e, h])}
        assert SCORES["set_difference"](s)[h] == len(pos_bins - neg_bins)
        want = sum(q[:N_POS, h, b].sum() * weight[b] for b in pos_bins - neg_bins)
        assert SCORES["rarity"](s)[h] == pytest.approx(want, abs=1e-12)


def test_reference_variant_reproduces_the_frozen_codes() -> None:
    """The `reference` variant through fit_variant gives the golden codes and the paper's scores exactly."""
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))["reference_rows"]
    g = torch.Generator().manual_seed(11)
    x = torch.randn(20, 12, 16, generator=g)
    atoms = torch.randn(3, 16, generator=g)
    x[:10, 2] += 3 * atoms[0]
    x[:10, 5] += 2 * atoms[1]
    x[::2, 7] += 2 * atoms[2]
    r = VARIANTS["reference"].resolve("mean", 6, SAEConfig(n_latents=24, epochs=60))
    # the golden trained on rows [0, 3, 6, 9, 12, 15]; the variant draws its own split from the seed
    run = fit_variant(x, r, n_positive=10, paired=True, seed=3, l1=0.02, n_heads=12)
    codes = run.codes()
    assert run.node.tolist() == scoring.node_scores(codes, torch.arange(20) < 10).tolist()
    trained = run.trained
    assert trained is not None
    from headscope.circuits.sae import codes as ref_codes

    assert torch.equal(codes, ref_codes(trained.sae, x))
    assert len(golden["codes"]) == 20  # the golden itself is checked in test_circuits_sae_golden.py


@pytest.mark.parametrize("name", ["mi", "soft_divergence", "topk_set", "soft_paired", "rarity"])
def test_resampled_scores_equal_rescoring_from_scratch(name: str) -> None:
    f = _acts(4)
    v = VARIANTS[name]
    s = sae_stored(f, N_POS, True, v.code, v.k)
    rows = torch.tensor([3, 3, 0, 7, 5, 1, 1, 2])
    sub = torch.cat([f[rows], f[rows + N_POS]])
    fresh = node_scores(v, sae_stored(sub, N_POS, True, v.code, v.k))
    np.testing.assert_allclose(resampled_scores(name, s, rows, rows), fresh, atol=1e-12)


def _x(seed: int = 5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2 * N_POS, N_HEADS, 7, generator=g)
    x[:N_POS, 2] += 1.5
    return x


def test_mean_gap_by_hand() -> None:
    x = _x()
    s = baseline_stored(x, N_POS, True)
    want = (x[:N_POS].double().mean(0) - x[N_POS:].double().mean(0)).norm(dim=-1).numpy()
    np.testing.assert_allclose(SCORES["mean_gap"](s), want, rtol=1e-10)


def test_probe_equals_a_primal_ridge_per_head() -> None:
    x = _x().double().numpy()
    s = baseline_stored(torch.from_numpy(x), N_POS, True)
    y = np.where(np.arange(2 * N_POS) < N_POS, 1.0, -1.0)
    fold = probe_folds(s)
    assert sorted(Counter(fold.tolist()).values()) == [4, 4, 4, 4] and (fold[:N_POS] == fold[N_POS:]).all()
    want = np.zeros(N_HEADS)
    for h in range(N_HEADS):
        margins = np.zeros(2 * N_POS)
        for f in np.unique(fold):
            tr, te = fold != f, fold == f
            mu, ym = x[tr, h].mean(0), y[tr].mean()
            xt = x[tr, h] - mu
            lam = (xt**2).sum() / tr.sum()
            w = np.linalg.solve(xt.T @ xt + lam * np.eye(xt.shape[1]), xt.T @ (y[tr] - ym))
            margins[te] = ((x[te, h] - mu) @ w + ym) * y[te]
        want[h] = margins.mean()
    np.testing.assert_allclose(SCORES["probe"](s), want, rtol=1e-8, atol=1e-10)
    assert np.argmax(want) == 2


def test_baseline_variants_fit_without_an_sae() -> None:
    x = _x()
    r = VARIANTS["mean_gap"].resolve("mean", 10, SAEConfig())
    run = fit_variant(x, r, n_positive=N_POS, paired=True, seed=0, l1=0.02, n_heads=N_HEADS)
    assert run.trained is None and run.n_train == 0
    np.testing.assert_allclose(run.node, SCORES["mean_gap"](baseline_stored(x, N_POS, True)), atol=1e-5)


def test_noise_level_differences_become_ties_and_counts_stay_exact() -> None:
    s = np.array([0.5, 0.25 + 1e-9, 0.25, 1.0, 1e-12])
    r = resolved(s)
    assert r[1] == r[2] and r[4] == 0.0 and order(r).tolist() == [3, 0, 1, 2, 4]  # the tie by head index
    assert np.abs(r - s).max() <= 1e-6
    counts = np.array([3.0, 7.0, 0.0])
    assert resolved(counts) is not None and np.array_equal(resolved(counts), counts)


def test_one_tie_rule() -> None:
    s = np.array([1.0, 3.0, 3.0, 0.5, 3.0])
    assert order(s).tolist() == [1, 2, 4, 0, 3]  # ties by head index
    assert ties_in_top(s, 3) == 3 and ties_in_top(np.array([3.0, 2.0, 1.0]), 3) == 0


def test_registry_is_documented_and_checked() -> None:
    assert next(iter(VARIANTS)) == "reference"
    for name, v in VARIANTS.items():
        assert v.name == name and v.summary and v.motivation
    with pytest.raises(InputError, match=r"sae_variant must be one of .*reference"):
        check_variant("nope")
    with pytest.raises(InputError, match="baseline"):
        check_variant("mean_gap")
    assert check_variant("mi") == "mi"
    with pytest.raises(InputError, match="score"):
        SAEVariant("x", "y", "z", score="bogus")
    with pytest.raises(InputError, match="read"):
        SAEVariant("x", "y", "z", read="middle")
    with pytest.raises(ValueError, match="already registered"):
        VARIANTS.add("reference", VARIANTS["reference"])


def test_variant_choices_are_what_a_run_accepts_with_the_default_marked() -> None:
    choices = variant_choices()
    names = [c.name for c in choices]
    assert names == [n for n in VARIANTS if VARIANTS[n].uses_sae] and "mean_gap" not in names
    assert [c.name for c in choices if c.default] == [DEFAULT_VARIANT] == [CircuitConfig().sae_variant]
    for c in choices:
        assert check_variant(c.name) == c.name and c.summary == VARIANTS[c.name].summary
        assert type(c).from_json(json.loads(json.dumps(c.to_json()))) == c


def test_cli_default_variant_is_the_config_default() -> None:
    from headscope.cli import build_parser

    args = build_parser().parse_args(["circuits", "run"])
    assert args.sae_variant == DEFAULT_VARIANT


def test_resolve_takes_the_run_values_where_the_variant_is_silent() -> None:
    base = SAEConfig(epochs=30)
    r = VARIANTS["reference"].resolve("last", 12, base)
    assert (r.read, r.n_train, r.sae) == ("last", 12, base)
    r = VARIANTS["latents_50"].resolve("mean", 10, base)
    assert r.sae.n_latents == 50 and r.sae.epochs == 30
    assert json.loads(json.dumps(r.to_json()))["sae"]["n_latents"] == 50


def test_stored_take_keeps_pairs_only_when_aligned() -> None:
    s = sae_stored(_acts(), N_POS, True, "argmax")
    a = torch.tensor([0, 1, 2])
    assert s.take(a, a).paired and not s.take(a, torch.tensor([2, 1, 0])).paired
    assert Stored(3, False, codes=np.zeros((6, 2), dtype=np.int64)).take(a, a).n_examples == 6
