"""fused_run / fused_entropy_bits on the tiny models against the eager path's hook_pattern entropy."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from headscope.errors import InputError
from headscope.kernels import KernelBias, fused_entropy_bits, fused_run
from headscope.kernels.model import _refuse_unsupported, fused_attention_interface
from headscope.models import ModelHandle

TEXT = "Attention entropy, measured without the attention matrix."


def eager_entropy_bits(handle: ModelHandle, tokens: torch.Tensor, fwd_hooks=()) -> torch.Tensor:
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(handle.facts.n_layers)]
    _, cache = handle.run_with_cache(tokens, names, fwd_hooks=fwd_hooks)
    pats = [cache[n][0].double() for n in names]
    return torch.stack([-(p * torch.log2(p.clamp_min(1e-300))).sum(-1) for p in pats]).float()


@pytest.mark.parametrize("chunk", [None, 9])
def test_fused_matches_eager_entropy_and_logits(tiny: ModelHandle, chunk: int | None) -> None:
    tokens = tiny.tokenize(TEXT)
    eager_logits = tiny.forward(tokens)
    run = fused_run(tiny, tokens, chunk=chunk)
    f = tiny.facts
    assert run.entropy_bits.shape == (f.n_layers, f.n_heads, tokens.shape[1])
    torch.testing.assert_close(run.entropy_bits, eager_entropy_bits(tiny, tokens), atol=1e-4, rtol=0)
    torch.testing.assert_close(run.logits, eager_logits, atol=1e-4, rtol=1e-4)


def test_fused_run_restores_the_model(tiny: ModelHandle) -> None:
    tokens = tiny.tokenize(TEXT)
    before = tiny.forward(tokens)
    impl = tiny.hf_model.config._attn_implementation
    fused_entropy_bits(tiny, tokens[0])
    assert tiny.hf_model.config._attn_implementation == impl
    assert all("forward" not in b.attn.__dict__ for b in tiny.bridge.blocks)
    torch.testing.assert_close(tiny.forward(tokens), before, atol=0, rtol=0)


def test_fused_distance_bias_matches_a_score_hook(tiny_llama: ModelHandle) -> None:
    tokens = tiny_llama.tokenize(TEXT)
    n = tokens.shape[1]
    lam = torch.tensor([0.0, 0.3, 1.0, 2.0])  # one per head
    dist = (torch.arange(n)[:, None] - torch.arange(n)[None, :]).abs().float()

    def subtract(scores: torch.Tensor, hook: object) -> torch.Tensor:
        return scores - (lam * 0.5)[None, :, None, None] * dist

    hooks = [(f"blocks.{layer}.attn.hook_attn_scores", subtract) for layer in range(2)]
    want = eager_entropy_bits(tiny_llama, tokens, fwd_hooks=hooks)
    bias = KernelBias("distance", coef=lam * 0.5)
    got = fused_entropy_bits(tiny_llama, tokens, biases={0: bias, 1: bias})
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    assert got[:, 0].mean() > got[:, 3].mean()  # the strongest dial concentrates attention


def test_fused_per_layer_biases_leave_other_layers_alone(tiny_llama: ModelHandle) -> None:
    """A bias on layer 1 only: layer 0's entropy is the plain run's (layer 0 comes first, nothing upstream moved)."""
    tokens = tiny_llama.tokenize(TEXT)
    plain = fused_entropy_bits(tiny_llama, tokens)
    n = tokens.shape[1]
    width = torch.tensor([1, 3, n, n])
    got = fused_entropy_bits(tiny_llama, tokens, biases={1: KernelBias("window", width=width)})
    assert torch.equal(got[0], plain[0])
    assert torch.equal(got[1, 0], torch.zeros(n))  # a one-key window: every row is certain
    assert (got[1, 1] <= torch.log2(torch.tensor(3.0)) + 1e-5).all()
    with pytest.raises(InputError, match=r"layers 0\.\.1"):
        fused_entropy_bits(tiny_llama, tokens, biases={2: KernelBias("window", width=width)})


def test_fused_refuses_batches_and_unsupported_attention(tiny_gpt2: ModelHandle) -> None:
    tokens = tiny_gpt2.tokenize(TEXT)
    with pytest.raises(InputError, match="one sequence"):
        fused_entropy_bits(tiny_gpt2, tokens.repeat(2, 1))
    with pytest.raises(InputError, match="the fused path's limit is 512"):
        fused_entropy_bits(tiny_gpt2, torch.zeros(1, 513, dtype=torch.long))
    x = torch.zeros(1, 2, 3, 4)
    module = SimpleNamespace(layer_idx=0)
    with pytest.raises(RuntimeError, match="outside"):
        fused_attention_interface(module, x, x, x, None)
    for kwargs in ({"softcap": 50.0}, {"sliding_window": 4096}, {"dropout": 0.1}):
        with pytest.raises(InputError):
            _refuse_unsupported(module, kwargs)
    with pytest.raises(InputError, match="sinks"):
        _refuse_unsupported(SimpleNamespace(sinks=torch.zeros(2)), {})
