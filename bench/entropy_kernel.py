"""Attention + per-query entropy benchmark. Prints one JSON object.

GPU (CUDA): for N in 512…32768 at the default model's attention shapes (9 query heads over 3 KV heads, d_head 64;
also d_head 128), bf16, batch 1, causal: time and peak memory of
  (a) eager attention + entropy from the materialised pattern (skipped where it would not fit),
  (b) SDPA alone (K/V repeated to 9 heads beforehand, so the flash backend applies), and
  (c) the fused Triton kernel returning output, LSE and entropy (also with the distance bias on).
Goal: (c) within 1.3× of (b) at 32k.
CPU: the chunked torch path computing 8k-token entropy at the same shapes (fp32) with < 4 GB extra memory, vs (a)
where (a) fits; and end to end, `fused_entropy_bits` on the default model vs the eager path (entropy from
hook_pattern inside a hook, nothing cached) at a moderate length.
Only ratios within one run mean anything: the machines are shared.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from headscope.kernels import KernelBias, attention_chunked

H, H_KV = 9, 3
GPU_SIZES = [512, 1024, 2048, 4096, 8192, 16384, 32768]


def eager_attention_entropy(q, k, v) -> tuple[torch.Tensor, torch.Tensor]:
    """What every hook-based tool does: materialise the pattern, read entropy from it."""
    n, g = q.shape[2], q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(g, 1), v.repeat_interleave(g, 1)
    s = (q @ k.transpose(-1, -2)).float() * q.shape[-1] ** -0.5
    s = s.masked_fill(torch.ones(n, n, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
    p = torch.softmax(s, -1)
    ent = -(p * torch.log2(p.clamp_min(1e-30))).sum(-1)
    return p.to(v.dtype) @ v, ent


# -- GPU -------------------------------------------------------------------------------------------------------
def cuda_time(fn: Callable[[], object], reps: int) -> float:
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def cuda_peak_mb(fn: Callable[[], object]) -> float:
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return round((torch.cuda.max_memory_allocated() - base) / 2**20, 1)


def tune(d: int, dtype: torch.dtype) -> tuple[object, dict]:
    from headscope.kernels.triton_attn import KernelConfig, attention_triton

    q, k, v = rand_qkv(16384, d, dtype)
    found = {}
    configs = [(128, 64, 4, 3), (128, 64, 8, 3), (128, 128, 8, 3), (64, 64, 4, 3), (64, 64, 4, 2),
               (64, 64, 4, 4), (64, 32, 4, 3), (128, 128, 4, 3), (64, 64, 8, 3), (128, 32, 4, 4)]  # fmt: skip
    for cfg in (KernelConfig(*c) for c in configs):  # block_m must be a multiple of block_n
        try:
            found[cfg] = cuda_time(lambda c=cfg: attention_triton(q, k, v, config=c), 5)
        except Exception as exc:  # a config can run out of shared memory
            print(f"config {cfg} failed: {exc}", file=sys.stderr)
    best = min(found, key=found.__getitem__)
    return best, {
        f"{c.block_m}x{c.block_n}w{c.num_warps}s{c.num_stages}": round(t, 3) for c, t in found.items()
    }


def rand_qkv(n: int, d: int, dtype: torch.dtype, device: str = "cuda"):
    g = torch.Generator(device=device).manual_seed(n + d)
    q = torch.randn(1, H, n, d, device=device, generator=g)
    k, v = (torch.randn(1, H_KV, n, d, device=device, generator=g) for _ in range(2))
    return q.to(dtype), k.to(dtype), v.to(dtype)


def gpu_row(n: int, d: int, dtype: torch.dtype, cfg) -> dict:
    from headscope.kernels.triton_attn import attention_triton

    q, k, v = rand_qkv(n, d, dtype)
    kr, vr = k.repeat_interleave(H // H_KV, 1), v.repeat_interleave(H // H_KV, 1)
    reps = 20 if n <= 8192 else 8
    bias = KernelBias("distance", coef=torch.tensor(0.05, device="cuda"))

    def sdpa():
        return torch.nn.functional.scaled_dot_product_attention(q, kr, vr, is_causal=True)

    def fused():
        return attention_triton(q, k, v, config=cfg)

    def fused_bias():
        return attention_triton(q, k, v, config=cfg, bias=bias)

    row: dict[str, Any] = {"n": n, "d_head": d}
    row["sdpa_ms"], row["sdpa_peak_mb"] = cuda_time(sdpa, reps), cuda_peak_mb(sdpa)
    row["fused_ms"], row["fused_peak_mb"] = cuda_time(fused, reps), cuda_peak_mb(fused)
    row["fused_bias_ms"] = cuda_time(fused_bias, reps)
    row["fused_over_sdpa"] = row["fused_ms"] / row["sdpa_ms"]
    free = torch.cuda.mem_get_info()[0]
    if H * n * n * 4 * 5 < 0.8 * free:  # scores, probs, log-probs, products in fp32
        try:
            row.update(gpu_eager(q, k, v, fused, reps))
        except torch.cuda.OutOfMemoryError:
            row["eager"] = "out of memory"
    else:
        row["eager"] = f"skipped: needs ~{H * n * n * 20 / 2**30:.0f} GiB"
    if "eager_ms" in row:
        row["eager_over_fused"] = row["eager_ms"] / row["fused_ms"]
    for key, val in row.items():
        if isinstance(val, float):
            row[key] = round(val, 4)
    torch.cuda.empty_cache()
    return row


def gpu_eager(q, k, v, fused, reps: int) -> dict[str, Any]:
    row: dict[str, Any] = {}
    row["eager_ms"] = cuda_time(lambda: eager_attention_entropy(q, k, v), max(3, reps // 4))
    row["eager_peak_mb"] = cuda_peak_mb(lambda: eager_attention_entropy(q, k, v))
    got, ent = fused(), eager_attention_entropy(q, k, v)[1]
    exact = attention_chunked(q, k, v, chunk=2048)  # fp32 scores (eager rounds them to bf16 first)
    row["max_entropy_err_bits_vs_fp32"] = float((got.entropy_bits - exact.entropy_bits).abs().max())
    row["max_out_err_vs_fp32"] = float((got.out.float() - exact.out.float()).abs().max())
    row["max_entropy_diff_bits_vs_bf16_eager"] = float((got.entropy_bits - ent).abs().max())
    return row


def gpu_part(sizes: list[int], dims: list[int]) -> dict:
    dtype = torch.bfloat16
    report: dict = {"device": torch.cuda.get_device_name(), "dtype": "bfloat16", "heads": H, "kv_heads": H_KV}
    report["torch"], report["triton"] = torch.__version__, __import__("triton").__version__
    for d in dims:
        cfg, tried = tune(d, dtype)
        rows = [gpu_row(n, d, dtype, cfg) for n in sizes]
        report[f"d_head_{d}"] = {"config": tried and min(tried, key=tried.__getitem__), "tuning_ms_16k": tried,
                                 "rows": rows}  # fmt: skip
        print(json.dumps(rows[-1]), file=sys.stderr)
    return report


# -- CPU -------------------------------------------------------------------------------------------------------
class PeakRSS:
    """Samples this process's resident memory every few ms (torch's CPU allocator is not traced otherwise)."""

    def __init__(self) -> None:
        import psutil

        self.proc, self.peak, self.stop = psutil.Process(), 0, threading.Event()

    def __enter__(self) -> PeakRSS:
        self.base = self.peak = self.proc.memory_info().rss
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.002)

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)

    @property
    def extra_mb(self) -> float:
        return round((self.peak - self.base) / 2**20, 1)


def cpu_measure(fn: Callable[[], object]) -> tuple[float, float]:
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        fn()
        secs = time.perf_counter() - t0
    return round(secs, 3), mem.extra_mb


def cpu_kernel_part(sizes: list[int], eager_limit_gb: float) -> list[dict]:
    rows = []
    for n in sizes:
        q, k, v = rand_qkv(n, 64, torch.float32, device="cpu")
        row: dict[str, Any] = {"n": n}
        row["chunked_s"], row["chunked_extra_mb"] = cpu_measure(
            lambda q=q, k=k, v=v: attention_chunked(q, k, v)
        )
        est_gb = H * n * n * 4 * 4 / 2**30
        if est_gb <= eager_limit_gb:
            row["eager_s"], row["eager_extra_mb"] = cpu_measure(
                lambda q=q, k=k, v=v: eager_attention_entropy(q, k, v)
            )
            row["eager_over_chunked_time"] = round(row["eager_s"] / row["chunked_s"], 3)
            row["eager_over_chunked_mem"] = round(
                row["eager_extra_mb"] / max(row["chunked_extra_mb"], 1.0), 2
            )
            ent = eager_attention_entropy(q, k, v)[1]
            row["max_entropy_err_bits"] = float((attention_chunked(q, k, v).entropy_bits - ent).abs().max())
        else:
            row["eager"] = f"skipped: needs ~{est_gb:.1f} GiB (limit {eager_limit_gb} GiB)"
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    return rows


def cpu_e2e_part(n_tokens: int) -> dict:
    from headscope.data import excerpt_text
    from headscope.kernels import fused_entropy_bits
    from headscope.models import ModelHandle, hooks

    handle = ModelHandle.load("smollm2-135m", device="cpu")
    tokens = handle.tokenize(excerpt_text(64), max_tokens=10**6)[:, :n_tokens]
    n_layers = handle.facts.n_layers
    sink: dict[int, torch.Tensor] = {}

    def entropy_hook(layer: int):
        def hook(pattern: torch.Tensor, hook: object) -> torch.Tensor:
            sink[layer] = -(pattern[0] * torch.log2(pattern[0].clamp_min(1e-30))).sum(-1)
            return pattern

        return hook

    pattern_hooks = [(hooks.pattern(i), entropy_hook(i)) for i in range(n_layers)]
    eager = lambda: handle.forward(tokens, fwd_hooks=pattern_hooks)  # noqa: E731
    fused = lambda: fused_entropy_bits(handle, tokens)  # noqa: E731
    eager()  # warm-up both paths once
    fused()
    res: dict = {"model": "smollm2-135m", "n_tokens": int(tokens.shape[1])}
    res["eager_s"], res["eager_extra_mb"] = cpu_measure(eager)
    res["fused_s"], res["fused_extra_mb"] = cpu_measure(fused)
    ent_eager = torch.stack([sink[i] for i in range(n_layers)])
    res["max_entropy_err_bits"] = float((fused() - ent_eager).abs().max())
    res["eager_over_fused_time"] = round(res["eager_s"] / res["fused_s"], 3)
    res.update(cpu_e2e_dial(handle, tokens, pattern_hooks, sink))
    return res


def cpu_e2e_dial(handle, tokens, pattern_hooks, sink) -> dict:
    """The same under a locality dial (distance, λ = 0.6, progressive β = 3): eager score hooks vs the kernels' bias."""
    from headscope.attention import LocalityDial, dial_hooks
    from headscope.kernels import fused_entropy_bits

    dial = LocalityDial(lam=0.6, mode="distance", schedule="progressive", beta=3.0)
    fwd = [*dial_hooks(handle, tokens, dial), *pattern_hooks]
    res: dict = {"dial": dial.to_json()}
    res["eager_dial_s"], res["eager_dial_extra_mb"] = cpu_measure(
        lambda: handle.forward(tokens, fwd_hooks=fwd)
    )
    ent_eager = torch.stack([sink[i] for i in range(handle.facts.n_layers)])
    fused = lambda: fused_entropy_bits(handle, tokens, dial=dial)  # noqa: E731
    res["fused_dial_s"], res["fused_dial_extra_mb"] = cpu_measure(fused)
    res["max_entropy_err_bits_dial"] = float((fused() - ent_eager).abs().max())
    res["eager_over_fused_time_dial"] = round(res["eager_dial_s"] / res["fused_dial_s"], 3)
    return res


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    ap.add_argument(
        "--sizes", type=int, nargs="+", help="sequence lengths (default: GPU 512…32768, CPU 2k/4k/8k)"
    )
    ap.add_argument("--dims", type=int, nargs="+", default=[64, 128], help="GPU head dims")
    ap.add_argument("--eager-limit-gb", type=float, default=3.0, help="CPU: run (a) only below this estimate")
    ap.add_argument("--e2e-tokens", type=int, default=1024, help="CPU end-to-end length; 0 skips it")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    args = ap.parse_args(argv)
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    t0 = time.time()
    if device == "cuda":
        report = {"part": "gpu", **gpu_part(args.sizes or GPU_SIZES, args.dims)}
    else:
        torch.set_num_threads(min(2, os.cpu_count() or 1))
        report = {"part": "cpu", "threads": torch.get_num_threads(), "heads": H, "kv_heads": H_KV, "d_head": 64,
                  "kernel": cpu_kernel_part(args.sizes or [2048, 4096, 8192], args.eager_limit_gb)}  # fmt: skip
        if args.e2e_tokens:
            report["end_to_end"] = cpu_e2e_part(args.e2e_tokens)
    report["wall_s"] = round(time.time() - t0, 1)
    text = json.dumps(report, indent=1)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
