"""The Attention & locality tab's typed results (`probes.view`): what the app draws equals independent float64
recomputations from raw `hook_pattern`, and survives its JSON round trip (the app and a job runner only see JSON)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from headscope.attention import LocalityDial, dial_hooks
from headscope.errors import InputError
from headscope.localist.train_inspect import AttentionComparison, compare_attention
from headscope.models import ModelHandle
from headscope.probes.view import EntropyView, PatternView, entropy_view, pattern_view, uniform_ceiling_bits
from headscope.selection import HeadSet

TEXT = "The cat sat on the mat. It was warm, so it slept; later, it woke."


def _raw(handle: ModelHandle, fwd_hooks=()) -> np.ndarray:
    """[layer, head, q, k] float64 straight from hook_pattern (the oracle's input)."""
    tokens = handle.tokenize(TEXT)
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(handle.facts.n_layers)]
    _, cache = handle.run_with_cache(tokens, names, fwd_hooks=fwd_hooks)
    return np.stack([cache[n][0].double().numpy() for n in names])


def _entropy(p: np.ndarray) -> np.ndarray:
    safe = np.where(p > 0, p, 1.0)
    return -(np.where(p > 0, p * np.log2(safe), 0.0)).sum(-1)


def test_entropy_view_matches_raw_patterns_and_round_trips(tiny_llama: ModelHandle) -> None:
    dial = LocalityDial(lam=0.7, heads="1.2, 0.*")
    shown = HeadSet.parse("1.3, 0.1", 2, 4)
    view = entropy_view(tiny_llama, TEXT, dial, shown=shown)
    back = EntropyView.from_json(view.to_json())
    tokens = tiny_llama.tokenize(TEXT)
    dialed = _entropy(_raw(tiny_llama, dial_hooks(tiny_llama, tokens, dial)))  # [l, h, q]
    plain = _entropy(_raw(tiny_llama))
    np.testing.assert_allclose(back.probes.entropy_bits, dialed.mean(-1), atol=1e-5)
    np.testing.assert_allclose(back.baseline.entropy_bits, plain.mean(-1), atol=1e-5)  # type: ignore[union-attr]
    np.testing.assert_allclose(back.delta_bits, dialed.mean(-1) - plain.mean(-1), atol=2e-5)  # type: ignore[arg-type]
    values, n_shown = back.token_entropy()
    np.testing.assert_allclose(values, (dialed[1, 3] + dialed[0, 1]) / 2, atol=1e-5)
    assert n_shown == 2 and back.shown_heads == ((0, 1), (1, 3))
    n = tokens.shape[1]
    assert back.uniform_ceiling_bits == pytest.approx(np.log2(np.arange(1, n + 1)).mean())
    assert back.dial == dial and back.to_json() == view.to_json()


def test_lambda_zero_has_no_baseline_and_every_head_in_the_strip(tiny_gpt2: ModelHandle) -> None:
    view = EntropyView.from_json(entropy_view(tiny_gpt2, TEXT, LocalityDial()).to_json())
    assert view.baseline is None and view.delta_bits is None
    values, n_shown = view.token_entropy()
    np.testing.assert_allclose(values, _entropy(_raw(tiny_gpt2)).mean((0, 1)), atol=1e-5)
    assert n_shown is None
    with pytest.raises(InputError, match="limit is 4"):
        entropy_view(tiny_gpt2, TEXT, LocalityDial(), max_tokens=4)


def test_pattern_view_is_the_raw_pattern(tiny_llama: ModelHandle) -> None:
    view = PatternView.from_json(pattern_view(tiny_llama, TEXT, [(1, 3), (0, 2)]).to_json())
    raw = _raw(tiny_llama)
    assert view.heads == ((1, 3), (0, 2)) and len(view.token_ids) == raw.shape[-1]
    np.testing.assert_allclose(view.patterns[0], raw[1, 3], atol=1e-6)
    np.testing.assert_allclose(view.patterns[1], raw[0, 2], atol=1e-6)


def test_uniform_ceiling() -> None:
    assert uniform_ceiling_bits(1) == 0.0
    assert uniform_ceiling_bits(4) == pytest.approx((0 + 1 + math.log2(3) + 2) / 4)


def test_localist_comparison_keeps_each_models_head_pattern() -> None:
    handles = [
        ModelHandle.load(n, device="cpu", allow_external=False)
        for n in ("localist-2l-lambda1.0", "localist-2l-lambda0")
    ]
    cmp = AttentionComparison.from_json(compare_attention(handles, TEXT, 1, 2).to_json())
    for handle, reading, pat in zip(handles, cmp.readings, cmp.head_patterns, strict=True):
        raw = _raw(handle)
        np.testing.assert_allclose(pat, raw[1, 2], atol=1e-5)
        np.testing.assert_allclose(reading.entropy_bits, _entropy(raw).mean(-1), atol=1e-4)
        assert list(reading.token_ids) == handle.tokenize(TEXT)[0].tolist()
    assert cmp.same_tokens and (cmp.layer, cmp.head) == (1, 2)
    with pytest.raises(InputError, match="2 layers × 4 heads; got layer 2"):
        compare_attention(handles[:1], TEXT, 2, 0)


def test_head_rows_and_rankings_agree_with_the_arrays(tiny_llama: ModelHandle) -> None:
    """The entropy view's head table and its "k lowest-entropy" / "k the dial changes most" rankings, against an
    independent numpy reading of the same arrays (ties broken row-major, NaN never ranked)."""
    view = EntropyView.from_json(entropy_view(tiny_llama, TEXT, LocalityDial(lam=0.6)).to_json())
    p, delta = view.probes, view.delta_bits
    assert delta is not None  # λ > 0: the view carries its change against λ = 0
    rows = view.head_rows({"1.2"})
    assert [(r["layer"], r["head"]) for r in rows] == [(a, b) for a in range(2) for b in range(4)]
    for r in rows:
        lh = (int(r["layer"] or 0), int(r["head"] or 0))
        assert r["entropy_bits"] == pytest.approx(p.entropy_bits[lh])
        assert r["delta_bits"] == pytest.approx(delta[lh])
        assert r["mean_distance"] == pytest.approx(p.mean_distance[lh])
        assert r["selected"] == ("✓" if lh == (1, 2) else "")
    flat = [divmod(int(i), 4) for i in np.argsort(p.entropy_bits.ravel(), kind="stable")]
    assert view.rank_heads(3) == flat[:3]
    moved = [divmod(int(i), 4) for i in np.argsort(-np.abs(delta).ravel(), kind="stable")]  # type: ignore[arg-type]
    assert view.rank_heads(3, by="delta") == moved[:3]

    grid = np.array([[3.0, 1.0, math.nan, 1.0], [-2.0, 0.5, 1.0, 4.0]])
    made = replace(
        view, probes=replace(p, entropy_bits=grid), baseline=replace(p, entropy_bits=np.zeros((2, 4)))
    )
    assert made.rank_heads(3) == [(1, 0), (1, 1), (0, 1)]  # the tie 1.0 at 0.1, 0.3, 1.2: row-major
    assert made.rank_heads(2, by="delta") == [(1, 3), (0, 0)]
    assert len(made.rank_heads(99)) == 7  # the NaN head is never ranked
    assert (
        EntropyView.from_json(entropy_view(tiny_llama, TEXT, LocalityDial()).to_json()).rank_heads(
            2, by="delta"
        )
        == []
    )  # λ = 0: nothing to compare against
    with pytest.raises(InputError, match="rank heads by"):
        view.rank_heads(2, by="size")
