"""Load and forward-pass benchmark for the model layer. Prints one JSON object and writes it, with the run's
conditions (bench/conditions.py), to bench/results/load_cpu_2core.json (or --out).

Cold load: GGUF → fp32 → safetensors cache (into an empty temporary cache), timed once. Warm load: from that
cache, timed once, and once more split into its two parts (weights + tokenizer from the cache; TransformerBridge
boot). Forward at 64 and 256 tokens: the handle (TransformerBridge) and plain transformers (eager attention, same
weights, same random ids) timed interleaved (`conditions.interleaved`: rotating order, --rounds rounds after one
warm-up each, one forward per timing); the ratio handle / plain of the medians is what counts (goal ≤ 1.15), the
ratio of the minima is reported beside it. Peak RSS of this process.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repo root holds `bench`
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from tqdm import tqdm
from transformers import AutoModelForCausalLM

from bench import conditions
from headscope.models import CATALOG, ModelHandle
from headscope.models.loading import _cache_dir, load_hf

RESULT = Path(__file__).resolve().parent / "results" / "load_cpu_2core.json"
GOAL = 1.15


def _seconds(fn: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    value = fn()
    return value, round(time.perf_counter() - t0, 3)


def loads(model: str) -> tuple[ModelHandle, Any, dict[str, float]]:
    """Cold and warm loads into a fresh cache; returns the handle, a plain HF model of the same weights, times."""
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["HEADSCOPE_CACHE"] = tmp
        _, out["cold_load_s"] = _seconds(lambda: ModelHandle.load(model, device="cpu"))
        handle, out["warm_load_s"] = _seconds(lambda: ModelHandle.load(model, device="cpu"))
        entry = CATALOG[model]
        loaded, out["warm_weights_load_s"] = _seconds(lambda: load_hf(entry))
        _, out["warm_bridge_boot_s"] = _seconds(lambda: ModelHandle(loaded, entry, "cpu"))
        folder = _cache_dir(entry, entry.source_path())  # type: ignore[arg-type]
        plain = AutoModelForCausalLM.from_pretrained(
            folder, dtype=torch.float32, attn_implementation="eager"
        ).eval()
    return handle, plain, out


def forwards(handle: ModelHandle, plain: Any, rounds: int) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(0)
    out: dict[str, Any] = {}
    for n in tqdm((64, 256), desc="forward", file=sys.stderr):
        ids = torch.randint(0, handle.facts.d_vocab, (1, n), generator=gen)
        with torch.inference_mode():
            timing = conditions.interleaved(
                {"plain": lambda ids=ids: plain(ids), "handle": lambda ids=ids: handle.forward(ids)}, rounds
            )
        out[f"forward_{n}"] = {
            "timing": timing,
            "handle_over_plain": conditions.ratio(timing, "handle", "plain"),
        }
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--rounds", type=int, default=15, help="interleaved rounds per length (≥ 3)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULT)
    args = ap.parse_args(argv)
    if args.rounds < 3:
        ap.error("--rounds must be at least 3")
    cond = conditions.start(args.threads)
    handle, plain, times = loads(args.model)
    out: dict[str, Any] = {
        "bench": "load",
        "model": args.model,
        **times,
        **forwards(handle, plain, args.rounds),
    }
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out["goal"] = f"handle / plain forward ≤ {GOAL} (ratio of medians) at 64 and 256 tokens"
    out["goal_met"] = all(out[f"forward_{n}"]["handle_over_plain"]["median_ratio"] <= GOAL for n in (64, 256))
    conditions.write(out, args.out, cond)


if __name__ == "__main__":
    main()
