"""Steering benchmark on the default model, CPU. Prints one JSON object and writes
bench/results/steering_cpu_2core.json.

Contrastive part: the built-in sentiment contrast set at the library defaults (layer = 0.3 of depth, α relative to
the residual norm at that layer, GLOV's last-position rule). For each of the set's prompts: the effect (Δ of
[log p(positives) − log p(negatives)] as continuations, nats) beside its cost — perplexity of the steered
continuation under the unsteered model against the unsteered continuation's, and the distinct-token ratio. The
bar (issue 13): perplexity ratio ≤ 2 and distinct ≥ 0.5 while the effect is positive. Baseline in the same run:
the previous defaults (layer 15, raw α 4 on a mean that included position 0, ‖v‖ ≈ 186), reproduced exactly as a
relative α (α_rel = 4‖v_old‖/r).

LoFiT part (as before): both steps on a built-in task; held-out accuracy / target log-prob with the K = 3 %
selected heads against the same K heads drawn at random (seeded draws, trained identically) in the same run.

Threads default to 1: on the shared 2-core machines two torch threads under contention ran a training step 5-10x
slower than one. The load average is recorded at the start and the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from tqdm import tqdm

from headscope.models import ModelHandle, hooks
from headscope.progress import Progress
from headscope.steering import (
    ContrastiveConfig,
    GenConfig,
    SteerConfig,
    SteeringVector,
    compare,
    contrastive_vector,
)
from headscope.steering.direction import DEFAULT_ALPHA, DEFAULT_POSITION
from headscope.steering.lofit import (
    HeadOffsets,
    LofitConfig,
    lofit,
    random_heads,
    train_biases,
)
from headscope.steering.scoring import Metrics, evaluate
from headscope.steering.tasks import ContrastSet, TaskData, load_contrast, load_task

RESULT = Path(__file__).parent / "results" / "steering_cpu_2core.json"


def _bar() -> Progress:
    """One tqdm bar (stderr) per training phase, fed by `(stage, fraction)` ("<phase> step i/n (loss x)")."""
    bars: dict[str, tqdm] = {}

    def on_step(stage: str, fraction: float) -> None:
        phase, _, rest = stage.partition(" step ")
        if not rest:
            return
        step, total = (int(x) for x in rest.split(" ")[0].split("/"))
        if phase not in bars:
            bars[phase] = tqdm(total=total, desc=phase, leave=False)
        bars[phase].update(1)
        bars[phase].set_postfix_str(rest.split(" ", 1)[1].strip("()"))
        if step == total:
            bars.pop(phase).close()

    return on_step


def _old_default_vector(
    handle: ModelHandle, cs: ContrastSet, layer: int, ref: torch.Tensor
) -> SteeringVector:
    """The previous release's vector: mean over every position, position 0 (the attention sink) included."""
    name = hooks.resid(layer, "post")

    def side(texts: tuple[str, ...]) -> torch.Tensor:
        return torch.stack(
            [handle.run_with_cache(handle.tokenize(t), [name])[1][name][0].mean(0) for t in texts]
        )

    v = side(cs.positives).mean(0) - side(cs.negatives).mean(0)
    return SteeringVector(v.float(), ref, "contrastive", hook=name)


def _prompt_rows(
    handle: ModelHandle, sv: SteeringVector, cs: ContrastSet, steer: SteerConfig, gen: GenConfig, desc: str
) -> dict:
    rows = []
    for prompt in tqdm(cs.prompts, desc=desc, leave=False):
        c = compare(handle, sv, prompt, cs.positives, cs.negatives, steer, gen)
        js = c.to_json()
        rows.append({"prompt": prompt, "effect": js["effect"], **js["cost"], "unsteered": c.unsteered.text,
                     "steered": c.steered.text})  # fmt: skip
        rows[-1].pop("bounds")
    keys = ("effect", "perplexity_unsteered", "perplexity_steered", "perplexity_ratio", "distinct_steered")
    mean = {k: round(statistics.mean(r[k] for r in rows), 4) for k in keys}
    return {
        "alpha": steer.alpha, "position": steer.position, "layer": sv.layer,
        "direction_norm": round(float(sv.direction.norm()), 3), "ref_norm": round(float(sv.ref_norm), 3),
        "natural_alpha": round(sv.natural_alpha, 4), "added_norm_over_ref": round(abs(steer.alpha), 4),
        "mean": mean, "fluent_prompts": sum(r["fluent"] for r in rows), "n_prompts": len(rows),
        "headline": rows[0], "prompts": rows,
    }  # fmt: skip


def contrastive_part(handle: ModelHandle, args: argparse.Namespace) -> dict:
    cs = load_contrast("sentiment")
    gen = GenConfig(args.max_new_tokens)
    sv = contrastive_vector(handle, cs.positives, cs.negatives, ContrastiveConfig())
    out = {"contrast_set": cs.name, "n_positive": len(cs.positives), "n_negative": len(cs.negatives),
           "max_new_tokens": gen.max_new_tokens}  # fmt: skip
    out["defaults"] = _prompt_rows(handle, sv, cs, SteerConfig(), gen, "defaults")
    old_layer = 15
    ref = contrastive_vector(handle, cs.positives, cs.negatives, ContrastiveConfig(old_layer)).ref_norm
    old = _old_default_vector(handle, cs, old_layer, ref)
    old_alpha = 4.0 * float(old.direction.norm()) / float(ref)
    out["previous_defaults"] = _prompt_rows(
        handle, old, cs, SteerConfig(round(old_alpha, 4), "last"), gen, "old"
    )
    d = out["defaults"]
    out["bar_met"] = (
        d["mean"]["effect"] > 0 and d["headline"]["effect"] > 0 and d["headline"]["fluent"]
        and d["mean"]["perplexity_ratio"] <= 2.0 and d["mean"]["distinct_steered"] >= 0.5
    )  # fmt: skip
    return out


def _random_draw(
    handle: ModelHandle, task: TaskData, cfg: LofitConfig, k: int, seed: int, on_step: Progress
) -> tuple[list, Metrics]:
    f = handle.facts
    heads = random_heads(f.n_layers, f.n_heads, k, seed)
    biases, _ = train_biases(handle, task.train, heads, cfg, on_step, phase=f"random heads (seed {seed})")
    return heads, evaluate(handle, task.heldout, fwd_hooks=HeadOffsets(tuple(heads), biases).hooks(f.n_heads))


def lofit_part(handle: ModelHandle, args: argparse.Namespace) -> dict:
    task = load_task(args.task)
    cfg = LofitConfig(
        scale_steps=args.scale_steps, bias_steps=args.bias_steps, bias_lr=args.bias_lr, seed=args.seed
    )
    on_step = _bar()
    t1 = time.perf_counter()
    res = lofit(handle, task, cfg, on_step)  # includes the first random draw (seed = cfg.seed)
    k = len(res.offsets.heads)
    draws = (
        [(list(res.random_offsets.heads), res.random_after)]
        if res.random_offsets and res.random_after
        else []
    )
    for i in range(1, args.random_draws):
        draws.append(_random_draw(handle, task, cfg, k, args.seed + i, on_step))
    rand_acc = statistics.mean(m.accuracy for _, m in draws)
    rand_lp = statistics.mean(m.mean_target_logprob for _, m in draws)
    js = res.to_json()
    return {
        "task": task.name, "n_train": len(task.train), "n_heldout": len(task.heldout),
        "steps": {"scales": cfg.scale_steps, "biases": cfg.bias_steps, "batch_size": cfg.batch_size},
        "k_heads": k, "k_share": round(k / (handle.facts.n_layers * handle.facts.n_heads), 4),
        "selected_heads": js["heads"],
        "heldout_before": js["heldout_before"], "heldout_lofit": js["heldout_after"],
        "heldout_random": [{"heads": [list(h) for h in heads], **m.to_json()} for heads, m in draws],
        "random_mean": {"accuracy": round(rand_acc, 4), "mean_target_logprob": round(rand_lp, 4)},
        "margin_vs_random": {
            "accuracy": round(res.after.accuracy - rand_acc, 4),
            "mean_target_logprob": round(res.after.mean_target_logprob - rand_lp, 4),
        },
        "lofit_beats_random": res.after.accuracy > rand_acc
        or (res.after.accuracy == rand_acc and res.after.mean_target_logprob > rand_lp),
        "train_loss": js["train_loss"],
        "trainable_parameters": res.trainable_parameters, "step1_parameters": res.step1_parameters,
        "full_finetune_parameters": res.full_finetune_parameters,
        "full_finetune_ratio": round(res.full_finetune_parameters / res.trainable_parameters),
        "seconds": round(time.perf_counter() - t1, 1),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--part", choices=["all", "contrastive", "lofit"], default="all")
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--task", default="antonyms")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--scale-steps", type=int, default=30)
    ap.add_argument("--bias-steps", type=int, default=30)
    ap.add_argument("--bias-lr", type=float, default=0.1)
    ap.add_argument("--random-draws", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-write", action="store_true", help="print only; do not update bench/results")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    out: dict = {"bench": "steering", "model": args.model, "device": "cpu", "threads": args.threads,
                 "torch": torch.__version__, "load_average_start": [round(x, 2) for x in os.getloadavg()],
                 "defaults": {"alpha": DEFAULT_ALPHA, "position": DEFAULT_POSITION}}  # fmt: skip
    handle = ModelHandle.load(args.model, device="cpu")
    if args.part in ("all", "contrastive"):
        out["contrastive"] = contrastive_part(handle, args)
    if args.part in ("all", "lofit"):
        out["lofit"] = lofit_part(handle, args)
    out["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    out["wall_seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out))
    if not args.no_write:
        RESULT.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
