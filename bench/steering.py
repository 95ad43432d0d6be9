"""Steering benchmark on the default model, CPU: every steering result beside its baselines, with error bars.
Prints one JSON object and writes bench/results/steering_cpu_2core.json. These are not timing figures (seconds are
recorded only to size the run); conditions (commit, threads, load before / after, command) through
bench/conditions.py.

Contrastive part (papers.md §10.4): the built-in sentiment contrast set at the library defaults (layer 0.3 of
depth, α = 0.2 of the residual norm, GLOV's last-position rule), read by `steering.side_by_side` over the first
12 of the set's 24 prompts (16-token greedy continuations; the run's budget on a loaded 2-core machine): the rows none / prompting ("Write in a positive, happy tone.") / steering / steering + prompting, each
with the held-out margin effect (40 + 40 texts never used to build the vector; 95 % bootstrap CI over prompts and
texts), the judge's share of positive continuations (and the judge's own leave-one-out accuracy), and the cost
(perplexity under the unsteered model, its ratio to none, distinct-1 / distinct-2), CIs over prompts.

LoFiT part (papers.md §10.5), per built-in task (antonyms, ioi; 200 held-out items each): both LoFiT steps, the
rows none / prompting / LoFiT / LoFiT + prompting (accuracy with a bootstrap CI over items, target log-prob, and
the cost of 8-token continuations of 8 held-out prompts), and the permutation test: R random head sets of the same
size, each trained with step 2's budget, their accuracies, LoFiT's percentile among them and
p = (1 + #{random ≥ LoFiT}) / (R + 1).

Each part is cached under --cache (a JSON per part and argument set), so a long run that stops can resume; the
result records each part's own start / end load and seconds. One torch thread by default (the shared 2-core
machines run a training step 5-10× slower on two contended threads than on one).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repo root holds `bench`
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench import conditions

RESULT = Path(__file__).parent / "results" / "steering_cpu_2core.json"
CACHE = Path(os.environ.get("HEADSCOPE_CACHE", Path.home() / ".cache" / "headscope")) / "bench_steering"


def _bar(desc: str) -> Any:
    """(stage, fraction) progress → one tqdm bar on stderr."""
    from tqdm import tqdm

    bar = tqdm(total=1000, desc=desc, leave=False)

    def say(stage: str, frac: float) -> None:
        bar.update(max(0, round(1000 * frac) - bar.n))
        bar.set_postfix_str(stage[:50])

    return say


def contrastive_part(handle: Any, args: argparse.Namespace) -> dict[str, Any]:
    from headscope.steering import ContrastiveConfig, GenConfig, SteerConfig, contrastive_vector
    from headscope.steering.comparison import SideBySideConfig
    from headscope.steering.contrastive import compare_vector
    from headscope.steering.heldout import HeldOut
    from headscope.steering.tasks import load_contrast

    cs = load_contrast("sentiment")
    prompts = cs.prompts[: args.prompts]
    sv = contrastive_vector(handle, cs.positives, cs.negatives, ContrastiveConfig())
    sbs = SideBySideConfig(GenConfig(args.max_new_tokens), cs.instruction, args.resamples, args.seed)
    texts = HeldOut(cs.heldout_positives, cs.heldout_negatives)
    res = compare_vector(handle, sv, prompts, SteerConfig(), sbs, texts=texts, progress=_bar("contrastive"))
    js = res.to_json()
    ev = js.pop("evaluation")
    return {
        "contrast_set": cs.name, "n_defining": [len(cs.positives), len(cs.negatives)],
        "n_heldout": [len(cs.heldout_positives), len(cs.heldout_negatives)], "n_prompts": len(prompts),
        "instruction": cs.instruction, "max_new_tokens": args.max_new_tokens, "rows": _rows(ev["rows"]),
        "judge": ev["judge"], "legend": ev["legend"], "headline": {k: js[k] for k in ("prompt", "effect")}
        | {"unsteered": js["unsteered"]["text"], "steered": js["steered"]["text"]},
        "vector": {k: js[k] for k in ("site", "layer", "alpha", "position", "added_norm", "ref_norm", "natural_alpha")},
        "continuations": {p["prompt"]: {c: g["text"] for c, g in p["continuations"].items()} for p in ev["prompts"]},
    }  # fmt: skip


def _rows(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["condition"]: r["measures"] for r in rows}


def lofit_part(handle: Any, task_name: str, args: argparse.Namespace) -> dict[str, Any]:
    from headscope.steering.lofit import LofitConfig, lofit
    from headscope.steering.tasks import load_task

    task = load_task(task_name)
    cfg = LofitConfig(scale_steps=args.scale_steps, bias_steps=args.bias_steps, bias_lr=args.bias_lr,
                      seed=args.seed, random_sets=args.random_sets, resamples=args.resamples)  # fmt: skip
    res = lofit(handle, task, cfg, _bar(f"lofit {task_name}"))
    js = res.to_json()
    ev = js["evaluation"]["evaluation"]
    return {
        "task": task.name, "n_train": len(task.train), "n_heldout": len(task.heldout),
        "instruction": task.instruction, "k_heads": len(res.trained_offsets.heads), "heads": js["heads"],
        "steps": {"scales": cfg.scale_steps, "biases": cfg.bias_steps, "batch_size": cfg.batch_size,
                  "bias_lr": cfg.bias_lr},
        "rows": _rows(ev["rows"]), "chance": js["chance"], "verdict": js["verdict"], "train_loss": js["train_loss"],
        "trainable_parameters": js["trainable_parameters"], "full_finetune_parameters": js["full_finetune_parameters"],
        "continuations": {p["prompt"]: {c: g["text"] for c, g in p["continuations"].items()} for p in ev["prompts"]},
    }  # fmt: skip


def _cached(name: str, args: argparse.Namespace, run: Any) -> dict[str, Any]:
    """A part's result, from the cache when the same part ran with the same arguments (--fresh after a change
    to the code); each part records the commit it ran at and its own load."""
    key = {k: v for k, v in vars(args).items() if k not in ("part", "fresh", "no_write", "cache")}
    path = (
        Path(args.cache)
        / f"{name}-{hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]}.json"
    )
    if path.exists() and not args.fresh:
        return json.loads(path.read_text())
    before, t0 = conditions.load_average(), time.perf_counter()
    out = {**run(), "commit": conditions._git("rev-parse", "HEAD"), "load_average_before": before, "load_average_after": conditions.load_average(),
           "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out))
    return out


def _summary(out: dict[str, Any]) -> dict[str, Any]:
    """The few numbers a reader wants first: effect and cost per condition, LoFiT against chance."""
    s: dict[str, Any] = {}
    if "contrastive" in out:
        rows = out["contrastive"]["rows"]
        s["sentiment"] = {c: {m: rows[c][m]["value"] for m in ("margin_effect", "judged_positive", "perplexity")}
                          for c in rows}  # fmt: skip
    for name, part in out.get("lofit", {}).items():
        s[name] = {c: part["rows"][c]["accuracy"]["value"] for c in part["rows"]} | {
            "verdict": part["verdict"],
            "random_mean": part["chance"]["random_mean"] if part["chance"] else None,
        }
    return s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--part", choices=["all", "contrastive", "lofit"], default="all")
    ap.add_argument("--tasks", default="antonyms,ioi", help="LoFiT tasks, comma-separated")
    ap.add_argument("--prompts", type=int, default=12, help="sentiment prompts (the first N of the set's 24)")
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--scale-steps", type=int, default=30)
    ap.add_argument("--bias-steps", type=int, default=30)
    ap.add_argument("--bias-lr", type=float, default=0.1)
    ap.add_argument("--random-sets", type=int, default=20)
    ap.add_argument("--resamples", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default=str(CACHE), help="folder of finished parts (resumable runs)")
    ap.add_argument("--fresh", action="store_true", help="ignore cached parts")
    ap.add_argument("--no-write", action="store_true", help="print only; do not update bench/results")
    args = ap.parse_args()
    cond = conditions.start(args.threads)
    from headscope.models import ModelHandle

    handle = ModelHandle.load(args.model, device="cpu")
    out: dict[str, Any] = {"bench": "steering", "model": args.model, "note": "not timing figures"}
    if args.part in ("all", "contrastive"):
        out["contrastive"] = _cached("contrastive", args, lambda: contrastive_part(handle, args))
    if args.part in ("all", "lofit"):
        tasks = [t for t in args.tasks.split(",") if t]
        out["lofit"] = {
            t: _cached(f"lofit-{t}", args, lambda t=t: lofit_part(handle, t, args)) for t in tasks
        }
    out["summary"] = _summary(out)
    if args.no_write:
        print(json.dumps({"conditions": conditions.finish(cond), **out}))
    else:
        conditions.write(out, RESULT, cond)


if __name__ == "__main__":
    main()
