"""The verification rules and AWRS on explicit toy distributions (no model): exactness by chi-square."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from headscope.decoding import DecodeConfig, awrs_choice, mask_choice, verify_greedy, verify_sampled, warp
from headscope.decoding.awrs import Unsatisfiable
from headscope.decoding.smc import ess
from headscope.errors import InputError

pytestmark = pytest.mark.usefixtures("one_thread")


def chi2_pvalue(observed: list[int], expected: list[float]) -> float:
    """Pearson chi-square p-value (Wilson–Hilferty approximation of the chi-square tail)."""
    cells = [(o, e) for o, e in zip(observed, expected, strict=True) if e > 0]
    stat = sum((o - e) ** 2 / e for o, e in cells)
    k = len(cells) - 1
    z = ((stat / k) ** (1 / 3) - (1 - 2 / (9 * k))) / math.sqrt(2 / (9 * k))
    return 0.5 * math.erfc(z / math.sqrt(2))


def test_chi2_helper_rejects_a_wrong_distribution() -> None:
    assert chi2_pvalue([500, 500], [500, 500]) > 0.5
    assert chi2_pvalue([600, 400], [500, 500]) < 1e-6


def test_verify_greedy_takes_longest_argmax_prefix() -> None:
    p = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5]])
    assert verify_greedy([1, 0], p) == (2, 2)
    assert verify_greedy([1, 2], p) == (1, 0)
    assert verify_greedy([0, 0], p) == (0, 1)
    assert verify_greedy([], p) == (0, 1)


def test_speculative_sampling_preserves_the_target_distribution_over_two_tokens() -> None:
    """Toy 'models' over a 3-token vocabulary with first-token and conditional second-token tables. Drafts come
    from q, verification against p; the emitted pair must be distributed as p(x1)·p(x2|x1)."""
    gen = torch.Generator().manual_seed(0)
    p1, q1 = torch.tensor([0.5, 0.3, 0.2]), torch.tensor([0.2, 0.2, 0.6])
    p2 = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.4, 0.3]])
    q2 = torch.tensor([[0.3, 0.3, 0.4], [0.6, 0.2, 0.2], [0.1, 0.8, 0.1]])
    p3 = torch.tensor([1 / 3, 1 / 3, 1 / 3])
    counts: Counter[tuple[int, int]] = Counter()
    n = 6000
    for _ in range(n):
        d1 = int(torch.multinomial(q1, 1, generator=gen))
        d2 = int(torch.multinomial(q2[d1], 1, generator=gen))
        p_rows = torch.stack([p1, p2[d1], p3])
        n_acc, nxt = verify_sampled([d1, d2], [q1, q2[d1]], p_rows, gen)
        if n_acc == 0:  # the pair continues from the corrected first token: draw its successor from p
            pair = (nxt, int(torch.multinomial(p2[nxt], 1, generator=gen)))
        else:
            pair = (d1, d2 if n_acc == 2 else nxt)
        counts[pair] += 1
    cells = [(a, b) for a in range(3) for b in range(3)]
    expected = [n * float(p1[a] * p2[a, b]) for a, b in cells]
    assert chi2_pvalue([counts[c] for c in cells], expected) > 1e-3


def test_deterministic_drafts_are_verified_exactly_too() -> None:
    """q = one-hot (n-gram drafts): accept with p(d), else sample from p without d."""
    gen = torch.Generator().manual_seed(1)
    p = torch.tensor([0.1, 0.6, 0.3])
    counts: Counter[int] = Counter()
    for _ in range(5000):
        n_acc, nxt = verify_sampled([2], [None], torch.stack([p, p]), gen)
        counts[2 if n_acc == 1 else nxt] += 1
    assert chi2_pvalue([counts[i] for i in range(3)], [5000 * float(x) for x in p]) > 1e-3


def test_warp_top_k_top_p_and_temperature() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    probs = warp(logits, DecodeConfig(temperature=1.0, top_k=2))
    assert probs[0, 2:].sum() == 0 and torch.isclose(probs.sum(), torch.tensor(1.0))
    full = torch.softmax(logits, -1)[0]
    probs = warp(logits, DecodeConfig(temperature=1.0, top_p=float(full[0]) + 0.01))
    assert (probs[0] > 0).tolist() == [True, True, False, False]
    assert torch.allclose(warp(logits, DecodeConfig(temperature=0.5)), torch.softmax(logits / 0.5, -1))


LOGP = torch.log(torch.tensor([0.4, 0.25, 0.15, 0.1, 0.06, 0.04]))
ALLOWED = {1, 3, 4}
# Peaked (top probability ≥ 2/3): AWRS uses the geometric estimator here.
PEAKED = torch.log(torch.tensor([0.8, 0.08, 0.05, 0.04, 0.02, 0.01]))


def exact_constrained(logp: torch.Tensor, allowed: set[int]) -> tuple[list[float], float]:
    p = logp.exp()
    z = float(sum(p[i] for i in allowed))
    return [float(p[i]) / z if i in allowed else 0.0 for i in range(len(p))], z


def sample_many(choose, logp: torch.Tensor, allowed: set[int], n: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    counts: Counter[int] = Counter()
    weights, evals, estimators = [], 0, Counter()
    for _ in range(n):
        c = choose(logp, lambda t: t in allowed, gen)
        counts[c.token] += 1
        weights.append(math.exp(c.log_weight))
        evals += c.evals
        estimators[c.estimator] += 1
    return counts, weights, evals, estimators


@pytest.mark.parametrize(
    ("logp", "allowed", "estimator"),
    [(LOGP, ALLOWED, "recursive"), (PEAKED, {2, 4, 5}, "geometric"), (PEAKED, {0, 3}, "geometric")],
)
def test_awrs_samples_match_exact_constrained_sampling_beside_masking(logp, allowed, estimator) -> None:
    """Chi-square of AWRS draws against the exact constrained distribution p·c/Z, with the masking baseline's
    draws tested the same way; and each estimator's weight is unbiased for Z (mean within 4 standard errors)."""
    n = 4000
    exact, z = exact_constrained(logp, allowed)
    cells = sorted(allowed)
    for choose in (awrs_choice, mask_choice):
        counts, weights, evals, used = sample_many(choose, logp, allowed, n, seed=2)
        assert set(counts) <= allowed
        assert chi2_pvalue([counts[i] for i in cells], [n * exact[i] for i in cells]) > 1e-3, choose.__name__
        mean = sum(weights) / n
        sd = (sum((w - mean) ** 2 for w in weights) / (n - 1)) ** 0.5
        assert abs(mean - z) <= 4 * sd / n**0.5 + 1e-6, (choose.__name__, mean, z)
        if choose is awrs_choice:
            assert used[estimator] == n and evals / n < len(logp)  # fewer evaluations than masking's 6
        else:
            assert evals == n * len(logp)


def test_awrs_greedy_is_the_constrained_argmax() -> None:
    c = awrs_choice(LOGP, lambda t: t in ALLOWED, None)
    assert c.token == 1 and c.evals == 2 and c.log_weight is None
    assert mask_choice(LOGP, lambda t: t in ALLOWED, None).token == 1


def test_awrs_has_no_rejection_cap() -> None:
    """Only the least likely of 50,000 tokens is allowed: AWRS walks on until it finds it (the old 2048-rejection
    cap called this unsatisfiable), and the weight is then exact."""
    logits = torch.linspace(10.0, -10.0, 50_000, dtype=torch.float64)
    logp = torch.log_softmax(logits, 0)
    last = 49_999
    for seed in range(3):
        c = awrs_choice(logp, lambda t: t == last, torch.Generator().manual_seed(seed))
        assert c.token == last and c.evals >= 2048
        assert c.log_weight is not None and math.isclose(c.log_weight, float(logp[last]), rel_tol=1e-6)


def test_unsatisfiable_constraint_is_one_clear_error_after_the_whole_vocabulary() -> None:
    for method in (awrs_choice, mask_choice):
        for gen in (None, torch.Generator().manual_seed(0)):
            with pytest.raises(Unsatisfiable, match="admits no token"):
                method(LOGP, lambda t: False, gen)
    assert issubclass(Unsatisfiable, InputError)


def test_effective_sample_size() -> None:
    assert ess([0.0, 0.0, 0.0, 0.0]) == pytest.approx(4.0)
    assert ess([0.0, -math.inf, -math.inf, -math.inf]) == pytest.approx(1.0)
    assert ess([math.log(3.0), 0.0]) == pytest.approx(16 / 10)
    assert ess([-math.inf, -math.inf]) == 0.0
