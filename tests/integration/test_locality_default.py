"""Probes and the locality dial on the real default model (SmolLM2-135M)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from headscope.localist import LocalityDial, SweepConfig, dial_hooks, eval_tokens, sweep_locality
from headscope.models import ModelHandle
from headscope.probes.report import entropy_report

pytestmark = pytest.mark.default_model
TEXT = "The capital of France is Paris. It lies on the Seine, and it is known for its museums."


def test_entropy_matches_raw_patterns(default_model: ModelHandle) -> None:
    report = entropy_report(default_model, TEXT, backend="eager")
    tokens = default_model.tokenize(TEXT)
    assert report["token_ids"] == tokens[0].tolist() and report["token_ids"][0] != 1  # SmolLM2 adds no BOS
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(30)]
    _, cache = default_model.run_with_cache(tokens, names)
    p = np.stack([cache[n][0].double().numpy() for n in names])
    ent = -np.where(p > 0, p * np.log2(np.where(p > 0, p, 1)), 0).sum(-1)
    np.testing.assert_allclose(report["entropy_bits"], ent.mean(-1), atol=1e-5)
    np.testing.assert_allclose(report["token_entropy_bits"], ent.mean((0, 1)), atol=1e-5)


def test_distance_dial_focuses_attention(default_model: ModelHandle) -> None:
    tokens, _ = eval_tokens(default_model, max_tokens=64)
    res = sweep_locality(default_model, tokens, SweepConfig((0.0, 0.25, 0.5, 0.75, 1.0), LocalityDial()))
    ent = [r.mean_entropy_bits for r in res.rows]
    fid = [r.pointer_fidelity for r in res.rows]
    assert all(a > b for a, b in itertools.pairwise(ent)), ent
    assert all(a < b for a, b in itertools.pairwise(fid)), fid
    assert res.rows[0].kl == 0.0 and res.rows[-1].kl > 0.1
    assert res.rows[0].perplexity < 100  # the undialed model predicts Wikipedia text sensibly


def test_progressive_leaves_layer_zero_untouched(default_model: ModelHandle) -> None:
    tokens = default_model.tokenize(TEXT)
    dial = LocalityDial(lam=1.0, schedule="progressive", beta=3.0)
    names = ["blocks.0.attn.hook_pattern", "blocks.29.attn.hook_pattern"]
    _, base = default_model.run_with_cache(tokens, names)
    _, dialed = default_model.run_with_cache(tokens, names, fwd_hooks=dial_hooks(default_model, tokens, dial))
    assert torch.equal(base[names[0]], dialed[names[0]])
    assert not torch.allclose(base[names[1]], dialed[names[1]], atol=1e-3)
