"""Probes and the locality dial on the real default model (SmolLM2-135M): eager and fused, a single dialed head,
the fused path at the model's full context (8,192 tokens)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from headscope.attention import LocalityDial, dial_hooks
from headscope.cli import main
from headscope.data import excerpt_text
from headscope.kernels import fused_entropy_bits
from headscope.models import ModelHandle
from headscope.probes import SweepConfig, entropy_bits, eval_tokens, sweep_locality
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


def test_one_dialed_head_leaves_every_other_head_exact(default_model: ModelHandle) -> None:
    """`headscope entropy --lambda 1 --mode distance --heads 9.4`: every head before layer 9 and the other heads of
    layer 9 keep their entropy exactly; head 9.4 concentrates."""
    tokens = default_model.tokenize(TEXT)
    plain, _ = entropy_bits(default_model, tokens, backend="eager")
    dialed, _ = entropy_bits(default_model, tokens, backend="eager", dial=LocalityDial(lam=1.0, heads="9.4"))
    assert torch.equal(dialed[:9], plain[:9])
    others = [h for h in range(9) if h != 4]
    assert torch.equal(dialed[9, others], plain[9, others])
    assert dialed[9, 4].mean() < plain[9, 4].mean() - 0.3
    fused, _ = entropy_bits(default_model, tokens, backend="fused", dial=LocalityDial(lam=1.0, heads="9.4"))
    assert (fused - dialed).abs().max() <= 1e-4  # the same dial through the kernels' bias


@pytest.mark.parametrize("mode", ["distance", "block", "window"])
def test_fused_dial_equals_eager_dial(default_model: ModelHandle, mode: str) -> None:
    tokens = default_model.tokenize(TEXT)
    dial = LocalityDial(lam=0.6, mode=mode, schedule="progressive", beta=3.0, heads="*.0, 20.*")
    eager, _ = entropy_bits(default_model, tokens, backend="eager", dial=dial)
    fused = fused_entropy_bits(default_model, tokens, dial=dial, chunk=17)
    assert (fused - eager).abs().max() <= 1e-4


def long_ids(handle: ModelHandle, n: int) -> torch.Tensor:
    ids: list[int] = []
    while len(ids) < n:  # the excerpt is ~5k tokens: repeat it
        ids += handle.tokenizer(excerpt_text(10**6) + "\n\n", add_special_tokens=False).input_ids
    return torch.tensor([ids[:n]])


@pytest.mark.slow
@pytest.mark.timeout(
    2400
)  # 56 s on an idle 2-core AMD EPYC (99 s before 469222a); 12 min seen on a loaded one
def test_fused_entropy_at_the_full_context(default_model: ModelHandle) -> None:
    """8,192 tokens (SmolLM2's context; the eager limit is 2,048) on CPU. Oracle: attention is causal, so the
    first 200 positions' entropy equals an eager run over those 200 tokens alone."""
    f = default_model
    assert (f.max_tokens, f.max_tokens_fused) == (2048, 8192)
    tokens = long_ids(f, 8192)
    ent = fused_entropy_bits(f, tokens)
    assert ent.shape == (30, 9, 8192) and torch.isfinite(ent).all()
    prefix, _ = entropy_bits(f, tokens[:, :200], backend="eager")
    assert (ent[..., :200] - prefix).abs().max() <= 1e-4
    assert ent[..., -1].mean() > ent[..., 100].mean()  # later queries see more keys
    with pytest.raises(Exception, match="the fused path's limit is 8192"):
        fused_entropy_bits(f, long_ids(f, 8193))


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_cli_fused_takes_a_text_longer_than_the_eager_limit(
    default_model: ModelHandle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file over the eager limit (the issue's was 3,901 tokens; 2,100 keep the test short): `--backend fused`
    runs it under a dial; `--backend eager` refuses it with both limits."""
    text = default_model.decode(long_ids(default_model, 2100)[0])
    path = tmp_path / "long.txt"
    path.write_text(text, encoding="utf-8")
    base = ["entropy", "--file", str(path), "--json"]
    assert main([*base, "--backend", "fused", "--lambda", "0.6", "--mode", "distance"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert 2048 < out["n_tokens"] <= 8192 and out["backend"] == "fused" and out["dial"]["lambda"] == 0.6
    assert main([*base, "--backend", "eager"]) == 2
    err = capsys.readouterr().err
    assert "eager backend's limit is 2048 (the fused backend takes up to 8192)" in err
