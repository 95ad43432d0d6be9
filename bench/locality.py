"""Locality-dial benchmark. Prints one JSON object.

An 11-point λ sweep (distance mode, uniform schedule) on 256 tokens of the shipped Wikipedia excerpt with the
default model on CPU. Each λ point is timed right after one plain forward of the same ids, so drift in machine
load hits both alike; the ratio (seconds per λ point / seconds per plain forward) is what counts (goal ≤ 2).
Also: the entropy-heatmap latency for 256 tokens (eager entropy of every head + the plotly figure, best of 2; goal
≤ 2 s),
and what attaching 30 named hooks through the handle costs by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from tqdm import tqdm

from headscope.attention import LocalityDial
from headscope.models import ModelHandle, hooks
from headscope.probes import SweepConfig, entropy_bits, eval_tokens, sweep_locality

LAMBDAS = tuple(round(k / 10, 1) for k in range(11))


def _seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _heatmap_s(handle: ModelHandle, tokens: torch.Tensor) -> float:
    import plotly.graph_objects as go

    def run() -> None:
        ent, _ = entropy_bits(handle, tokens, backend="eager")
        go.Figure(go.Heatmap(z=ent.mean(-1).numpy())).to_json()

    return _seconds(run)


def _hook_attach_s(handle: ModelHandle) -> float:
    names = [hooks.pattern(layer) for layer in range(handle.facts.n_layers)]

    def attach() -> None:
        with handle.hooks([(n, lambda a, hook: a) for n in names]):
            pass

    return _seconds(attach)


def _timed_sweep(handle: ModelHandle, tokens: torch.Tensor) -> tuple[list[float], list[float]]:
    """Run the 11-point sweep once; after each point (in its progress callback) time one plain forward.

    Returns (seconds per λ point, seconds per plain forward), interleaved so load drift hits both alike."""
    points: list[float] = []
    plain: list[float] = []
    bar = tqdm(total=len(LAMBDAS), desc="λ points", file=sys.stderr)
    mark = time.perf_counter()

    def after_point(stage: str, fraction: float) -> None:  # one call per λ point
        nonlocal mark
        points.append(time.perf_counter() - mark)
        plain.append(_seconds(lambda: handle.forward(tokens)))
        bar.update(1)
        mark = time.perf_counter()

    sweep_locality(handle, tokens, SweepConfig(LAMBDAS, LocalityDial()), progress=after_point)
    bar.close()
    return points, plain


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    handle = ModelHandle.load(args.model, device="cpu")
    tokens, _ = eval_tokens(handle, max_tokens=args.tokens)
    handle.forward(tokens)  # warm-up
    points, plain = _timed_sweep(handle, tokens)
    heat, heat_plain = [], []
    for _ in range(2):
        heat_plain.append(_seconds(lambda: handle.forward(tokens)))
        heat.append(_heatmap_s(handle, tokens))
    attach = [_hook_attach_s(handle) for _ in range(3)]
    out = {
        "model": args.model,
        "device": "cpu",
        "threads": args.threads,
        "n_tokens": tokens.shape[1],
        "n_lambda_points": len(LAMBDAS),
        "plain_forward_s_median": round(statistics.median(plain), 4),
        "per_point_s_median": round(statistics.median(points), 4),
        "per_point_ratio": round(sum(points) / sum(plain), 3),
        "heatmap_256_s": round(min(heat), 3),
        "heatmap_ratio_to_plain": round(sum(heat) / sum(heat_plain), 3),
        "hook_attach_30_s": round(statistics.median(attach), 4),
        "goal_ratio_max": 2.0,
        "goal_heatmap_s_max": 2.0,
    }
    out["goal_met"] = out["per_point_ratio"] <= 2.0 and out["heatmap_256_s"] <= 2.0
    print(json.dumps(out))


if __name__ == "__main__":
    main()
