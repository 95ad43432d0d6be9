"""Attention probes against independent float64 numpy recomputations from raw `hook_pattern`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from headscope.attention import BlockSpec, LocalityDial, block_ids, dial_hooks, row_entropy_bits, target_mask
from headscope.errors import InputError
from headscope.models import ModelHandle, hooks
from headscope.probes import (
    ProbeConfig,
    entropy_bits,
    entropy_report,
    head_patterns,
    induction_scores,
    model_induction_scores,
    probe_attention,
)
from headscope.probes import backends as backends_mod
from headscope.probes.probe import random_repeated_tokens

TEXT = "The cat sat on the mat. It was warm, so it slept; later, it woke."


def raw_patterns(handle: ModelHandle, tokens: torch.Tensor, fwd_hooks=()) -> np.ndarray:
    """[layer, head, q, k] float64, straight from hook_pattern."""
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(handle.facts.n_layers)]
    _, cache = handle.run_with_cache(tokens, names, fwd_hooks=fwd_hooks)
    return np.stack([cache[n][0].double().numpy() for n in names])


def np_entropy(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log2(np.where(p > 0, p, 1.0)), 0.0)
    return -terms.sum(-1)


def test_row_entropy_known_values() -> None:
    rows = torch.tensor([[0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0]])
    assert torch.allclose(row_entropy_bits(rows), torch.tensor([2.0, 0.0, 1.0]))


def test_entropy_matches_numpy_oracle(tiny: ModelHandle) -> None:
    tokens = tiny.tokenize(TEXT)
    p = raw_patterns(tiny, tokens)
    expect = np_entropy(p)  # [layer, head, q]
    probes = probe_attention(tiny, tokens, cfg=ProbeConfig(induction=False))
    np.testing.assert_allclose(probes.entropy_bits, expect, atol=1e-5)
    ent, used = entropy_bits(tiny, tokens, backend="eager")
    assert used == "eager"
    np.testing.assert_allclose(ent.numpy(), expect, atol=1e-5)
    n = tokens.shape[1]
    cap = np.log2(np.arange(1, n + 1))
    norm = np.where(cap > 0, expect / np.where(cap > 0, cap, 1), 0.0)
    np.testing.assert_allclose(probes.normalised_entropy, norm, atol=1e-5)
    assert probes.normalised_entropy[..., 0].max() == 0.0
    means = probes.head_means()
    np.testing.assert_allclose(means["entropy_bits"], expect.mean(-1), atol=1e-5)


def test_pointer_previous_distance_match_loops(tiny_llama: ModelHandle) -> None:
    tokens = tiny_llama.tokenize(TEXT)
    p = raw_patterns(tiny_llama, tokens)
    n = tokens.shape[1]
    probes = probe_attention(tiny_llama, tokens, cfg=ProbeConfig(induction=False))
    mass = np.zeros(p.shape[:3])
    hit = np.zeros(p.shape[:3])
    dist = np.zeros(p.shape[:3])
    for i in range(n):
        targets = {i, i - 1} if i > 0 else {0}
        mass[..., i] = sum(p[..., i, j] for j in targets)
        hit[..., i] = np.isin(p[..., i, :].argmax(-1), list(targets))
        dist[..., i] = sum(p[..., i, j] * (i - j) for j in range(i + 1))
    np.testing.assert_allclose(probes.target_mass, mass, atol=1e-5)
    np.testing.assert_array_equal(probes.target_hit, hit)
    np.testing.assert_allclose(probes.distance, dist, atol=1e-4)
    prev = np.array([[[p[layer, h, i, i - 1] for i in range(1, n)] for h in range(4)] for layer in range(2)])
    np.testing.assert_allclose(probes.head_means()["previous_token_score"], prev.mean(-1), atol=1e-5)


def test_induction_score_oracle(tiny: ModelHandle) -> None:
    length = 12
    tokens = random_repeated_tokens(tiny, length, seed=3)
    assert tokens.shape[1] == 2 * length + int(tiny.prepends_bos)
    ids = tokens[0].tolist()
    assert ids[-length:] == ids[-2 * length : -length]
    p = raw_patterns(tiny, tokens)
    start = tokens.shape[1] - length
    expect = np.mean([p[..., q, q - length + 1] for q in range(start, tokens.shape[1])], axis=0)
    np.testing.assert_allclose(induction_scores(tiny, length=length, seed=3), expect, atol=1e-6)
    assert torch.equal(tokens, random_repeated_tokens(tiny, length, seed=3))  # seeded


def test_targets() -> None:
    local = target_mask("local", 4)
    assert local.tolist()[2] == [False, True, True, False]
    assert target_mask("previous", 3).tolist() == [
        [True, False, False],
        [True, False, False],
        [False, True, False],
    ]
    blocks = torch.tensor([0, 0, 1, 1])
    assert target_mask("block", 4, blocks).tolist()[3] == [False, False, True, True]
    with pytest.raises(InputError, match="block ids"):
        target_mask("block", 4)
    with pytest.raises(InputError, match="target must be one of"):
        target_mask("nope", 4)


def test_probe_config_validation() -> None:
    with pytest.raises(InputError, match="target"):
        ProbeConfig(target="everything")
    with pytest.raises(InputError, match="induction_len"):
        ProbeConfig(induction_len=1)
    with pytest.raises(InputError, match="induction_len must be an integer"):
        ProbeConfig(induction_len=8.5)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="seed must be a number"):
        ProbeConfig(seed="abc")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="induction must be true or false"):
        ProbeConfig(induction="yes")  # type: ignore[arg-type]
    assert ProbeConfig(induction_len="16").induction_len == 16  # type: ignore[arg-type]


def test_head_patterns_and_limits(tiny_llama: ModelHandle) -> None:
    tokens = tiny_llama.tokenize(TEXT)
    got = head_patterns(tiny_llama, tokens, [(1, 2), (0, 1)])
    assert list(got) == [(1, 2), (0, 1)]  # the order asked for
    raw = raw_patterns(tiny_llama, tokens)
    np.testing.assert_allclose(got[(1, 2)], raw[1, 2], atol=1e-7)
    np.testing.assert_allclose(got[(0, 1)], raw[0, 1], atol=1e-7)
    with pytest.raises(InputError, match="layer must be in"):
        head_patterns(tiny_llama, tokens, [(2, 0)])
    with pytest.raises(InputError, match="head must be in"):
        head_patterns(tiny_llama, tokens, [(0, -1)])
    with pytest.raises(InputError, match="at most 256 tokens"):
        head_patterns(tiny_llama, tiny_llama.tokenize("x" * 300), [(0, 0)])
    with pytest.raises(InputError, match="1 to 16 heads"):
        head_patterns(tiny_llama, tokens, [])


def test_head_patterns_under_a_dial_match_the_dialed_scores(tiny_llama: ModelHandle) -> None:
    """Oracle: the dial subtracts s·|i − j| from head (1, 2)'s scores; its pattern is their softmax, and a head the
    dial leaves alone reads as without it."""
    tokens = tiny_llama.tokenize(TEXT)
    dial = LocalityDial(lam=1.0, heads="1.2", strength=0.5)
    got = head_patterns(tiny_llama, tokens, [(1, 2), (1, 1)], dial=dial)
    _, cache = tiny_llama.run_with_cache(tokens, [hooks.scores(1)])
    n = tokens.shape[1]
    i = torch.arange(n)
    want = torch.softmax(cache[hooks.scores(1)][0, 2].double() - 0.5 * (i[:, None] - i[None, :]).abs(), -1)
    np.testing.assert_allclose(got[(1, 2)], want.numpy(), atol=1e-5)
    np.testing.assert_allclose(got[(1, 1)], raw_patterns(tiny_llama, tokens)[1, 1], atol=1e-7)


def test_model_induction_scores_are_computed_once_per_model(tiny_llama: ModelHandle) -> None:
    first = model_induction_scores(tiny_llama)
    np.testing.assert_array_equal(first, induction_scores(tiny_llama, length=32, seed=0))
    assert model_induction_scores(tiny_llama) is first and not first.flags.writeable


def test_backend_dispatch_and_limits(tiny_llama: ModelHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    assert backends_mod.resolve_backend("auto", 513) == "fused"
    assert backends_mod.resolve_backend("auto", 512) == "eager"
    with pytest.raises(InputError, match="backend must be one of"):
        backends_mod.resolve_backend("magic", 10)
    _, used = entropy_bits(tiny_llama, tiny_llama.tokenize("y" * 20), backend="auto")
    assert used == "eager"  # short texts stay on the eager path
    assert backends_mod.token_limit(tiny_llama, "eager") == tiny_llama.max_tokens == 512
    assert backends_mod.token_limit(tiny_llama, "fused") == tiny_llama.max_tokens_fused == 512
    monkeypatch.setattr(tiny_llama, "max_tokens", 16)  # an eager limit below the context, as on SmolLM2
    tokens = tiny_llama.tokenize("y" * 20, max_tokens=512)
    with pytest.raises(
        InputError, match=r"eager backend's limit is 16 \(the fused backend takes up to 512\)"
    ):
        entropy_bits(tiny_llama, tokens, backend="eager")
    fused, used = entropy_bits(tiny_llama, tokens, backend="fused")
    assert used == "fused" and fused.shape == (2, 4, 20)
    with pytest.raises(InputError, match="the limit is 512"):
        entropy_bits(tiny_llama, torch.zeros(1, 513, dtype=torch.long), backend="fused")


def test_probe_under_a_dial_matches_raw_patterns(tiny_llama: ModelHandle) -> None:
    """probe_attention(dial=...) against the patterns of a run with the dial's hooks; block target and mode
    share the dial's blocks by default."""
    tokens = tiny_llama.tokenize(TEXT)
    dial = LocalityDial(lam=0.5, mode="block", heads="1.*")
    probes = probe_attention(tiny_llama, tokens, cfg=ProbeConfig(target="block", induction=False), dial=dial)
    p = raw_patterns(tiny_llama, tokens, dial_hooks(tiny_llama, tokens, dial))
    np.testing.assert_allclose(probes.entropy_bits, np_entropy(p), atol=1e-5)
    blocks = block_ids(tiny_llama.str_tokens(tokens), BlockSpec()).numpy()
    same = (blocks[:, None] == blocks[None, :]) & np.tril(np.ones((len(blocks),) * 2, dtype=bool))
    np.testing.assert_allclose(probes.target_mass, (p * same).sum(-1), atol=1e-5)
    plain = probe_attention(tiny_llama, tokens, cfg=ProbeConfig(target="block", induction=False))
    np.testing.assert_array_equal(probes.entropy_bits[0], plain.entropy_bits[0])  # layer 0 not selected
    assert (
        probes.head_means()["pointer_fidelity"][1].mean() > plain.head_means()["pointer_fidelity"][1].mean()
    )


def test_entropy_report_ids_are_the_ids_run(tiny: ModelHandle) -> None:
    report = entropy_report(tiny, TEXT, backend="eager")
    assert report["token_ids"] == tiny.tokenize(TEXT)[0].tolist()
    assert report["n_tokens"] == len(report["token_ids"]) == len(report["token_entropy_bits"])
    assert len(report["entropy_bits"]) == tiny.facts.n_layers
    assert all(len(row) == tiny.facts.n_heads for row in report["entropy_bits"])
    assert report["mean_entropy_bits"] == pytest.approx(np.mean(report["entropy_bits"]), abs=1e-5)
    with pytest.raises(InputError, match="empty"):
        entropy_report(tiny, "   ")


def test_fused_backend_agrees_with_eager(tiny: ModelHandle) -> None:
    tokens = tiny.tokenize(TEXT)
    fused, used = entropy_bits(tiny, tokens, backend="fused")
    assert used == "fused"
    np.testing.assert_allclose(
        fused.numpy(), entropy_bits(tiny, tokens, backend="eager")[0].numpy(), atol=1e-4
    )


def test_in_hook_reduction_equals_batched(tiny_llama: ModelHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    """Long texts are reduced layer by layer inside the hooks; short ones all at once: same numbers."""
    from headscope.probes import probe as probe_mod

    tokens = tiny_llama.tokenize(TEXT)
    batched = probe_attention(tiny_llama, tokens, cfg=ProbeConfig(induction=False))
    monkeypatch.setattr(probe_mod, "BATCH_ELEMENTS", 0)
    per_layer = probe_attention(tiny_llama, tokens, cfg=ProbeConfig(induction=False))
    for name in ["entropy_bits", "target_mass", "target_hit", "prev_token", "distance"]:
        np.testing.assert_allclose(getattr(per_layer, name), getattr(batched, name), atol=1e-6)
