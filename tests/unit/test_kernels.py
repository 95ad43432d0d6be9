"""Reference, chunked CPU path and dispatch of headscope.kernels against independent recomputations."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from headscope.errors import InputError
from headscope.kernels import (
    LocalityBias,
    attention_chunked,
    attention_reference,
    fused_attention,
    naive_entropy_nats,
    pick_backend,
)

BIASES = [LocalityBias(), LocalityBias("distance", 0.5), LocalityBias("block", 2.0, block_size=5)]


def qkv(b=2, h=6, h_kv=3, n=37, d=24, dtype=torch.float32, seed=0, amp=1.0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(b, hh, n, d, generator=g) for hh in (h, h_kv, h_kv))
    return (q * amp).to(dtype), (k * amp).to(dtype), v.to(dtype)


LAM = torch.tensor([0.0, 0.1, 0.2, 0.3, 0.5, 2.0])


@pytest.mark.parametrize("bias", BIASES, ids=lambda b: b.mode)
def test_reference_matches_naive_softmax(bias: LocalityBias) -> None:
    q, k, v = qkv()
    ref = attention_reference(q, k, v, bias=bias, lam=LAM)
    torch.testing.assert_close(ref.entropy, naive_entropy_nats(q, k, bias=bias, lam=LAM), atol=2e-6, rtol=0)
    # output and LSE from plain softmax over the repeated (GQA) keys
    kk, vv = (x.repeat_interleave(2, dim=1) for x in (k, v))
    n = q.shape[2]
    s = q @ kk.transpose(-1, -2) / 24**0.5
    pos = torch.arange(n)
    if bias.mode == "distance":
        s = s - (LAM * 0.5)[None, :, None, None] * (pos[:, None] - pos[None, :]).abs()
    if bias.mode == "block":
        s = s - (LAM * 2.0)[None, :, None, None] * (pos[:, None] // 5 != pos[None, :] // 5)
    s = s.masked_fill(pos[None, :] > pos[:, None], float("-inf"))
    torch.testing.assert_close(ref.out, torch.softmax(s, -1) @ vv, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ref.lse, torch.logsumexp(s, -1), atol=1e-5, rtol=1e-5)


def test_entropy_bounds_and_first_query() -> None:
    q, k, v = qkv(b=1, h=2, h_kv=2, n=20)
    ent = attention_reference(q, k, v).entropy
    assert torch.all(ent[..., 0].abs() < 1e-6)  # the first query sees one key
    ceiling = torch.log(torch.arange(1, 21, dtype=torch.float32))
    assert torch.all(ent >= -1e-6) and torch.all(ent <= ceiling + 1e-5)


def test_uniform_attention_has_log_i_entropy() -> None:
    q = torch.zeros(1, 1, 17, 8)
    k, v = torch.randn(1, 1, 17, 8), torch.randn(1, 1, 17, 8)
    ent = attention_chunked(q, k, v, chunk=5).entropy[0, 0]
    torch.testing.assert_close(ent, torch.log(torch.arange(1.0, 18.0)), atol=1e-6, rtol=0)


@pytest.mark.parametrize("bias", BIASES, ids=lambda b: b.mode)
@pytest.mark.parametrize("chunk", [1, 7, 16, None])
def test_chunked_matches_reference(bias: LocalityBias, chunk: int | None) -> None:
    q, k, v = qkv()
    ref = attention_reference(q, k, v, bias=bias, lam=LAM)
    got = attention_chunked(q, k, v, bias=bias, lam=LAM, chunk=chunk)
    torch.testing.assert_close(got.out, ref.out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.lse, ref.lse, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.entropy, ref.entropy, atol=1e-5, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_chunked_low_precision_inputs_keep_fp32_statistics(dtype: torch.dtype) -> None:
    q, k, v = qkv(dtype=dtype)
    got = attention_chunked(q, k, v, chunk=8)
    ref = attention_reference(q, k, v)  # same rounded inputs, fp32 math
    assert got.out.dtype == dtype and got.entropy.dtype == torch.float32
    torch.testing.assert_close(got.entropy, ref.entropy, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.out.float(), ref.out.float(), atol=2e-2, rtol=2e-2)


def test_large_scores_stay_finite_and_exact() -> None:
    # scores of ~1e3: E[s] and LSE are large and nearly equal; the centred form must not cancel
    q, k, v = qkv(b=1, h=2, h_kv=1, n=29, d=16, amp=12.0)
    got = attention_chunked(q, k, v, chunk=4)
    assert torch.isfinite(got.entropy).all()
    torch.testing.assert_close(got.entropy, naive_entropy_nats(q, k), atol=1e-4, rtol=0)


def test_dispatch_on_cpu_uses_chunked_and_validates() -> None:
    q, k, v = qkv(n=11)
    assert pick_backend(q) == "chunked"
    auto = fused_attention(q, k, v)
    torch.testing.assert_close(auto.entropy, attention_reference(q, k, v).entropy, atol=1e-5, rtol=0)
    torch.testing.assert_close(auto.entropy_bits, auto.entropy / torch.log(torch.tensor(2.0)))
    with pytest.raises(InputError, match="backend"):
        fused_attention(q, k, v, backend="flash")
    with pytest.raises(InputError, match="CUDA"):
        fused_attention(q, k, v, backend="triton")
    with pytest.raises(InputError, match="tensor"):
        fused_attention(q, k, v, bias=BIASES[1], lam=0.5)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="per head"):
        fused_attention(q, k, v, bias=BIASES[1], lam=torch.ones(4))
    with pytest.raises(InputError, match="multiple"):
        fused_attention(q, k.repeat(1, 2, 1, 1)[:, :4], v.repeat(1, 2, 1, 1)[:, :4])
    with pytest.raises(InputError, match="chunk"):
        attention_chunked(q, k, v, chunk=0)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"mode": "gauss"}, "mode"), ({"strength": -1.0}, "strength"), ({"block_size": 0}, "block_size")],
)
def test_locality_bias_validates(kwargs: dict, field: str) -> None:
    with pytest.raises(InputError, match=field):
        LocalityBias(**kwargs)


def test_import_pulls_in_no_model_stack() -> None:
    code = (
        "import sys, headscope.kernels; "
        "bad = [m for m in ('transformer_lens', 'transformers', 'triton') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
