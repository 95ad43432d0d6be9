"""Load and forward-pass benchmark for the model layer. Prints one JSON object.

Cold load: GGUF → fp32 → safetensors cache (into an empty temporary cache). Warm load: from that cache, also split
into its two parts (weights + tokenizer from the cache; TransformerBridge boot).
Forward: the handle (TransformerBridge) vs plain transformers (eager attention, same weights, same ids), interleaved
in the same run; the ratio handle/plain is what counts (goal ≤ 1.15). Peak RSS of this process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import time

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from tqdm import tqdm
from transformers import AutoModelForCausalLM

from headscope.models import CATALOG, ModelHandle
from headscope.models.loading import _cache_dir, load_hf


def _median_ms(fn, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out: dict = {"model": args.model, "device": "cpu", "threads": args.threads, "torch": torch.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["HEADSCOPE_CACHE"] = tmp
        t0 = time.perf_counter()
        ModelHandle.load(args.model, device="cpu")
        out["cold_load_s"] = round(time.perf_counter() - t0, 3)
        t0 = time.perf_counter()
        handle = ModelHandle.load(args.model, device="cpu")
        out["warm_load_s"] = round(time.perf_counter() - t0, 3)
        entry = CATALOG[args.model]
        # The same warm load split in two: weights + tokenizer from the safetensors cache, then the bridge boot.
        t0 = time.perf_counter()
        loaded = load_hf(entry)
        out["warm_weights_load_s"] = round(time.perf_counter() - t0, 3)
        t0 = time.perf_counter()
        ModelHandle(loaded, entry, "cpu")
        out["warm_bridge_boot_s"] = round(time.perf_counter() - t0, 3)
        folder = _cache_dir(entry, entry.source_path())  # type: ignore[arg-type]
        plain = AutoModelForCausalLM.from_pretrained(
            folder, dtype=torch.float32, attn_implementation="eager"
        ).eval()
    gen = torch.Generator().manual_seed(0)
    for n in tqdm((64, 256), desc="forward", file=__import__("sys").stderr):
        ids = torch.randint(0, handle.facts.d_vocab, (1, n), generator=gen)
        with torch.inference_mode():
            # Interleave the two so drift in machine load hits both alike.
            h, p = [], []
            for _ in range(3):
                h.append(_median_ms(lambda ids=ids: handle.forward(ids), args.reps // 3))
                p.append(_median_ms(lambda ids=ids: plain(ids), args.reps // 3))
        out[f"forward_{n}_ms_handle"] = round(statistics.median(h), 2)
        out[f"forward_{n}_ms_plain"] = round(statistics.median(p), 2)
        out[f"forward_{n}_ratio"] = round(statistics.median(h) / statistics.median(p), 3)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out["goal_ratio_max"] = 1.15
    out["goal_met"] = all(out[f"forward_{n}_ratio"] <= 1.15 for n in (64, 256))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
