"""The Triton kernel on CUDA against the torch reference: fp32/fp16/bf16, d_head 64/128, GQA, strides, long N.

Imports only torch and headscope.kernels (the GPU machine has no TransformerLens), so it runs with
`pytest --noconftest tests/gpu`; the skipif below covers that case, the root conftest covers the normal one.
"""

from __future__ import annotations

import pytest
import torch

from headscope.kernels import (
    LocalityBias,
    attention_chunked,
    attention_reference,
    fused_attention,
    pick_backend,
)

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]
TOL = {torch.float32: (1e-4, 1e-4), torch.float16: (3e-3, 2e-3), torch.bfloat16: (2e-2, 1e-2)}  # out, entropy


def qkv(b, h, h_kv, n, d, dtype, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    return tuple(torch.randn(b, hh, n, d, device="cuda", generator=g).to(dtype) for hh in (h, h_kv, h_kv))


def check(got, ref, dtype) -> None:
    out_tol, ent_tol = TOL[dtype]
    assert torch.isfinite(got.entropy).all() and torch.isfinite(got.out.float()).all()
    torch.testing.assert_close(got.out.float(), ref.out.float(), atol=out_tol, rtol=out_tol)
    torch.testing.assert_close(got.lse, ref.lse, atol=1e-3, rtol=0)
    torch.testing.assert_close(got.entropy, ref.entropy, atol=ent_tol, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("d", [64, 128])
@pytest.mark.parametrize("n", [77, 1000])
def test_triton_matches_reference(dtype: torch.dtype, d: int, n: int) -> None:
    q, k, v = qkv(2, 9, 3, n, d, dtype)
    assert pick_backend(q) == "triton"
    check(fused_attention(q, k, v), attention_reference(q, k, v), dtype)


@pytest.mark.parametrize("bias", [LocalityBias("distance", 0.5), LocalityBias("block", 2.0, 50)], ids=str)
def test_triton_locality_bias(bias: LocalityBias) -> None:
    q, k, v = qkv(1, 9, 3, 333, 64, torch.float16)
    lam = torch.linspace(0, 1, 9, device="cuda")
    got = fused_attention(q, k, v, bias=bias, lam=lam)
    check(got, attention_reference(q, k, v, bias=bias, lam=lam), torch.float16)
    again = fused_attention(q, k, v, bias=bias, lam=lam * 2)  # λ is data: no recompile, new result
    assert not torch.allclose(again.entropy, got.entropy)


def test_triton_non_contiguous_inputs() -> None:
    qkv_packed = torch.randn(1, 300, 3, 4, 64, device="cuda", dtype=torch.float16)  # [b, pos, qkv, head, d]
    q, k, v = (qkv_packed[:, :, i].transpose(1, 2) for i in range(3))
    check(fused_attention(q, k, v), attention_reference(q, k, v), torch.float16)


def test_triton_long_sequence_matches_chunked() -> None:
    q, k, v = qkv(1, 9, 3, 8191, 64, torch.bfloat16, seed=3)
    got, ref = fused_attention(q, k, v), attention_chunked(q, k, v, chunk=1024)
    torch.testing.assert_close(got.entropy, ref.entropy, atol=1e-2, rtol=0)
    torch.testing.assert_close(got.lse, ref.lse, atol=1e-3, rtol=0)
