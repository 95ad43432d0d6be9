"""Circuit-discovery benchmark (issue 15), default model, CPU. Prints one JSON object and writes
bench/results/circuits_cpu_2core.json.

1. **Batched vs unbatched ground truth, same run, same 3 layers** (first, middle, last): the batched patching
   (one forward per layer holding one copy of the prompts per head, each starting at the patched layer) against
   the previous implementation (one head per forward, each from the embeddings). Goal ≥ 4×; both give the same
   effects (max |difference| reported).
2. **A whole `circuits run --task ioi`** at the CLI defaults (24 pairs; ground truth + all scored methods +
   faithfulness, no edges/stability): wall time and each part. Goals on a quiet machine: ground truth ≤ 120 s,
   whole run ≤ 240 s, SAE method ≤ 20 s.
3. **ROC-AUC before/after** on ioi, greater_than and docstring: "before" = the previous SAE (decoder atoms
   normalised only in a temporary copy inside forward, codes on the held-out examples only, L1 0.02 for every task),
   replicated here as the baseline; "after" = the reference SAE (stored weights renormalised each step, tangent
   gradients, codes over all examples, L1 per task) with decoder_norm reference_rows and atoms. Seeds vary the SAE
   (split and init) over the same prompts and the same ground truth. Also the gradient methods' AUC.
The machine is shared: the load average is recorded at the start and the end; times are noisy, ratios are not.

4. **Edges** (`--edges-only` runs this section alone and writes it under "edges", issue 22): on IOI (24 pairs, the
   CLI default), edge attribution over MIB's whole model graph by EAP and EAP-IG (5 steps), each timed end to end,
   then MIB's 10-point edge faithfulness curves of each method (circuits by signed score for CPR and by |score| for
   CMD, as MIB reports them), timed per method, with CPR/CMD and their bootstrap intervals. Goals on a quiet machine with 2 threads: EAP ≤ 30 s, EAP-IG ≤ 120 s, one curve ≤ 120 s; EAP-IG
   CMD ≤ 0.10 and CPR ≥ 1.0. Conditions (commit, threads, load before/after, command) are recorded through
   bench/conditions.py inside the section.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench.conditions` when run as a script

import torch
from torch import Tensor, nn
from tqdm import tqdm

from bench import conditions
from headscope.circuits import (
    CircuitConfig,
    SAEConfig,
    activation_patching,
    activation_patching_unbatched,
    edge_scores,
    find_circuit,
    make_task,
    node_scores,
    prepare,
    roc_auc,
    sae_methods,
)
from headscope.circuits.edges_run import edge_faithfulness, edge_methods
from headscope.circuits.known import known_answer_check
from headscope.circuits.known import model_path as induction_model_path
from headscope.models import ModelHandle

RESULTS = Path(__file__).parent / "results" / "circuits_cpu_2core.json"


def _advance(bar: tqdm, i: int) -> None:
    bar.update(i - bar.n)


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _stats(values: list[float | None]) -> dict:
    vals = [v for v in values if v is not None]
    if not vals:
        return {"mean": None, "std": None, "values": values}
    std = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return {
        "mean": round(statistics.mean(vals), 4),
        "std": round(std, 4),
        "values": [round(v, 4) for v in vals],
    }


# ---- 1. batched vs unbatched -------------------------------------------------------------------------------------
def speed(handle: ModelHandle, n_pairs: int) -> dict:
    prep = prepare(handle, make_task("ioi", handle.tokenizer, n=n_pairs, seed=0))
    n_l = handle.facts.n_layers
    layers = [0, n_l // 2, n_l - 1]
    t0 = time.perf_counter()
    batched = activation_patching(handle, prep, layers=layers).effects
    t_batched = time.perf_counter() - t0
    bar = tqdm(total=len(layers) * handle.facts.n_heads, desc="unbatched baseline", file=sys.stderr)
    t0 = time.perf_counter()
    old = activation_patching_unbatched(handle, prep, layers, lambda i, n: _advance(bar, i))
    t_old = time.perf_counter() - t0
    bar.close()
    return {
        "layers": layers, "n_pairs": n_pairs, "prompt_tokens": int(prep.clean.ids.shape[1]),
        "batched_s": round(t_batched, 2), "unbatched_s": round(t_old, 2), "speedup": round(t_old / t_batched, 2),
        "max_abs_diff": float((batched[layers] - old[layers]).abs().max()), "goal_speedup_min": 4,
    }  # fmt: skip


# ---- 3. the previous SAE, replicated as the baseline ------------------------------------------------------------
class _PreviousSAE(nn.Module):
    """The SAE before issue 15: atoms normalised in a temporary copy inside forward (stored weights never
    renormalised, no gradient projection)."""

    def __init__(self, d_in: int, n_latents: int, gen: torch.Generator):
        super().__init__()
        self.w_enc = nn.Parameter(torch.randn(n_latents, d_in, generator=gen))
        self.w_dec = nn.Parameter(torch.randn(d_in, n_latents, generator=gen))
        self.b_enc = nn.Parameter(torch.zeros(n_latents))
        self.b_tied = nn.Parameter(torch.zeros(d_in))

    def encode(self, x: Tensor) -> Tensor:
        w = self.w_enc / self.w_enc.norm(dim=1, keepdim=True)
        return torch.relu((x - self.b_tied) @ w.T + self.b_enc)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        f = self.encode(x)
        w = self.w_dec / self.w_dec.norm(dim=0, keepdim=True)
        return f @ w.T + self.b_tied, f


def previous_codes(x: Tensor, n_pos: int, seed: int, epochs: int) -> tuple[Tensor, Tensor]:
    """(codes of the held-out examples, their positive flags), as the previous finder computed them."""
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
    train, rest = perm[:10], perm[10:]
    rest = rest if len(rest) >= 2 else perm  # as before: too few left, codes on every example
    sae = _PreviousSAE(x.shape[-1], 200, torch.Generator().manual_seed(seed))
    opt = torch.optim.Adam(sae.parameters(), lr=1e-3)
    data = x[train].reshape(-1, x.shape[-1])
    with torch.enable_grad():
        for _ in range(epochs):
            opt.zero_grad()
            x_hat, f = sae(data)
            ((x_hat - data).pow(2).mean() + 0.02 * f.abs().sum(-1).mean()).backward()
            opt.step()
    with torch.no_grad():
        codes = sae.encode(x[rest].reshape(-1, x.shape[-1])).argmax(-1).reshape(len(rest), -1)
    return codes, rest < n_pos


def roc_before_after(handle: ModelHandle, task: str, n_pairs: int, seeds: int, epochs: int) -> dict:
    cfg = CircuitConfig(
        task=task, n_examples=n_pairs, faithfulness=task == "ioi", sae=SAEConfig(epochs=epochs)
    )
    t0 = time.perf_counter()
    result = find_circuit(handle, cfg)
    wall = time.perf_counter() - t0
    truth = result.ground_truth.mask().ravel()
    prep = prepare(handle, make_task(task, handle.tokenizer, n=n_pairs, seed=0))
    out: dict = {
        "performance": result.performance.to_json(), "ground_truth_heads": len(result.ground_truth.heads),
        "ground_truth_mode": result.ground_truth.mode, "run_wall_s": round(wall, 2),
        "runtime_s": {"ground_truth": round(result.ground_truth.runtime_s, 2)}
        | {m: round(v, 2) for m, v in result.runtime_s.items()},
        "gradient_roc_auc": {m: result.metrics[m].roc_auc for m in ("attribution_patching", "eap_ig")},
    }  # fmt: skip
    if result.faithfulness is not None:
        out["runtime_s"]["faithfulness"] = round(result.faithfulness.runtime_s, 2)
        out["faithfulness"] = {
            c.method: {"cpr": round(c.cpr, 4), "cmd": round(c.cmd, 4), "k80": c.k80}
            for c in result.faithfulness.curves
        }
    aucs: dict[str, list] = {}
    times: list[float] = []
    x = None
    for seed in tqdm(range(seeds), desc=f"{task}: SAE seeds", file=sys.stderr):
        for norm in ("reference_rows", "atoms"):
            run_cfg = CircuitConfig(
                task=task, n_examples=n_pairs, sae_seed=seed, sae=SAEConfig(epochs=epochs, decoder_norm=norm)
            )
            run = sae_methods(handle, prep, run_cfg, task)
            x = run.x
            if norm == "reference_rows":
                times.append(max(run.runtime.values()))  # end to end, the slower of node / edge
            for m, s in run.scores.items():
                aucs.setdefault(f"after_{norm}_{m}", []).append(roc_auc(s, truth))
        assert x is not None
        codes, positive = previous_codes(x, prep.clean.ids.shape[0], seed, epochs)
        aucs.setdefault("before_sae_node", []).append(roc_auc(node_scores(codes, positive).numpy(), truth))
        aucs.setdefault("before_sae_edge", []).append(roc_auc(edge_scores(codes, positive).numpy(), truth))
    out["sae_roc_auc"] = {k: _stats(v) for k, v in sorted(aucs.items())}
    out["sae_seconds_mean"] = round(statistics.mean(times), 2)
    return out


def known_answer(n_pairs: int) -> dict:
    """Each method's ROC-AUC against the attention-identified heads of the shipped induction model."""
    handle = ModelHandle.load(str(induction_model_path()), device="cpu")
    check = known_answer_check(
        handle, CircuitConfig(task="induction", n_examples=n_pairs, faithfulness=False)
    )
    return check.to_json()


# ---- 4. edges ------------------------------------------------------------------------------------------------------
def edges(handle: ModelHandle, n_pairs: int, n_bootstrap: int) -> dict:
    """EAP and EAP-IG over the whole graph, then each method's 10-point MIB curve, each timed alone."""
    prep = prepare(handle, make_task("ioi", handle.tokenizer, n=n_pairs, seed=0))
    out: dict = {"task": "ioi", "n_pairs": n_pairs, "prompt_tokens": int(prep.clean.ids.shape[1])}
    scored = {}
    for method in ("eap", "eap_ig"):
        bar = tqdm(total=1, desc=f"edges: {method}", file=sys.stderr)
        scored |= edge_methods(handle, prep, (method,))
        bar.update(1)
        bar.close()
    out["n_edges"] = int(next(iter(scored.values())).scores.size)
    out["seconds"] = {m: round(v.runtime_s, 2) for m, v in scored.items()}
    for method, body in scored.items():
        bar = tqdm(total=100, desc=f"edge curve: {method}", file=sys.stderr)

        def tick(i: int, n: int, bar: tqdm = bar) -> None:
            bar.update(round(100 * i / n) - bar.n)

        faith = edge_faithfulness(
            handle, prep, {method: body}, n_bootstrap=n_bootstrap, seed=0, progress=tick
        )
        bar.close()
        curve = faith.curves[0]
        out["seconds"][f"curve_{method}"] = round(faith.runtime_s, 2)
        out[method] = {
            "cpr": round(curve.cpr, 4), "cmd": round(curve.cmd, 4), "cpr_ci": curve.cpr_ci, "cmd_ci": curve.cmd_ci,
            "faithfulness_abs": [round(f, 4) for f in curve.faithfulness], "sizes": list(faith.sizes),
            "faithfulness_signed": [round(f, 4) for f in curve.signed_faithfulness],
            "kept_edges_abs": list(curve.kept_edges), "kept_edges_signed": list(curve.signed_kept_edges), "full_metric": round(faith.full_metric, 4),
            "empty_metric": round(faith.empty_metric, 4),
        }  # fmt: skip
    sec = out["seconds"]
    out["goals"] = {
        "eap_s_max": 30,
        "eap_ig_s_max": 120,
        "curve_s_max": 120,
        "eap_ig_cmd_max": 0.10,
        "eap_ig_cpr_min": 1.0,
    }
    out["goals_met"] = {
        "eap_s": sec["eap"] <= 30, "eap_ig_s": sec["eap_ig"] <= 120,
        "curve_s": max(sec["curve_eap"], sec["curve_eap_ig"]) <= 120,
        "eap_ig_cmd": out["eap_ig"]["cmd"] <= 0.10, "eap_ig_cpr": out["eap_ig"]["cpr"] >= 1.0,
        "timings_valid": "only on a quiet machine (conditions.quiet)",
    }  # fmt: skip
    return out


def run_edges_section(args: argparse.Namespace) -> None:
    cond = conditions.start(args.threads)
    handle = ModelHandle.load(args.model, device="cpu")
    section = edges(handle, args.n_examples, args.n_bootstrap)
    section["conditions"] = conditions.finish(cond)
    saved: dict = json.loads(RESULTS.read_text(encoding="utf-8")) if RESULTS.exists() else {}
    saved["edges"] = section
    _write(saved, args.no_write)
    print(json.dumps(section))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--n-examples", type=int, default=24, help="prompt pairs (the CLI default)")
    ap.add_argument("--seeds", type=int, default=5, help="SAE seeds for the before/after ROC-AUC")
    ap.add_argument("--epochs", type=int, default=500)
    ap.add_argument("--tasks", default="ioi,greater_than,docstring")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--no-known", dest="known", action="store_false", help="skip the known-answer check")
    ap.add_argument(
        "--known-only", action="store_true", help="only (re)run the known-answer section of the results"
    )
    ap.add_argument("--edges-only", action="store_true", help="only (re)run the edges section (issue 22)")
    ap.add_argument(
        "--n-bootstrap", type=int, default=200, help="edges: bootstrap resamples for CPR/CMD intervals"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.edges_only:
        run_edges_section(args)
        return
    if args.known_only:
        saved: dict = json.loads(RESULTS.read_text(encoding="utf-8")) if RESULTS.exists() else {}
        saved["known_answer"] = known_answer(args.n_examples) | {"load_avg": _load()}
        _write(saved, args.no_write)
        print(json.dumps(saved["known_answer"]))
        return
    handle = ModelHandle.load(args.model, device="cpu")
    out: dict = {
        "model": args.model, "device": "cpu", "threads": args.threads, "n_examples": args.n_examples,
        "seeds": args.seeds, "epochs": args.epochs, "tasks_run": args.tasks, "load_avg_start": _load(),
    }  # fmt: skip
    out["ground_truth_speed"] = speed(handle, args.n_examples)
    out["ground_truth_speed"]["load_avg_after"] = _load()
    # each section is written as it ends: a long run on a loaded machine keeps what it measured
    _write(out, args.no_write)
    out["tasks"] = {}
    for task in args.tasks.split(","):
        out["tasks"][task] = roc_before_after(handle, task, args.n_examples, args.seeds, args.epochs)
        out["tasks"][task]["load_avg_after"] = _load()
        _write(out, args.no_write)
    if args.known:
        out["known_answer"] = known_answer(args.n_examples)
    ioi = out["tasks"].get("ioi")
    if ioi is not None:
        gt, wall, sae = ioi["runtime_s"]["ground_truth"], ioi["run_wall_s"], ioi["sae_seconds_mean"]
        speed_out = out["ground_truth_speed"]
        # extrapolated, labelled so: the unbatched baseline costs the same for every layer
        speed_out["unbatched_all_layers_estimate_s"] = round(
            speed_out["unbatched_s"] * handle.facts.n_layers / 3, 1
        )
        speed_out["speedup_all_layers_estimate"] = round(speed_out["unbatched_all_layers_estimate_s"] / gt, 2)
        out["goals"] = {"ground_truth_s_max": 120, "run_s_max": 240, "sae_s_max": 20, "speedup_min": 4}
        out["goals_met"] = {
            "ground_truth": gt <= 120, "run": wall <= 240, "sae": sae <= 20,
            "speedup": out["ground_truth_speed"]["speedup"] >= 4,
        }  # fmt: skip
    out["load_avg_end"] = _load()
    _write(out, args.no_write)
    print(json.dumps(out))


def _write(out: dict, no_write: bool) -> None:
    if not no_write:
        RESULTS.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
