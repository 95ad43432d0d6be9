"""The Triton kernel on CUDA against the torch reference: fp32/fp16/bf16, d_head 64/128, GQA, strides, long N.

Imports only torch and headscope.kernels (the GPU machine has no TransformerLens), so it runs with
`pytest --noconftest tests/gpu`; the skipif below covers that case, the root conftest covers the normal one.
"""

from __future__ import annotations

import pytest
import torch

from headscope.kernels import (
    KernelBias,
    attention_chunked,
    attention_reference,
    fused_attention,
    pick_backend,
)
from headscope.kernels.bias import UNBOUNDED

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


def biases(n: int) -> dict[str, KernelBias]:
    lam = torch.linspace(0, 1, 9, device="cuda")
    g = torch.Generator(device="cuda").manual_seed(1)
    sentences = (torch.rand(n, device="cuda", generator=g) < 0.05).long().cumsum(0)  # uneven blocks
    width = torch.tensor([1, 2, 7, 64, 65, 300, 333, 4000, UNBOUNDED], device="cuda")
    return {
        "distance": KernelBias("distance", coef=lam * 0.5),
        "fixed-blocks": KernelBias("block", coef=lam * 2.0, block_ids=torch.arange(n, device="cuda") // 50),
        "sentence-blocks": KernelBias("block", coef=lam * 2.0, block_ids=sentences),
        "window": KernelBias("window", width=width),
    }


@pytest.mark.parametrize("name", ["distance", "fixed-blocks", "sentence-blocks", "window"])
def test_triton_locality_bias(name: str) -> None:
    q, k, v = qkv(1, 9, 3, 333, 64, torch.float16)
    bias = biases(333)[name]
    got = fused_attention(q, k, v, bias=bias)
    check(got, attention_reference(q, k, v, bias=bias), torch.float16)
    if bias.coef is not None:  # the coefficient is data: no recompile, a new result
        again = fused_attention(
            q, k, v, bias=KernelBias(bias.mode, coef=bias.coef * 2, block_ids=bias.block_ids)
        )
        assert not torch.allclose(again.entropy, got.entropy)


def test_triton_window_long_sequence_matches_chunked() -> None:
    q, k, v = qkv(1, 9, 3, 4099, 64, torch.bfloat16, seed=5)
    bias = biases(4099)["window"]
    got, ref = fused_attention(q, k, v, bias=bias), attention_chunked(q, k, v, bias=bias, chunk=1024)
    torch.testing.assert_close(got.entropy, ref.entropy, atol=1e-2, rtol=0)


def test_triton_non_contiguous_inputs() -> None:
    qkv_packed = torch.randn(1, 300, 3, 4, 64, device="cuda", dtype=torch.float16)  # [b, pos, qkv, head, d]
    q, k, v = (qkv_packed[:, :, i].transpose(1, 2) for i in range(3))
    check(fused_attention(q, k, v), attention_reference(q, k, v), torch.float16)


def test_triton_long_sequence_matches_chunked() -> None:
    q, k, v = qkv(1, 9, 3, 8191, 64, torch.bfloat16, seed=3)
    got, ref = fused_attention(q, k, v), attention_chunked(q, k, v, chunk=1024)
    torch.testing.assert_close(got.entropy, ref.entropy, atol=1e-2, rtol=0)
    torch.testing.assert_close(got.lse, ref.lse, atol=1e-3, rtol=0)
