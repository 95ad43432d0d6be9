"""Locality-dial benchmark. Prints one JSON object and writes it, with the run's conditions (bench/conditions.py),
to bench/results/locality_cpu_2core.json (or --out).

On N tokens (default 256) of the shipped Wikipedia excerpt with the default model on CPU, four things are timed
interleaved (`conditions.interleaved`: rotating order, --rounds rounds after one warm-up each):
- a plain forward of the ids (the baseline);
- an 11-point λ sweep (distance mode, uniform schedule; λ = 0 is on the grid, so 11 forwards, 10 of them dialed);
- the entropy heatmap (eager entropy of every head + the plotly figure as JSON);
- attaching and removing one named hook per layer through the handle, no forward (30 on the default model).
Reported: each one's median and minimum; per λ point = the sweep / 11, and its ratio to the plain forward (of the
medians and of the minima; goal ≤ 2); the heatmap's median time (goal ≤ 2 s) and its ratio to the plain forward.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repo root holds `bench`
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from bench import conditions
from headscope.attention import LocalityDial
from headscope.models import ModelHandle, hooks
from headscope.probes import SweepConfig, entropy_bits, eval_tokens, sweep_locality

RESULT = Path(__file__).resolve().parent / "results" / "locality_cpu_2core.json"
LAMBDAS = tuple(round(k / 10, 1) for k in range(11))
GOAL_RATIO, GOAL_HEATMAP_S = 2.0, 2.0


def candidates(handle: ModelHandle, tokens: torch.Tensor) -> dict[str, Any]:
    import plotly.graph_objects as go

    names = [hooks.pattern(layer) for layer in range(handle.facts.n_layers)]

    def heatmap() -> None:
        ent, _ = entropy_bits(handle, tokens, backend="eager")
        go.Figure(go.Heatmap(z=ent.mean(-1).numpy())).to_json()

    def attach() -> None:
        with handle.hooks([(n, lambda a, hook: a) for n in names]):
            pass

    return {
        "plain_forward": lambda: handle.forward(tokens),
        "sweep_11_points": lambda: sweep_locality(handle, tokens, SweepConfig(LAMBDAS, LocalityDial())),
        "heatmap": heatmap,
        f"hook_attach_{len(names)}": attach,
    }


def summary(timing: dict[str, Any]) -> dict[str, Any]:
    per = {k: timing[k]["sweep_11_points"] / len(LAMBDAS) for k in ("median_s", "min_s")}
    base = {k: timing[k]["plain_forward"] for k in ("median_s", "min_s")}
    heat = conditions.ratio(timing, "heatmap", "plain_forward")
    out = {
        "per_point_s_median": round(per["median_s"], 4),
        "per_point_ratio_median": round(per["median_s"] / base["median_s"], 3),
        "per_point_ratio_min": round(per["min_s"] / base["min_s"], 3),
        "heatmap_s_median": timing["median_s"]["heatmap"],
        "heatmap_over_plain": heat,
        "goal": f"per λ point ≤ {GOAL_RATIO} × a plain forward; heatmap ≤ {GOAL_HEATMAP_S} s (medians)",
    }
    out["goal_met"] = (
        out["per_point_ratio_median"] <= GOAL_RATIO and out["heatmap_s_median"] <= GOAL_HEATMAP_S
    )
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (≥ 3)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULT)
    args = ap.parse_args(argv)
    if args.rounds < 3:
        ap.error("--rounds must be at least 3")
    cond = conditions.start(args.threads)
    handle = ModelHandle.load(args.model, device="cpu")
    tokens, _ = eval_tokens(handle, max_tokens=args.tokens)
    timing = conditions.interleaved(candidates(handle, tokens), rounds=args.rounds)
    out = {"bench": "locality", "model": args.model, "n_tokens": int(tokens.shape[1]),
           "n_lambda_points": len(LAMBDAS), "timing": timing, **summary(timing)}  # fmt: skip
    conditions.write(out, args.out, cond)


if __name__ == "__main__":
    main()
