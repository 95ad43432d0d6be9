"""Decoding benchmark by prompt category on the default model, CPU: MAT and wall speed-up against greedy per
strategy and category, every ratio against greedy measured in the same run on the same prompts.

What the code does:
- categories: the 7 sets of assets/prompts/categories.json (summarization, rag, qa, translation, multi_turn,
  math_reasoning, code_edit), `--prompts` per category (3), rendered through the model's chat template;
  `--max-new-tokens` (64) per run;
- per prompt, every candidate — transformers `generate` (greedy, SDPA), greedy, greedy recording attention
  entropy, token_recycling, ngram, lookahead, jacobi, layer_skip (its skip set searched once per (model,
  category) and cached: the warm-up run of a category's first prompt pays the search — outside the timed
  rounds — and every timed run reuses it; the cache file persists, so a later run of the bench searches nothing;
  each category's `skip_sources` says where its sets came from) — runs once as a warm-up and then `--rounds` (3) times through `bench/conditions.interleaved`, whose order rotates every round
  (the baseline is not always first); a candidate's wall time is its median over the rounds;
- on summarization, token_recycling also runs at every `--tree-sizes` size (interleaved with the rest): the size
  with the best wall speed-up on this machine is reported (`tree_size_best_wall`), with the MAT of each size;
- MAT = generated tokens / target forwards (not a timing: the same on any machine); wall speed-up = greedy's
  summed median wall time / the strategy's over the category's prompts; `identical_to_greedy` counts prompts
  where a lossless strategy's tokens equal greedy's (and greedy's equal `generate`'s);
- greedy / generate: the median over every (prompt, round) of the paired ratio;
- AWRS on the regex `[0-9]{3}-[0-9]{4}` at temperature 1 for `--awrs-seeds` seeds, the masking baseline's
  constraint evaluations beside it, one SMC run;
- goals (issue 25), each with its value and held / missed: token_recycling MAT ≥ 2.0 on summarization and ≥ 1.6
  averaged over categories; token_recycling wall ≥ 1.3× greedy on summarization; layer_skip wall ≥ 1.0× greedy
  on summarization; greedy ≤ 1.05× generate; every lossless strategy identical to greedy on every prompt.
Conditions (commit, threads, load before/after, command, `quiet`) through bench/conditions.py. Prints one JSON
object and writes bench/results/decoding_cpu_2core.json.

`--parts DIR` makes a long run resumable (the full run is 21 prompts × ~10 candidates × 4 runs): each prompt's
rows are written to DIR/<category>_<i>.json with that prompt's own conditions (commit, load before and after)
as soon as it is measured, and a restarted run with the same settings reads the prompts already there instead of
measuring them again. The result then lists every part's conditions under `parts`, and `quiet` holds only if
every part was quiet.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repo root holds `bench`
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import regex
import torch
from tqdm import tqdm

from bench import conditions
from headscope.decoding import DecodeConfig, Trace, decode
from headscope.decoding.prompts import CATEGORIES, load_categories, render_messages
from headscope.models import ModelHandle, resolve
from headscope.models.loading import load_hf

OUT = Path(__file__).parent / "results" / "decoding_cpu_2core.json"
LOSSLESS = ("token_recycling", "ngram", "lookahead", "jacobi", "layer_skip")
PHONE = r"[0-9]{3}-[0-9]{4}"
PHONE_PROMPT = "Make up a phone number for a pizza shop, written like 555-1234."


def generate(plain, ids: list[int], n: int) -> list[int]:
    with torch.inference_mode():
        out = plain.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False)
    return out[0, len(ids) :].tolist()


def candidates(handle, plain, ids: list[int], cfg: DecodeConfig, category: str, sizes: list[int]) -> tuple:
    """name → a run of it on this prompt; `last` keeps each one's latest trace (tokens, forwards)."""
    last: dict[str, object] = {}

    def run(name: str, strategy: str, c: DecodeConfig):
        def go() -> None:
            last[name] = decode(handle, ids, strategy, c)

        return go

    def gen() -> None:
        last["generate"] = generate(plain, ids, cfg.max_new_tokens)

    out = {"generate": gen, "greedy": run("greedy", "greedy", cfg)}
    out["greedy_attention_entropy"] = run(
        "greedy_attention_entropy", "greedy", replace(cfg, attention_entropy=True)
    )
    for name in LOSSLESS:
        out[name] = run(name, name, replace(cfg, task=category) if name == "layer_skip" else cfg)
    for n in sizes if category == "summarization" else []:
        out[f"token_recycling@{n}"] = run(
            f"token_recycling@{n}", "token_recycling", replace(cfg, tree_size=n)
        )
    return out, last


def run_prompt(handle, plain, ids, cfg, category, sizes, rounds) -> dict:
    fns, last = candidates(handle, plain, ids, cfg, category, sizes)
    timing = conditions.interleaved(fns, rounds=rounds)
    ref = last["generate"]
    greedy = last["greedy"]
    assert isinstance(greedy, Trace) and isinstance(ref, list)
    rows = {}
    for name, wall in timing["median_s"].items():
        t = last[name]
        tokens, forwards = (len(t), len(t)) if isinstance(t, list) else (len(t.token_ids), t.target_forwards)
        same = (t if isinstance(t, list) else list(t.token_ids)) == (
            ref if name == "greedy" else list(greedy.token_ids)
        )
        rows[name] = {"tokens": tokens, "forwards": forwards, "wall": wall, "same": same}
        if isinstance(t, Trace) and t.layer_skip is not None:
            rows[name].update(skip_layers=t.layer_skip.skip_layers, skip_source=t.layer_skip.source)
    rows["greedy_over_generate"] = [
        a / b for a, b in zip(timing["times_s"]["greedy"], timing["times_s"]["generate"], strict=True)
    ]
    rows["orders"] = timing["orders"][:2]
    return rows


def measured(parts: Path | None, key: str, settings: dict, measure) -> tuple[dict, dict | None]:
    """One prompt's rows: read from `parts/key.json` when an earlier run with the same settings wrote it, else
    measured now (and written there). Returns the rows and that prompt's conditions (None without `parts`)."""
    path = parts / f"{key}.json" if parts else None
    if path and path.exists():
        saved = json.loads(path.read_text())
        if saved["settings"] == settings:
            return saved["rows"], saved["conditions"]
    cond = conditions.start()
    rows = measure()
    if path is None:
        return rows, None
    done = conditions.finish(cond)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"settings": settings, "conditions": done, "rows": rows}))
    return rows, done


def summarise(per_prompt: list[dict]) -> dict[str, dict]:
    names = [k for k in per_prompt[0] if k not in ("greedy_over_generate", "orders")]
    base = sum(p["greedy"]["wall"] for p in per_prompt)
    out = {}
    for name in names:
        rows = [p[name] for p in per_prompt]
        speed = base / sum(r["wall"] for r in rows)
        out[name] = {
            "MAT": round(sum(r["tokens"] for r in rows) / sum(r["forwards"] for r in rows), 3),
            "wall_speedup_vs_greedy": round(speed, 3),
            "below_1x": speed < 1.0,
            "identical_to_greedy": sum(r["same"] for r in rows),
            "prompts": len(rows),
            **({"skip_sets": [r["skip_layers"] for r in rows], "skip_sources": [r["skip_source"] for r in rows]}
               if "skip_layers" in rows[0] else {}),
        }  # fmt: skip
    return out


def awrs_phone(handle, seeds: int) -> dict:
    ids = handle.tokenize(render_messages(handle, [{"role": "user", "content": PHONE_PROMPT}]))[0].tolist()
    eos = handle.tokenizer.eos_token_id
    ok, evals, toks = 0, 0, 0
    for seed in range(seeds):
        t = decode(
            handle,
            ids,
            "constrained",
            DecodeConfig(max_new_tokens=16, temperature=1.0, seed=seed, regex=PHONE),
        )
        body = t.token_ids[:-1] if t.token_ids and t.token_ids[-1] == eos else t.token_ids
        ok += regex.fullmatch(PHONE, handle.decode(body)) is not None
        evals, toks = evals + t.constraint_evals, toks + len(t.token_ids)
    base = DecodeConfig(max_new_tokens=16, temperature=1.0, seed=0, regex=PHONE)
    mask = decode(handle, ids, "constrained", replace(base, constraint_method="mask"))
    smc = decode(handle, ids, "constrained", replace(base, particles=4))
    return {
        "seeds": seeds, "succeeded": ok, "awrs_evals_per_token": round(evals / max(toks, 1), 2),
        "mask_evals_per_token": round(mask.constraint_evals / max(len(mask.token_ids), 1), 2),
        "smc": {"text": smc.text, "resampled": sum(r.resampled for r in smc.smc)},
    }  # fmt: skip


def goal(value: float, bar: float, at_least: bool = True) -> dict:
    return {
        "value": value,
        "goal": f"{'≥' if at_least else '≤'} {bar}",
        "held": value >= bar if at_least else value <= bar,
    }


def goals(categories: dict, ratios: list[float]) -> dict:
    s = categories.get("summarization", {})
    tr_mats = [c["token_recycling"]["MAT"] for c in categories.values()]
    same = all(c[n]["identical_to_greedy"] == c[n]["prompts"] for c in categories.values() for n in c
               if n in ("greedy", *LOSSLESS) or n.startswith("token_recycling"))  # fmt: skip
    out = {
        "token_recycling_MAT_averaged": goal(round(statistics.mean(tr_mats), 3), 1.6),
        "greedy_over_generate": goal(round(statistics.median(ratios), 3), 1.05, at_least=False),
        "lossless_identical_to_greedy_on_every_prompt": {"value": same, "goal": "true", "held": same},
    }
    if s:
        out["token_recycling_MAT_summarization"] = goal(s["token_recycling"]["MAT"], 2.0)
        out["token_recycling_wall_summarization"] = goal(s["token_recycling"]["wall_speedup_vs_greedy"], 1.3)
        out["layer_skip_wall_summarization"] = goal(s["layer_skip"]["wall_speedup_vs_greedy"], 1.0)
    return out


def tree_sizes(summary: dict) -> dict:
    sweep = {k.split("@")[1]: v for k, v in summary.items() if k.startswith("token_recycling@")}
    if not sweep:
        return {}
    best = max(sweep, key=lambda n: sweep[n]["wall_speedup_vs_greedy"])
    return {"sizes": {n: {"MAT": v["MAT"], "wall_speedup_vs_greedy": v["wall_speedup_vs_greedy"]} for n, v in sweep.items()},
            "tree_size_best_wall": int(best)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--prompts", type=int, default=3, help="prompts per category")
    ap.add_argument("--categories", default=",".join(CATEGORIES))
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2, help="torch threads for every run (generate included)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds per prompt (≥ 3)")
    ap.add_argument(
        "--tree-sizes", default="8,16,24,32,48,80", help="token_recycling sizes swept on summarization"
    )
    ap.add_argument(
        "--tree-size", type=int, default=DecodeConfig().tree_size, help="token_recycling's size elsewhere"
    )
    ap.add_argument("--awrs-seeds", type=int, default=20)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--parts", type=Path, default=None, help="folder of per-prompt results: resumable runs")
    args = ap.parse_args()
    cond = conditions.start(args.threads)
    t0 = time.perf_counter()
    handle = ModelHandle.load(args.model, device="cpu")
    plain = load_hf(resolve(args.model)).model.eval()
    plain.config._attn_implementation = "sdpa"  # generate's default attention
    plain.generation_config.pad_token_id = handle.tokenizer.eos_token_id
    cfg = DecodeConfig(max_new_tokens=args.max_new_tokens, max_draft=8, tree_size=args.tree_size)
    sizes = [int(x) for x in args.tree_sizes.split(",") if x.strip()]
    cats = [c.strip() for c in args.categories.split(",") if c.strip()]
    prompts = load_categories()
    bar = tqdm(total=len(cats) * args.prompts, desc="prompts", file=sys.stderr)
    settings = {"model": args.model, "threads": args.threads, "rounds": args.rounds, "config": cfg.to_json(),
                "tree_sizes": sizes}  # fmt: skip
    ratios, orders, parts = [], [], {}
    per_prompt: dict[str, list[dict]] = {cat: [] for cat in cats}
    for i in range(args.prompts):  # prompt-major: a run stopped early has every category at equal depth
        for cat in cats:
            ids = handle.tokenize(render_messages(handle, prompts[cat][i].messages))[0].tolist()
            rows, part = measured(
                args.parts, f"{cat}_{i}", {**settings, "ids": ids},
                lambda ids=ids, cat=cat: run_prompt(handle, plain, ids, cfg, cat, sizes, args.rounds),
            )  # fmt: skip
            per_prompt[cat].append(rows)
            if part is not None:
                parts[f"{cat}_{i}"] = part
            ratios += rows["greedy_over_generate"]
            orders = orders or rows["orders"]
            bar.update(1)
    categories = {cat: summarise(rows) for cat, rows in per_prompt.items()}
    bar.close()
    result = {
        "model": args.model, "prompts_per_category": args.prompts, "max_new_tokens": args.max_new_tokens,
        "rounds": args.rounds, "round_orders_example": orders, "config": cfg.to_json(), "categories": categories,
        "token_recycling_tree_sizes": tree_sizes(categories.get("summarization", {})),
        "awrs": awrs_phone(handle, args.awrs_seeds) if args.awrs_seeds else None,
        "goals": goals(categories, ratios), "total_s": round(time.perf_counter() - t0, 1),
    }  # fmt: skip
    if parts:
        result["parts"] = parts
    conditions.write(result, args.out, cond, parts_quiet=all(p["quiet"] for p in parts.values()))


if __name__ == "__main__":
    main()
