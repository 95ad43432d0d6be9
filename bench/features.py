"""SAE features benchmark on the default model, CPU. Writes bench/results/features_cpu_2core.json with the run's
conditions (bench/conditions.py: commit, threads, load before/after, command, `quiet`).

1. Top-k features of a `--text-tokens` text (`views.top_features`: activations at the SAE's hook — the forward pass
   stops there —, encode, top-k per token, explained variance) against a plain full forward pass of the same
   tokens: both timed by `conditions.interleaved` (rotating order, `--rounds` rounds, after one warm-up each),
   ratio of medians and of minima per SAE. The bar: median ratio ≤ 1.5×.
2. Dashboard indexing throughput (`index.build` over `--index-tokens` validation positions, into a scratch copy of
   the SAE folder) in positions/s, interleaved with a plain forward pass over the same windows the same number of
   rounds.
3. `features eval` cost (`evaluate_sae` over a `--text-tokens` text: one clean, one spliced and one ablated pass)
   as a multiple of one plain forward pass, interleaved likewise.

Threads default to 1: on the shared 2-core machines one torch thread per process is the fair and faster choice.
Timings are only figures when the JSON's `conditions.quiet` is true (load < 1.5 throughout).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import conditions
from headscope.data import excerpt_text
from headscope.features import catalog, index, saes, views
from headscope.features.collect import split_windows
from headscope.features.evaluate import EvalConfig, evaluate_sae
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


def top_vs_forward(handle: ModelHandle, name: str, text: str, rounds: int) -> dict[str, Any]:
    fsae = catalog.resolve(handle, name)
    ids = handle.tokenize(text)
    timing = conditions.interleaved(
        {
            "forward": lambda: handle.forward(ids),
            "top_features": lambda: views.top_features(handle, fsae, text, 5),
        },
        rounds,
    )
    return {"sae": name, "hook": fsae.hook, "tokens": int(ids.shape[1]), "timing": timing,
            "ratio": conditions.ratio(timing, "top_features", "forward")}  # fmt: skip


def index_throughput(handle: ModelHandle, name: str, n_tokens: int, rounds: int) -> dict[str, Any]:
    entry = catalog.find(handle.identity.name, name)
    cfg = index.IndexConfig(tokens=n_tokens)
    windows = split_windows(handle, "validation", cfg.ctx, max_windows=-(-n_tokens // (cfg.ctx - 1)))
    headers: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp) / name
        shutil.copytree(entry.folder, scratch, ignore=shutil.ignore_patterns(catalog.DASHBOARDS))
        fsae = saes.load(handle, scratch, name)

        def forward() -> None:
            for lo in range(0, windows.shape[0], cfg.batch_size):
                handle.forward(windows[lo : lo + cfg.batch_size])

        timing = conditions.interleaved(
            {"forward": forward, "index": lambda: headers.append(index.build(handle, fsae, cfg))},
            rounds,
            warmup=False,
        )
    n = headers[-1]["positions"]
    return {"sae": name, "positions": n, "timing": timing, "ratio": conditions.ratio(timing, "index", "forward"),
            "index_positions_per_s": round(n / timing["median_s"]["index"], 1),
            "forward_positions_per_s": round(n / timing["median_s"]["forward"], 1)}  # fmt: skip


def eval_vs_forward(handle: ModelHandle, name: str, text: str, rounds: int) -> dict[str, Any]:
    fsae = catalog.resolve(handle, name)
    ids = handle.tokenize(text)
    cfg = EvalConfig(ctx=int(ids.shape[1]))
    timing = conditions.interleaved(
        {"forward": lambda: handle.forward(ids), "eval": lambda: evaluate_sae(handle, fsae, [text], cfg=cfg)},
        rounds,
    )
    return {"sae": name, "tokens": int(ids.shape[1]), "timing": timing,
            "ratio": conditions.ratio(timing, "eval", "forward")}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds per A/B pair (≥ 3)")
    ap.add_argument("--text-tokens", type=int, default=256)
    ap.add_argument("--index-tokens", type=int, default=4064)
    ap.add_argument("--saes", default=None, help="comma-separated SAE names (default: every shipped one)")
    ap.add_argument("--index-sae", default=None, help="default: the first SAE")
    ap.add_argument("--out", default=str(OUT), help="result JSON ('-': print only)")
    args = ap.parse_args()
    if args.rounds < 3:
        raise SystemExit("--rounds must be ≥ 3 (interleaved A/B)")
    cond = conditions.start(args.threads)
    handle = ModelHandle.load(args.model, device="cpu")
    names = args.saes.split(",") if args.saes else [e.name for e in catalog.available(handle.identity.name)]
    if not names:
        raise SystemExit(f"no SAEs for {handle.identity.name}")
    text = text_of(handle, args.text_tokens)
    top = [top_vs_forward(handle, n, text, args.rounds) for n in names]
    result = {
        "model": handle.identity.name, "rounds": args.rounds,
        "top_k_vs_forward": top,
        "max_median_ratio": max(r["ratio"]["median_ratio"] for r in top),
        "indexing": index_throughput(handle, args.index_sae or names[0], args.index_tokens, args.rounds),
        "eval_vs_forward": eval_vs_forward(handle, names[0], text, args.rounds),
        "bar": "top-k features of a 256-token text: median ratio <= 1.5x a plain forward (per SAE, interleaved)",
    }  # fmt: skip
    if args.out == "-":
        print(result)
    else:
        conditions.write(result, Path(args.out), cond)


if __name__ == "__main__":
    main()
