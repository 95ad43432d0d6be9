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
    python bench/circuits_sae_variants.py --stage time --threads 2 --variants reference,DEFAULT \
        --out bench/results/circuits_sae_variants_timing_cpu_2core.json     # the SAE step of an IOI run, A/B
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
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
from headscope.circuits.config import CircuitConfig
from headscope.circuits.finder import sae_methods, task_performance
from headscope.circuits.sae import SAEConfig, task_l1, train_sae
from headscope.circuits.scoring import roc_auc
from headscope.circuits.tasks import make_task
from headscope.circuits.variants import VARIANTS, Resolved, SAEVariant
from headscope.circuits.variants_fit import (
    latent_acts,
    node_scores,
    resampled_scores,
    ties_in_top,
    train_rows,
)
from headscope.circuits.variants_read import READS, head_scaling, normalise, read_heads
from headscope.circuits.variants_score import baseline_stored, sae_stored
from headscope.models import ModelHandle

RESULTS = Path(__file__).parent / "results" / "circuits_sae_variants_cpu_2core.json"
MODEL_TASKS = ("ioi", "greater_than", "docstring", "induction")
KNOWN = "known_answer"  # the induction task on assets/circuits/induction-3l, truth = its attention roles
TASKS = (*MODEL_TASKS, KNOWN)
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


def build_cache(handle: ModelHandle, task: str, folder: Path, log: Any, roles: Any = None) -> None:
    """Head outputs (every read), per-pair patching effects and attributions for one task; written to `folder`.
    `roles` (the known-answer model's attention roles) is recorded as that task's truth."""
    t0 = time.perf_counter()
    data = make_task("induction" if task == KNOWN else task, handle.tokenizer, n=N_PAIRS, seed=DATA_SEED)
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
        "task": task, "model": "assets/circuits/induction-3l" if task == KNOWN else handle.identity.name, "n_pairs": N_PAIRS, "data_seed": DATA_SEED,
        "paired": prep.paired, "n_layers": handle.facts.n_layers, "n_heads": handle.facts.n_heads,
        "performance": perf.to_json(),
        "read_s": round(read_s, 2), "build_s": round(time.perf_counter() - t0, 1),
        "example_positive": data.positives[0].prompt, "example_negative": data.negatives[0],
        "roles": None if roles is None else roles.mask().ravel().tolist(),
    }  # fmt: skip
    (folder / "meta.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    log(f"{task}: cached in {meta['build_s']} s")


def load_cache(folder: Path) -> TaskCache:
    t = load_file(str(folder / "data.safetensors"))
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    gap = t["clean"] - (t["corrupt"] if meta["paired"] else t["corrupt"].mean())
    effects = t["effects"]
    truth = (effects.mean(0).abs() >= GT_FRAC * abs(float(gap.mean()))).numpy().ravel()
    if meta.get("roles") is not None:  # the known-answer model: the attention roles, independent of patching
        truth = np.asarray(meta["roles"], dtype=bool)
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


def ensure_known_cache(root: Path) -> Path:
    from headscope.circuits import known

    folder = _task_folder(root, "induction-3l", KNOWN)
    if not (folder / "meta.json").exists() or missing_reads(folder):
        handle = ModelHandle.load(str(known.model_path()), device="cpu")
        build_cache(handle, KNOWN, folder, _log, known.head_roles(handle))
    return folder


def ensure_model_caches(root: Path, tasks: list[str]) -> dict[str, Path]:
    folders = {t: _task_folder(root, "smollm2-135m", t) for t in tasks if t in MODEL_TASKS}
    handle = None
    for t, f in folders.items():
        if not (f / "meta.json").exists():
            handle = handle or ModelHandle.load("smollm2-135m", device="cpu")
            build_cache(handle, t, f, _log)
        elif missing_reads(f):
            handle = handle or ModelHandle.load("smollm2-135m", device="cpu")
            add_reads(handle, t, f, _log)
    if KNOWN in tasks:
        folders[KNOWN] = ensure_known_cache(root)
    return folders


def missing_reads(folder: Path) -> bool:
    from safetensors import safe_open

    with safe_open(str(folder / "data.safetensors"), "pt") as f:
        keys = set(f.keys())
        return any(f"x_{r}" not in keys for r in READS)


# ---- the study ---------------------------------------------------------------------------------------------------
def sae_acts(c: TaskCache, r: Resolved, seed: int, l1: float, store: Path) -> tuple[torch.Tensor, float, Any]:
    """The latent activations of a trained SAE on every example (trained once per training key and seed, kept on
    disk: variants that differ only in how codes are scored share it), its training seconds, its HeadScaling."""
    key = f"{r.read}_{r.norm}_n{r.n_train}_L{r.sae.n_latents}_e{r.sae.epochs}_s{seed}"
    f = store / f"{key}.safetensors"
    scaling = head_scaling(c.x[r.read], r.norm, c.n_heads)
    if f.exists():
        t = load_file(str(f))
        return t["acts"], float(t["train_s"]), scaling
    x = scaling.apply(c.x[r.read])
    t0 = time.perf_counter()
    trained = train_sae(
        x[train_rows(x.shape[0], r.n_train, seed)].reshape(-1, x.shape[-1]), r.sae, seed, l1=l1
    )
    train_s = time.perf_counter() - t0
    acts = latent_acts(trained, x)
    store.mkdir(parents=True, exist_ok=True)
    save_file({"acts": acts.contiguous(), "train_s": torch.tensor(train_s)}, str(f))
    return acts, train_s, scaling


def fit_one(c: TaskCache, v: SAEVariant, seed: int, store: Path) -> tuple[np.ndarray, Any, float]:
    """(node scores, Stored, seconds: SAE training + scoring on the cached head outputs)."""
    r = v.resolve("mean", 10, SAEConfig())
    n_pos = c.x[r.read].shape[0] // 2
    t0 = time.perf_counter()
    if not v.uses_sae:
        stored = baseline_stored(normalise(c.x[r.read], r.norm, c.n_heads), n_pos, c.paired)
        return node_scores(v, stored), stored, time.perf_counter() - t0
    acts, train_s, _ = sae_acts(c, r, seed, task_l1("induction" if c.name == KNOWN else c.name), store)
    t0 = time.perf_counter()
    stored = sae_stored(acts, n_pos, c.paired, r.code, r.k)
    return node_scores(v, stored), stored, train_s + time.perf_counter() - t0


def bootstrap(c: TaskCache, v: SAEVariant, stored: Any, n_boot: int, seed: int) -> list[float]:
    """ROC-AUCs over resamples of the prompt pairs (the SAE fixed; the patching truth resampled with the pairs,
    the known-answer roles fixed)."""
    n_pairs, gen = c.effects.shape[0], torch.Generator().manual_seed(1000 + seed)
    out = []
    for _ in range(n_boot):
        idx = torch.randint(0, n_pairs, (n_pairs,), generator=gen)
        neg = idx if c.paired else torch.randint(0, n_pairs, (n_pairs,), generator=gen)
        truth = c.truth
        if c.meta.get("roles") is None:
            eff = c.effects[idx].mean(0).abs().numpy().ravel()
            truth = eff >= GT_FRAC * abs(float(c.gap[idx].mean()))
        auc = roc_auc(resampled_scores(v, stored, idx, neg), truth)
        if auc is not None:
            out.append(auc)
    return out


def _ci(values: list[float]) -> list[float] | None:
    return None if len(values) < 10 else [round(float(q), 4) for q in np.quantile(values, [0.025, 0.975])]


def run_variant(c: TaskCache, v: SAEVariant, seeds: list[int], n_boot: int, store: Path) -> dict[str, Any]:
    """Per seed: ROC-AUC, its 95 % bootstrap interval, ties among the top 20, seconds; then mean, spread and the
    interval of the pooled replicates (a baseline has no seed: computed once, the same for every seed)."""
    rows, pooled = [], []
    for seed in seeds if v.uses_sae else seeds[:1]:
        scores, stored, secs = fit_one(c, v, seed, store)
        boot = bootstrap(c, v, stored, n_boot, seed)
        pooled += boot
        rows.append({"seed": seed, "roc_auc": round(float(roc_auc(scores, c.truth) or 0), 4), "ci95": _ci(boot),
                     "ties_top20": ties_in_top(scores, 20), "sae_s": round(secs, 2)})  # fmt: skip
    aucs = [r["roc_auc"] for r in rows]
    return {
        "seeds": rows, "mean": round(float(np.mean(aucs)), 4), "std": round(float(np.std(aucs)), 4),
        "min": min(aucs), "max": max(aucs), "ci95_pooled": _ci(pooled),
        "ties_top20_max": max(r["ties_top20"] for r in rows), "sae_s_mean": round(float(np.mean([r["sae_s"] for r in rows])), 2),
    }  # fmt: skip


def task_summary(c: TaskCache) -> dict[str, Any]:
    grad = {
        m: round(float(roc_auc(g.mean(0).abs().numpy().ravel(), c.truth) or 0), 4)
        for m, g in c.gradient.items()
    }
    return {
        "model": c.meta["model"], "truth": "attention roles" if c.meta.get("roles") else "activation patching",
        "truth_heads": int(c.truth.sum()), "heads": int(c.truth.size), "paired": c.paired,
        "read_s": c.meta["read_s"], "performance": c.meta["performance"], "gradient_roc_auc": grad,
    }  # fmt: skip


def study(
    folders: dict[str, Path], names: list[str], seeds: list[int], n_boot: int, save: Any = None
) -> dict[str, Any]:
    """Every variant on every task; `save(partial)` after each variant × task, so a stopped run keeps its cells."""
    results: dict[str, dict[str, Any]] = {n: {} for n in names}
    tasks = {}
    for task, folder in folders.items():
        c = load_cache(folder)
        tasks[task] = task_summary(c)
        for name in names:
            results[name][task] = run_variant(c, VARIANTS[name], seeds, n_boot, folder / "sae_acts")
            _log(f"{task} {name}: {results[name][task]['mean']} ± {results[name][task]['std']}")
            if save is not None:
                save({"tasks": tasks, "results": results})
    return {"tasks": tasks, "results": results}


def missing_cells(results: dict[str, dict[str, Any]], tasks: list[str]) -> list[str]:
    """The variant × task cells a (stopped or partial) run did not reach."""
    return [f"{n} × {t}" for n, per_task in results.items() for t in tasks if t not in per_task]


GOALS = {"ioi": 0.85, "greater_than": 0.85, "docstring": 0.85, "induction": 0.85, KNOWN: 0.9}


def summarise(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per variant over the tasks it ran on: the mean of its per-task mean ROC-AUC, its worst task, the tasks
    where it meets the goal, whether its top 20 are ever tied; SAE variants ranked by mean (worst task breaks
    ties). The default shipped in CircuitConfig is named with its goal status."""
    rows = {}
    for name, per_task in results.items():
        means = {t: r["mean"] for t, r in per_task.items()}
        if not means:
            continue
        rows[name] = {
            "mean_over_tasks": round(float(np.mean(list(means.values()))), 4),
            "worst_task": min(means, key=lambda t: means[t]), "worst": min(means.values()),
            "goal_met": {t: m >= GOALS[t] for t, m in means.items() if t in GOALS},
            "no_ties_top20": all(r["ties_top20_max"] == 0 for r in per_task.values()),
            "sae": VARIANTS[name].uses_sae,
        }  # fmt: skip
    ranked = sorted(
        (n for n in rows if rows[n]["sae"]), key=lambda n: (-rows[n]["mean_over_tasks"], -rows[n]["worst"])
    )
    default = CircuitConfig().sae_variant
    return {"goals": GOALS, "per_variant": rows, "sae_variants_ranked": ranked, "default": default,
            "default_summary": rows.get(default)}  # fmt: skip


def time_sae_step(names: list[str], rounds: int) -> dict[str, Any]:
    """The SAE step as `circuits run --task ioi` runs it (CLI defaults: 24 pairs; read the heads, train, score
    sae_node and sae_edge: `finder.sae_methods`), per variant, interleaved with rotating order on this machine."""
    handle = ModelHandle.load("smollm2-135m", device="cpu")
    prep = patching.prepare(handle, make_task("ioi", handle.tokenizer, n=N_PAIRS, seed=DATA_SEED))
    calls = {n: (lambda n=n: sae_methods(handle, prep, CircuitConfig(sae_variant=n), "ioi")) for n in names}
    timing = conditions.interleaved(calls, rounds, warmup=False)
    if "reference" in names:
        timing["ratio_to_reference"] = {
            n: conditions.ratio(timing, n, "reference") for n in names if n != "reference"
        }
    return timing


def merge(parts: list[Path], out: Path) -> None:
    """Partial runs (tasks split over processes) as one result: tasks and per-variant results joined, each part's
    conditions kept."""
    docs = [json.loads(p.read_text(encoding="utf-8")) for p in parts]
    merged = {k: docs[0][k] for k in ("setup", "variants")}
    merged["conditions"] = {"parts": [d["conditions"] for d in docs]}
    merged["setup"]["parts"] = [  # each part's own tasks, seeds and bootstrap size (they may differ)
        {"tasks": list(d["tasks"]), "seeds": d["setup"]["seeds"], "n_bootstrap": d["setup"]["n_bootstrap"],
         "partial": d.get("partial", False)} for d in docs
    ]  # fmt: skip
    merged["tasks"] = {t: v for d in docs for t, v in d["tasks"].items()}
    merged["variants"] = {n: v for d in docs for n, v in d["variants"].items()}
    merged["results"] = {
        n: {t: r for d in docs for t, r in d["results"].get(n, {}).items()} for n in merged["variants"]
    }
    merged["summary"] = summarise(merged["results"])
    merged["missing"] = missing_cells(merged["results"], list(TASKS))
    out.write_text(json.dumps(merged, indent=1) + "\n", encoding="utf-8")


def table(doc: dict[str, Any]) -> str:
    """The results as a markdown table (README): per variant × task, mean ± sd over seeds and the pooled 95 %
    bootstrap interval; '—' where the cell did not run."""
    tasks = [t for t in TASKS if t in doc["tasks"]]
    lines = ["| variant | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
    for name, per_task in doc["results"].items():
        cells = []
        for t in tasks:
            r = per_task.get(t)
            ci = r and r["ci95_pooled"]
            cells.append(
                "—"
                if r is None
                else f"{r['mean']:.3f} ± {r['std']:.3f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
            )
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage", choices=["cache", "all", "merge", "time", "table"], default="all")
    ap.add_argument("--rounds", type=int, default=3, help="time: interleaved rounds")
    ap.add_argument("--parts", nargs="*", type=Path, default=[], help="merge: partial results to combine")
    ap.add_argument("--cache", type=Path, default=default_cache())
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--n-bootstrap", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    if args.stage == "table":
        print(table(json.loads(args.out.read_text(encoding="utf-8"))))
        return
    cond = conditions.start(args.threads)
    if args.stage == "time":
        names = [VARIANTS.check(n, field="--variants") for n in args.variants.split(",")]
        conditions.write({"sae_step_ioi": time_sae_step(names, args.rounds)}, args.out, cond)
        return
    tasks = [t for t in args.tasks.split(",") if t in TASKS]
    folders = ensure_model_caches(args.cache, tasks)
    if args.stage == "cache":
        _log(f"cache ready under {args.cache} ({cond['load_average_before']} load before)")
        return
    if args.stage == "merge":
        merge(args.parts, args.out)
        return
    names = [VARIANTS.check(n, field="--variants") for n in args.variants.split(",")]
    header = {"setup": _setup(args), "variants": _variant_info(names)}

    def save_partial(partial: dict[str, Any]) -> None:  # written as the run goes; the final write replaces it
        doc = {"conditions": conditions.finish(cond), **header, **partial, "partial": True,
               "missing": missing_cells(partial["results"], tasks)}  # fmt: skip
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")

    out = study(folders, names, list(range(args.seeds)), args.n_bootstrap, save_partial)
    conditions.write({**header, **out, "summary": summarise(out["results"]), "missing": []}, args.out, cond)


def _setup(args: argparse.Namespace) -> dict[str, Any]:
    return {"n_pairs": N_PAIRS, "data_seed": DATA_SEED, "gt_frac": GT_FRAC, "seeds": list(range(args.seeds)),
             "n_bootstrap": args.n_bootstrap, "run_defaults": {"read": "mean", "n_train": 10, "sae": asdict(SAEConfig())},
             "sae_s": "SAE training + scoring on cached head outputs (reading the heads: tasks.*.read_s, all reads "
                      "in one forward per side); timings are under the recorded load, not final figures"}  # fmt: skip


def _variant_info(names: list[str]) -> dict[str, Any]:
    return {n: {"summary": VARIANTS[n].summary, "motivation": VARIANTS[n].motivation,
                "settings": VARIANTS[n].resolve("mean", 10, SAEConfig()).to_json()} for n in names}  # fmt: skip


if __name__ == "__main__":
    main()
