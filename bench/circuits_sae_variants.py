"""The discrete-SAE variant study (issue 23): every registered variant (headscope/circuits/variants.py) on every
task, scored against the same ground truths, 5 seeds each.

Tasks: IOI, greater-than, docstring and induction on the default model (SmolLM2-135M; truth = activation patching
at the CLI defaults: 24 pairs, seed 0, 3 % of |clean − corrupted|), and the known-answer model
(assets/circuits/induction-3l; truth = head roles read from attention, independent of patching).

Per task, computed once and cached on disk (`--cache`, default $HEADSCOPE_CACHE/circuit_variants): the prompts'
head outputs under every read position (one forward per side), the per-pair patching effects, the gradient
methods' per-pair attributions. Per variant × task × seed: ROC-AUC against the truth, ties among the top 20, the
SAE step's time (training + scoring on the cached outputs: the forward is shared and timed once per task), and a
95 % bootstrap interval over prompt pairs (resampled examples, the trained SAE fixed, the truth resampled with
them: `variants.resampled_scores`). Per variant × task: mean, std, min, max over seeds. Writes
bench/results/circuits_sae_variants_cpu_2core.json with the conditions (bench/conditions.py).

    nice -n 10 python bench/circuits_sae_variants.py --threads 1 --cache /work/scratch/sae/cache
    python bench/circuits_sae_variants.py --stage cache      # only fill the cache
    python bench/circuits_sae_variants.py --variants reference,mean_gap --tasks ioi --seeds 1  # a small try
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import conditions
from headscope.circuits import attribution, patching
from headscope.circuits.finder import task_performance
from headscope.circuits.tasks import make_task
from headscope.circuits.variants_read import READS, read_heads
from headscope.models import ModelHandle

RESULTS = Path(__file__).parent / "results" / "circuits_sae_variants_cpu_2core.json"
MODEL_TASKS = ("ioi", "greater_than", "docstring", "induction")
N_PAIRS, DATA_SEED, GT_FRAC = 24, 0, 0.03
CACHE_VERSION = 1


def default_cache() -> Path:
    return Path(os.environ.get("HEADSCOPE_CACHE", Path.home() / ".cache" / "headscope")) / "circuit_variants"


@dataclass(frozen=True)
class TaskCache:
    """What the study needs of one task, computed once."""

    name: str
    x: dict[str, torch.Tensor]  # read → [examples, head_total, d_model], positives then negatives
    effects: torch.Tensor  # [pair, layer, head] patching effect per pair (for the bootstrap)
    gap: torch.Tensor  # [pair] clean − corrupted metric per pair
    truth: np.ndarray  # [head_total] the ground truth (patching, or the known-answer roles)
    gradient: dict[str, torch.Tensor]  # method → [pair, layer, head]
    paired: bool
    n_heads: int
    meta: dict[str, Any]


def _task_folder(root: Path, model: str, task: str) -> Path:
    return root / f"v{CACHE_VERSION}" / model / f"{task}_n{N_PAIRS}_seed{DATA_SEED}"


def build_cache(handle: ModelHandle, task: str, folder: Path, log: Any) -> None:
    """Head outputs (every read), per-pair patching effects and attributions for one task; written to `folder`."""
    t0 = time.perf_counter()
    data = make_task(task, handle.tokenizer, n=N_PAIRS, seed=DATA_SEED)
    prep = patching.prepare(handle, data)
    perf = task_performance(handle, prep)
    layers = list(range(handle.facts.n_layers))
    x = read_heads(handle, prep, READS, layers)
    read_s = time.perf_counter() - t0
    log(f"{task}: head outputs read in {read_s:.1f} s; ground truth …")
    gt = patching.activation_patching(handle, prep, None, layers)
    log(f"{task}: ground truth in {time.perf_counter() - t0:.0f} s; gradient methods …")
    attr = attribution.attribution_patching(handle, prep)
    ig = attribution.eap_ig(handle, prep, 5)
    tensors = {f"x_{r}": v.contiguous() for r, v in x.items()}
    tensors |= {"effects": gt.per_pair, "clean": gt.clean_per_pair, "corrupt": gt.corrupt_per_pair}
    tensors |= {"attribution_patching": attr.contiguous(), "eap_ig": ig.contiguous()}
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "data.safetensors"))
    meta = {
        "task": task, "model": handle.identity.name, "n_pairs": N_PAIRS, "data_seed": DATA_SEED,
        "paired": prep.paired, "n_layers": handle.facts.n_layers, "n_heads": handle.facts.n_heads,
        "performance": perf.to_json(),
        "read_s": round(read_s, 2), "build_s": round(time.perf_counter() - t0, 1),
        "example_positive": data.positives[0].prompt, "example_negative": data.negatives[0],
    }  # fmt: skip
    (folder / "meta.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    log(f"{task}: cached in {meta['build_s']} s")


def load_cache(folder: Path) -> TaskCache:
    t = load_file(str(folder / "data.safetensors"))
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    gap = t["clean"] - (t["corrupt"] if meta["paired"] else t["corrupt"].mean())
    effects = t["effects"]
    truth = (effects.mean(0).abs() >= GT_FRAC * abs(float(gap.mean()))).numpy().ravel()
    return TaskCache(
        meta["task"], {r: t[f"x_{r}"] for r in READS}, effects, gap, truth,
        {m: t[m] for m in ("attribution_patching", "eap_ig")}, bool(meta["paired"]), int(meta["n_heads"]), meta,
    )  # fmt: skip


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def add_reads(handle: ModelHandle, task: str, folder: Path, log: Any) -> None:
    """Read positions added to READS after a task was cached: one forward per side, the rest kept."""
    t = load_file(str(folder / "data.safetensors"))
    missing = [r for r in READS if f"x_{r}" not in t]
    if not missing:
        return
    prep = patching.prepare(handle, make_task(task, handle.tokenizer, n=N_PAIRS, seed=DATA_SEED))
    x = read_heads(handle, prep, missing, list(range(handle.facts.n_layers)))
    save_file(t | {f"x_{r}": v.contiguous() for r, v in x.items()}, str(folder / "data.safetensors"))
    log(f"{task}: added reads {missing}")


def ensure_model_caches(root: Path, tasks: list[str]) -> dict[str, Path]:
    folders = {t: _task_folder(root, "smollm2-135m", t) for t in tasks}
    handle = None
    for t, f in folders.items():
        if not (f / "meta.json").exists():
            handle = handle or ModelHandle.load("smollm2-135m", device="cpu")
            build_cache(handle, t, f, _log)
        elif missing_reads(f):
            handle = handle or ModelHandle.load("smollm2-135m", device="cpu")
            add_reads(handle, t, f, _log)
    return folders


def missing_reads(folder: Path) -> bool:
    from safetensors import safe_open

    with safe_open(str(folder / "data.safetensors"), "pt") as f:
        keys = set(f.keys())
        return any(f"x_{r}" not in keys for r in READS)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage", choices=["cache", "all"], default="all")
    ap.add_argument("--cache", type=Path, default=default_cache())
    ap.add_argument("--tasks", default=",".join(MODEL_TASKS))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    cond = conditions.start(args.threads)
    tasks = [t for t in args.tasks.split(",") if t in MODEL_TASKS]
    ensure_model_caches(args.cache, tasks)
    if args.stage == "cache":
        _log(f"cache ready under {args.cache} ({cond['load_average_before']} load before)")
        return


if __name__ == "__main__":
    main()
