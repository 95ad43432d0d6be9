"""Decoding benchmark: lossless strategies vs greedy on the default model, CPU, both shipped prompt sets.

Per strategy and prompt set: tokens per target forward pass, the share of outputs identical to greedy, and the
wall-time speedup over greedy measured in the same run (same prompts, interleaved per prompt). Prints one JSON
object. Goal: ≥ 1.5× tokens per target forward on input-grounded prompts for the best lossless strategy with
100 % identical output. Wall time on a small CPU model is overhead-bound and need not follow.
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

from headscope.decoding import DecodeConfig, decode
from headscope.decoding.prompts import PROMPT_SETS, load_prompt_set, render
from headscope.models import ModelHandle

STRATEGIES = ("greedy", "ngram", "jacobi", "layer_skip")
GOAL = 1.5


def run_set(handle: ModelHandle, name: str, cfg: DecodeConfig, n_prompts: int, bar: tqdm) -> dict:
    per: dict[str, dict[str, list[float]]] = {
        s: {"tok": [], "fwd": [], "wall": [], "same": []} for s in STRATEGIES
    }
    for item in load_prompt_set(name)[:n_prompts]:
        ids = handle.tokenize(render(handle, item.user_text))[0].tolist()
        ref = None
        for strat in STRATEGIES:
            trace = decode(handle, ids, strat, cfg)
            ref = trace.token_ids if strat == "greedy" else ref
            rec = per[strat]
            rec["tok"].append(len(trace.token_ids))
            rec["fwd"].append(trace.target_forwards)
            rec["wall"].append(trace.wall_s)
            rec["same"].append(float(trace.token_ids == ref))
            bar.update(1)
    greedy_wall = sum(per["greedy"]["wall"])
    out = {}
    for strat, rec in per.items():
        out[strat] = {
            "tokens_per_target_forward": round(sum(rec["tok"]) / sum(rec["fwd"]), 3),
            "identical_to_greedy": round(statistics.mean(rec["same"]), 3),
            "wall_s": round(sum(rec["wall"]), 2),
            "wall_speedup_vs_greedy": round(greedy_wall / sum(rec["wall"]), 3),
            "tokens": int(sum(rec["tok"])),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--prompts", type=int, default=3, help="prompts per set")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    handle = ModelHandle.load(args.model, device="cpu")
    cfg = DecodeConfig(max_new_tokens=args.max_new_tokens, max_draft=8, window=6, search_steps=8)
    t0 = time.perf_counter()
    bar = tqdm(total=len(PROMPT_SETS) * args.prompts * len(STRATEGIES), desc="decode", file=sys.stderr)
    sets = {name: run_set(handle, name, cfg, args.prompts, bar) for name in PROMPT_SETS}
    bar.close()
    lossless = {
        s: v for s, v in sets["input_grounded"].items() if s != "greedy" and v["identical_to_greedy"] == 1.0
    }
    best = max(lossless, key=lambda s: lossless[s]["tokens_per_target_forward"], default=None)
    best_ratio = (
        lossless[best]["tokens_per_target_forward"]
        / sets["input_grounded"]["greedy"]["tokens_per_target_forward"]
        if best
        else 0.0
    )
    out = {
        "model": args.model,
        "device": "cpu",
        "threads": args.threads,
        "prompts_per_set": args.prompts,
        "max_new_tokens": args.max_new_tokens,
        "config": cfg.to_json(),
        "sets": sets,
        "best_lossless_input_grounded": best,
        "best_tokens_per_forward_ratio_vs_greedy": round(best_ratio, 3),
        "goal_ratio": GOAL,
        "goal_met": best_ratio >= GOAL,
        "total_s": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
