"""Error bars and chance, checked by hand: bootstrap intervals on tiny samples whose resampling distribution is
known exactly, the two-way margin bootstrap, the permutation p-value formula and the percentile."""

from __future__ import annotations

import numpy as np
import pytest

from headscope.steering import stats
from headscope.steering.chance import ChanceTest, verdict


def test_bootstrap_interval_on_a_tiny_case_by_hand() -> None:
    """Mean of 4 draws from (0, 0, 0, 1) is k/4 with k ~ Binomial(4, 1/4): P(k ≤ 2) = 0.949 < 0.975 < P(k ≤ 3)
    = 0.996 and P(k = 0) = 0.316 > 0.025, so the 95 % interval is [0, 0.75] (with 4000 resamples the empirical
    share at k ≤ 2 is 0.949 ± 0.004, far from the 0.975 edge)."""
    iv = stats.bootstrap([0, 0, 0, 1], seed=0, what="t", resamples=4000)
    assert (iv.value, iv.low, iv.high, iv.n) == (0.25, 0.0, 0.75, 4)


def test_bootstrap_degenerate_and_seeded() -> None:
    assert stats.bootstrap([2.5], seed=1, what="x") == stats.Interval(2.5, 2.5, 2.5, 1)
    x = np.sin(np.arange(30.0))  # 30 distinct values: the interval's ends move with the resampling stream
    a = stats.bootstrap(x, seed=5, what="m")
    assert a == stats.bootstrap(x, seed=5, what="m")
    assert a != stats.bootstrap(x, seed=5, what="other measure") and a != stats.bootstrap(x, seed=6, what="m")
    assert a.low <= a.value <= a.high
    with pytest.raises(ValueError):
        stats.bootstrap([], seed=0, what="e")


def test_margin_bootstrap_resamples_prompts_and_texts_by_hand() -> None:
    pos = np.array([True, True, False, False])
    # one prompt whose every positive text moved by 1 and no negative text: every resample gives exactly 1
    assert stats.bootstrap_margin(np.array([[1.0, 1.0, 0.0, 0.0]]), pos, seed=0, what="a") == stats.Interval(
        1.0, 1.0, 1.0, 1
    )
    # two prompts with margins 2 and 0, constant within each: only the prompt draw matters, and the mean of two
    # draws from {2, 0} is 0, 1 or 2 with P = 1/4, 1/2, 1/4 → the interval is [0, 2] around 1
    delta = np.array([[2.0, 2.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    assert stats.bootstrap_margin(delta, pos, seed=0, what="b", resamples=2000) == stats.Interval(
        1.0, 0.0, 2.0, 2
    )
    # one prompt, texts differ: positives (3, 1), negatives (0, 0) → mean of two draws from {3, 1} in {1, 2, 3}
    iv = stats.bootstrap_margin(np.array([[3.0, 1.0, 0.0, 0.0]]), pos, seed=0, what="c", resamples=2000)
    assert (iv.value, iv.low, iv.high) == (2.0, 1.0, 3.0)
    assert stats.margin(delta, pos) == 1.0


def test_permutation_p_value_and_percentile_formulas() -> None:
    random = [0.1, 0.5, 0.7, 0.2]
    assert stats.permutation_p(0.5, random) == pytest.approx((1 + 2) / (4 + 1))  # ties count against
    assert stats.percentile(0.5, random) == pytest.approx(100 * (2 + 0.5) / 4)
    twenty_below = [0.1] * 20
    assert stats.permutation_p(0.2, twenty_below) == pytest.approx(1 / 21)  # the smallest p R = 20 can give
    assert stats.percentile(0.2, twenty_below) == 100.0
    assert stats.permutation_p(0.0, twenty_below) == 1.0


def test_chance_verdict_reads_p_against_0_05() -> None:
    sel = stats.Interval(0.6, 0.5, 0.7, 200)
    better = ChanceTest.of(sel, [0.1] * 20, ["0.1"] * 20, 1, {"bias_steps": 30})
    assert better.p_value == pytest.approx(1 / 21) and better.better_than_random
    assert better.verdict == "better than random heads (p = 0.0476)"
    worse = ChanceTest.of(sel, [0.1] * 19 + [0.6], ["0.1"] * 20, 1, {"bias_steps": 30})
    assert worse.p_value == pytest.approx(2 / 21) and not worse.better_than_random
    assert worse.verdict == "not distinguishable from random heads (p = 0.0952)"
    assert verdict(None).startswith("not tested")
    js = worse.to_json()
    assert js["verdict"] == worse.verdict and ChanceTest.from_json(js).to_json() == js
