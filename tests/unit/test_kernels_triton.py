"""The Triton kernel against the torch reference under TRITON_INTERPRET=1 (numpy simulation on CPU).

`triton.jit` chooses the interpreter when a kernel is decorated, so the checks run in a child process with the
variable set before anything imports triton; nothing leaks into this test session. fp32 and fp16 only: the
interpreter computes bf16 `tl.dot` wrongly (bf16 is tested on GPU, tests/gpu).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# (batch, heads, kv_heads, pos, d_head, dtype, bias mode): non-power-of-2 positions; d_head 24 pads to 32.
# Block ids are uneven "sentences" (not ⌊i/B⌋); window widths differ per head, one head unbounded (unselected).
CASES = [
    (2, 4, 2, 37, 24, "float32", "distance"),
    (1, 3, 1, 45, 64, "float16", "block"),
    (1, 4, 2, 41, 32, "float32", "block"),
    (1, 4, 2, 53, 16, "float32", "window"),
    (1, 3, 3, 38, 32, "float16", "window"),
    (1, 2, 2, 33, 32, "float16", "none"),
    (1, 2, 1, 19, 16, "float32", "none"),
]
TOL = {"float32": (2e-5, 2e-5), "float16": (2e-3, 2e-3)}  # (output, entropy) absolute


def _child() -> None:
    import torch

    from headscope.kernels import KernelBias, attention_reference
    from headscope.kernels.bias import UNBOUNDED
    from headscope.kernels.triton_attn import attention_triton

    results = []
    for b, h, h_kv, n, d, dt, mode in CASES:
        g = torch.Generator().manual_seed(n)
        q, k, v = (torch.randn(b, hh, n, d, generator=g).to(getattr(torch, dt)) for hh in (h, h_kv, h_kv))
        coef = torch.linspace(0.0, 1.0, h) * 0.5
        blocks = (torch.rand(n, generator=g) < 0.15).long().cumsum(0)  # uneven sentence-like blocks
        width = torch.tensor([1, 5, 20, UNBOUNDED][:h])
        bias = {
            "none": KernelBias(),
            "distance": KernelBias("distance", coef=coef),
            "block": KernelBias("block", coef=coef * 8, block_ids=blocks),
            "window": KernelBias("window", width=width),
        }[mode]
        ref = attention_reference(q, k, v, bias=bias)
        got = attention_triton(q, k, v, bias=bias)
        results.append({
            "out": (got.out.float() - ref.out.float()).abs().max().item(),
            "lse": (got.lse - ref.lse).abs().max().item(),
            "entropy": (got.entropy - ref.entropy).abs().max().item(),
            "finite": bool(torch.isfinite(got.entropy).all() and torch.isfinite(got.out).all()),
        })  # fmt: skip
    print(json.dumps(results))


@pytest.fixture(scope="module")
def interpreted() -> list[dict]:
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, __file__], env=env, cwd=root, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", range(len(CASES)), ids=lambda i: "-".join(map(str, CASES[i])))
def test_triton_interpreter_matches_reference(interpreted: list[dict], case: int) -> None:
    res, dtype = interpreted[case], CASES[case][5]
    out_tol, ent_tol = TOL[dtype]
    assert res["finite"]
    assert res["out"] < out_tol, res
    assert res["lse"] < 1e-4 and res["entropy"] < ent_tol, res


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    _child()
