"""Reference, chunked CPU path and dispatch of headscope.kernels against independent recomputations."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from headscope.errors import InputError
from headscope.kernels import (
    KernelBias,
    attention_chunked,
    attention_reference,
    bias_scores,
    fused_attention,
    naive_entropy_nats,
    pick_backend,
)
from headscope.kernels.bias import UNBOUNDED
from headscope.kernels.chunked import default_chunk

LAM = torch.tensor([0.0, 0.1, 0.2, 0.3, 0.5, 2.0])
N = 37
SENTENCES = torch.tensor([0] * 5 + [1] * 11 + [2] * 2 + [3] * 19)  # uneven blocks, not ⌊i/B⌋
WIDTHS = torch.tensor([1, 2, 7, 36, 37, UNBOUNDED])  # per head; 37 and UNBOUNDED keep every causal key
BIASES = [
    KernelBias(),
    KernelBias("distance", coef=LAM * 0.5),
    KernelBias("block", coef=LAM * 2.0, block_ids=SENTENCES),
    KernelBias("block", coef=LAM * 2.0, block_ids=torch.arange(N) // 5),  # fixed windows: one kind of block
    KernelBias("window", width=WIDTHS),
]
IDS = ["none", "distance", "sentences", "fixed", "window"]


def qkv(b=2, h=6, h_kv=3, n=N, d=24, dtype=torch.float32, seed=0, amp=1.0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(b, hh, n, d, generator=g) for hh in (h, h_kv, h_kv))
    return (q * amp).to(dtype), (k * amp).to(dtype), v.to(dtype)


def loop_bias(mode: str, n: int) -> torch.Tensor:
    """The documented bias [head, i, j] written out entry by entry (−∞ where a key is masked)."""
    out = torch.zeros(6, n, n)
    for h in range(6):
        for i in range(n):
            for j in range(n):
                if j > i or (mode == "window" and i - j >= int(WIDTHS[h])):
                    out[h, i, j] = float("-inf")
                elif mode == "distance":
                    out[h, i, j] = -0.5 * float(LAM[h]) * (i - j)
                elif mode == "sentences":
                    out[h, i, j] = -2.0 * float(LAM[h]) * float(SENTENCES[i] != SENTENCES[j])
                elif mode == "fixed":
                    out[h, i, j] = -2.0 * float(LAM[h]) * float(i // 5 != j // 5)
    return out


@pytest.mark.parametrize(("bias", "name"), list(zip(BIASES, IDS, strict=True)), ids=IDS)
def test_reference_matches_naive_softmax(bias: KernelBias, name: str) -> None:
    q, k, v = qkv()
    ref = attention_reference(q, k, v, bias=bias)
    torch.testing.assert_close(ref.entropy, naive_entropy_nats(q, k, bias=bias), atol=2e-6, rtol=0)
    # output and LSE from plain softmax over the repeated (GQA) keys, with the bias written out by loops
    kk, vv = (x.repeat_interleave(2, dim=1) for x in (k, v))
    s = q @ kk.transpose(-1, -2) / 24**0.5 + loop_bias(name, N)[None]
    torch.testing.assert_close(ref.out, torch.softmax(s, -1) @ vv, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ref.lse, torch.logsumexp(s, -1), atol=1e-5, rtol=1e-5)
    p = torch.softmax(s, -1)
    torch.testing.assert_close(ref.entropy, -torch.special.xlogy(p, p).sum(-1), atol=1e-5, rtol=0)


@pytest.mark.parametrize(("bias", "name"), list(zip(BIASES, IDS, strict=True)), ids=IDS)
def test_bias_scores_applies_the_same_bias_and_leaves_zero_heads_alone(bias: KernelBias, name: str) -> None:
    """The eager dial's form (`bias_scores` on hook scores) against the loops, for a q < k slice too."""
    scores = torch.randn(2, 6, N, N).masked_fill(
        torch.ones(N, N).triu(1).bool(), torch.finfo(torch.float32).min
    )
    pos = torch.arange(N)
    got = bias_scores(scores, bias, pos, pos)
    want = torch.where(
        loop_bias(name, N)[None] == float("-inf"), float("-inf"), scores + loop_bias(name, N)[None]
    )
    causal = torch.ones(N, N).tril().bool()
    torch.testing.assert_close(got[..., causal], want[..., causal], atol=1e-5, rtol=0)
    untouched = [h for h in range(6) if (name in ("distance", "sentences", "fixed") and LAM[h] == 0)
                 or (name == "window" and WIDTHS[h] >= N) or name == "none"]  # fmt: skip
    assert untouched and all(torch.equal(got[:, h], scores[:, h]) for h in untouched)
    tail = bias_scores(scores[..., 30:, :], bias, pos[30:], pos)  # the last 7 queries (decoding: q < k)
    torch.testing.assert_close(tail, got[..., 30:, :], atol=0, rtol=0)


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


@pytest.mark.parametrize("bias", BIASES, ids=IDS)
@pytest.mark.parametrize("chunk", [1, 7, 16, None])
def test_chunked_matches_reference(bias: KernelBias, chunk: int | None) -> None:
    q, k, v = qkv()
    ref = attention_reference(q, k, v, bias=bias)
    got = attention_chunked(q, k, v, bias=bias, chunk=chunk)
    torch.testing.assert_close(got.out, ref.out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.lse, ref.lse, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.entropy, ref.entropy, atol=1e-5, rtol=0)


def test_the_default_chunk_keeps_one_score_temporary_within_the_device_budget() -> None:
    # one [batch, head, C, N] fp32 temporary: near the cache on CPU (16 MiB), 128 MiB on CUDA; at least 16 rows
    for device, budget in (("cpu", 16 << 20), ("cuda", 128 << 20)):
        for b, h, n in ((1, 9, 8192), (2, 9, 2048), (1, 9, 100), (4, 32, 32768)):
            c = default_chunk(b, h, n, device)
            assert 16 <= c <= max(n, 16) and (c == min(n, 16) or c == n or 4 * b * h * c * n <= budget)
            assert c == n or c == 16 or 4 * b * h * (c + 1) * n > budget  # the most rows that fit
    assert (default_chunk(1, 9, 8192, "cpu"), default_chunk(1, 9, 8192, "cuda")) == (56, 455)


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
        KernelBias("distance", coef=0.5)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="per head"):
        fused_attention(q, k, v, bias=KernelBias("distance", coef=torch.ones(4)))
    with pytest.raises(InputError, match="block_ids cover 5 positions"):
        fused_attention(
            q, k, v, bias=KernelBias("block", coef=torch.ones(6), block_ids=torch.zeros(5).long())
        )
    with pytest.raises(InputError, match="multiple"):
        fused_attention(q, k.repeat(1, 2, 1, 1)[:, :4], v.repeat(1, 2, 1, 1)[:, :4])
    with pytest.raises(InputError, match="chunk"):
        attention_chunked(q, k, v, chunk=0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "gauss"}, "mode must be one of"),
        ({"mode": "distance"}, "needs coef"),
        ({"mode": "window"}, "needs width"),
        ({"mode": "block", "coef": torch.ones(1)}, "needs block_ids"),
        ({"mode": "distance", "coef": torch.tensor(-1.0)}, "coef must be finite and ≥ 0"),
        ({"mode": "distance", "coef": torch.tensor(float("nan"))}, "coef must be finite"),
        ({"mode": "window", "width": torch.tensor([0, 3])}, "width must be finite and ≥ 1"),
        ({"mode": "distance", "coef": torch.ones(2, 2)}, "0-d or one value per head"),
        ({"mode": "block", "coef": torch.ones(1), "block_ids": torch.ones(4)}, "one integer per position"),
    ],
)
def test_kernel_bias_validates(kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        KernelBias(**kwargs)


def test_window_skips_keys_left_of_the_band_exactly() -> None:
    """A narrow window lets the chunked path drop whole key ranges; the result must not move."""
    q, k, v = qkv(b=1, n=301, d=16, seed=4)
    bias = KernelBias("window", width=torch.tensor([3, 3, 9, 9, 40, 40]))
    ref = attention_reference(q, k, v, bias=bias)
    got = attention_chunked(q, k, v, bias=bias, chunk=32)
    torch.testing.assert_close(got.entropy, ref.entropy, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.out, ref.out, atol=1e-5, rtol=1e-5)
    ceiling = torch.log(torch.tensor([3.0, 3, 9, 9, 40, 40]))
    assert (ref.entropy[0, :, 60:] <= ceiling[:, None] + 1e-5).all()  # at most w keys: H ≤ ln w


def test_import_pulls_in_no_model_stack() -> None:
    code = (
        "import sys, headscope.kernels; "
        "bad = [m for m in ('transformer_lens', 'transformers', 'triton') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
