"""SAE features benchmark on the default model, CPU. Prints one JSON object and writes
bench/results/features_cpu_2core.json.

1. Top-k features of a 256-token text (`views.top_features`: activations at the SAE's hook — the forward pass stops
   there —, encode, top-k per token, explained variance) against a plain full forward pass of the same tokens,
   interleaved in the same run; median of `--repeats`, ratio per SAE. The bar: ≤ 1.5×.
2. Dashboard indexing throughput (`index.build` over `--index-tokens` validation positions, into a scratch copy
   of the SAE folder) in tokens/s, beside the plain forward throughput over the same windows.

Threads default to 1: on the shared 2-core machines one torch thread per process is the fair and faster choice.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from headscope.data import excerpt_text
from headscope.features import catalog, index, views
from headscope.features.collect import split_windows
from headscope.models import ModelHandle

OUT = Path(__file__).parent / "results" / "features_cpu_2core.json"


def text_of(handle: ModelHandle, n_tokens: int) -> str:
    """A passage of the shipped excerpt that tokenises to exactly `n_tokens` tokens."""
    ids = handle.tokenizer(excerpt_text(20), add_special_tokens=False).input_ids
    for cut in range(n_tokens, n_tokens - 8, -1):
        text = handle.decode(ids[:cut])
        if handle.tokenize(text).shape[1] == n_tokens:
            return text
    raise SystemExit(f"no excerpt cut tokenises to {n_tokens} tokens")


def top_vs_forward(handle: ModelHandle, name: str, text: str, repeats: int) -> dict:
    fsae = catalog.resolve(handle, name)
    ids = handle.tokenize(text)
    views.top_features(handle, fsae, text, 5)  # warm-up: decoder rows, caches
    plain, top = [], []
    for _ in range(repeats):  # interleaved, so machine noise hits both alike
        t0 = time.perf_counter()
        handle.forward(ids)
        plain.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        views.top_features(handle, fsae, text, 5)
        top.append(time.perf_counter() - t0)
    p, t = statistics.median(plain), statistics.median(top)
    return {"sae": name, "hook": fsae.hook, "tokens": int(ids.shape[1]), "forward_s": round(p, 4),
            "top_features_s": round(t, 4), "ratio": round(t / p, 3)}  # fmt: skip


def index_throughput(handle: ModelHandle, name: str, n_tokens: int) -> dict:
    entry = catalog.find(handle.identity.name, name)
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp) / name
        shutil.copytree(entry.folder, scratch, ignore=shutil.ignore_patterns(catalog.DASHBOARDS))
        from headscope.features import saes

        fsae = saes.load(handle, scratch, name)
        cfg = index.IndexConfig(tokens=n_tokens)
        t0 = time.perf_counter()
        header = index.build(handle, fsae, cfg)
        seconds = time.perf_counter() - t0
    windows = split_windows(handle, "validation", cfg.ctx, max_windows=-(-n_tokens // (cfg.ctx - 1)))
    t0 = time.perf_counter()
    for lo in range(0, windows.shape[0], cfg.batch_size):
        handle.forward(windows[lo : lo + cfg.batch_size])
    fwd = time.perf_counter() - t0
    n = header["positions"]
    return {"sae": name, "positions": n, "index_seconds": round(seconds, 2),
            "index_tokens_per_s": round(n / seconds, 1), "forward_tokens_per_s": round(n / fwd, 1)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--text-tokens", type=int, default=256)
    ap.add_argument("--index-tokens", type=int, default=4064)
    ap.add_argument("--index-sae", default=None, help="default: the first shipped SAE")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    handle = ModelHandle.load(args.model, device="cpu")
    names = [e.name for e in catalog.available(handle.identity.name)]
    if not names:
        raise SystemExit(f"no SAEs for {handle.identity.name}")
    text = text_of(handle, args.text_tokens)
    result = {
        "model": handle.identity.name, "threads": args.threads, "repeats": args.repeats,
        "top_k_vs_forward": [top_vs_forward(handle, n, text, args.repeats) for n in names],
        "indexing": index_throughput(handle, args.index_sae or names[0], args.index_tokens),
        "bar": "top-k features of a 256-token text <= 1.5x a plain forward (ratio per SAE, same run)",
    }  # fmt: skip
    result["max_ratio"] = max(r["ratio"] for r in result["top_k_vs_forward"])
    print(json.dumps(result, indent=1))
    if not args.no_write:
        OUT.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
