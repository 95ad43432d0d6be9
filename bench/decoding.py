"""Decoding benchmark by prompt category, on the default model, CPU — every ratio against a baseline measured in
the same run, on the same prompts, with the same thread count.

Per category (summarization, rag, qa, translation, multi_turn, math_reasoning, code_edit; prompts from
assets/prompts/categories.json through the model's chat template) and strategy: MAT (mean accepted tokens per
target forward), wall-time speed-up over greedy, and exact equality with plain transformers `generate` (greedy,
SDPA attention: its default) on every prompt. Baselines per prompt, interleaved A/B/A/B and the faster of each
pair kept: `generate` vs greedy. Also: the cost of recording per-head attention entropy (greedy with it / without
it); layer skip's measured draft cost against (1 − skipped fraction) + 0.1, with the skip set searched on each
prompt and, SWIFT-style, the set found on a category's first prompt reused on the others; AWRS on the regex
`[0-9]{3}-[0-9]{4}` at temperature 1 for 20 seeds, with the masking baseline's constraint evaluations beside it;
one SMC run. Prints one JSON object and writes bench/results/decoding_cpu_2core.json.
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

import regex
import torch
from tqdm import tqdm

from headscope.decoding import DecodeConfig, Trace, decode
from headscope.decoding.prompts import CATEGORIES, load_categories, render_messages
from headscope.models import ModelHandle, resolve
from headscope.models.loading import load_hf

OUT = Path(__file__).parent / "results" / "decoding_cpu_2core.json"
SPECULATIVE = ("ngram", "jacobi", "lookahead", "layer_skip")
PHONE = r"[0-9]{3}-[0-9]{4}"
PHONE_PROMPT = "Make up a phone number for a pizza shop, written like 555-1234."


def load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def generate(plain, ids: list[int], n: int) -> tuple[list[int], float]:
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = plain.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False)
    return out[0, len(ids) :].tolist(), time.perf_counter() - t0


def run_prompt(handle, plain, ids: list[int], cfg: DecodeConfig, skip_set: str | None) -> dict[str, dict]:
    """Every run on one prompt; baselines interleaved (generate, greedy, generate, greedy), the faster kept."""
    rows: dict[str, dict] = {}
    gen_runs, greedy_runs = [], []
    for _ in range(2):
        gen_runs.append(generate(plain, ids, cfg.max_new_tokens))
        greedy_runs.append(decode(handle, ids, "greedy", cfg))
    ref = gen_runs[0][0]
    rows["generate"] = {
        "tokens": len(ref),
        "forwards": len(ref),
        "wall": min(w for _, w in gen_runs),
        "same": True,
    }
    greedy = min(greedy_runs, key=lambda t: t.wall_s)
    rows["greedy"] = _row(greedy, ref)
    rows["greedy_attention_entropy"] = _row(
        decode(handle, ids, "greedy", _with(cfg, attention_entropy=True)), ref
    )
    for name in SPECULATIVE:
        rows[name] = _row(decode(handle, ids, name, cfg), ref)
    if skip_set is not None:
        rows["layer_skip_reused_set"] = _row(
            decode(handle, ids, "layer_skip", _with(cfg, skip_layers=skip_set)), ref
        )
    return rows


def _with(cfg: DecodeConfig, **kw) -> DecodeConfig:
    from dataclasses import replace

    return replace(cfg, **kw)


def _row(trace: Trace, ref: list[int]) -> dict:
    row = {
        "tokens": len(trace.token_ids),
        "forwards": trace.target_forwards,
        "wall": trace.wall_s,
        "same": list(trace.token_ids) == ref,
        "drafted": trace.n_drafted,
        "accepted": sum(s.n_draft_accepted for s in trace.steps),
    }
    if trace.layer_skip is not None:
        r = trace.layer_skip
        row.update(draft_cost=trace.draft_cost, fraction=r.fraction, share=r.compute_share,
                   skip_layers=r.skip_layers, search_forwards=r.search_forwards)  # fmt: skip
    return row


def summarise(per_prompt: list[dict[str, dict]]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    greedy_wall = sum(p["greedy"]["wall"] for p in per_prompt)
    for name in per_prompt[0]:
        rows = [p[name] for p in per_prompt if name in p]
        walls = sum(r["wall"] for r in rows)
        base = sum(p["greedy"]["wall"] for p in per_prompt if name in p) if name != "greedy" else greedy_wall
        s = {
            "MAT": round(sum(r["tokens"] for r in rows) / sum(r["forwards"] for r in rows), 3),
            "wall_speedup_vs_greedy": round(base / walls, 3),
            "identical_to_generate": sum(r["same"] for r in rows),
            "prompts": len(rows),
            "wall_s": round(walls, 2),
        }
        drafted = sum(r.get("drafted", 0) for r in rows)
        if drafted:
            s["acceptance_rate"] = round(sum(r["accepted"] for r in rows) / drafted, 3)
        if "draft_cost" in rows[0]:
            s["draft_cost_median"] = round(statistics.median(r["draft_cost"] for r in rows), 3)
            s["skipped_fraction"] = round(statistics.mean(r["fraction"] for r in rows), 3)
            s["skipped_compute_share"] = round(statistics.mean(r["share"] for r in rows), 3)
            s["draft_cost_bar"] = round(1 - s["skipped_fraction"] + 0.1, 3)
            s["skip_sets"] = [r["skip_layers"] for r in rows]
        out[name] = s
    return out


def awrs_phone(handle, seeds: int) -> dict:
    ids = handle.tokenize(render_messages(handle, [{"role": "user", "content": PHONE_PROMPT}]))[0].tolist()
    eos = handle.tokenizer.eos_token_id
    ok, evals, toks, texts = 0, 0, 0, []
    for seed in range(seeds):
        t = decode(
            handle,
            ids,
            "constrained",
            DecodeConfig(max_new_tokens=16, temperature=1.0, seed=seed, regex=PHONE),
        )
        body = t.token_ids[:-1] if t.token_ids and t.token_ids[-1] == eos else t.token_ids
        ok += regex.fullmatch(PHONE, handle.decode(body)) is not None
        evals += t.constraint_evals
        toks += len(t.token_ids)
        texts.append(t.text)
    mask = decode(handle, ids, "constrained", DecodeConfig(max_new_tokens=16, temperature=1.0, seed=0, regex=PHONE,
                                                           constraint_method="mask"))  # fmt: skip
    smc = decode(handle, ids, "constrained", DecodeConfig(max_new_tokens=16, temperature=1.0, seed=0, regex=PHONE,
                                                          particles=4))  # fmt: skip
    return {
        "seeds": seeds,
        "succeeded": ok,
        "awrs_evals_per_token": round(evals / toks, 2),
        "mask_evals_per_token": round(mask.constraint_evals / len(mask.token_ids), 2),
        "samples": texts[:5],
        "smc": {
            "text": smc.text,
            "resampled": sum(r.resampled for r in smc.smc),
            "ess": [round(r.ess, 3) for r in smc.smc],
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--prompts", type=int, default=3, help="prompts per category")
    ap.add_argument("--categories", default=",".join(CATEGORIES))
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for every run (generate included)")
    ap.add_argument("--awrs-seeds", type=int, default=20)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load_start, t0 = load_avg(), time.perf_counter()
    handle = ModelHandle.load(args.model, device="cpu")
    plain = load_hf(resolve(args.model)).model.eval()
    plain.config._attn_implementation = "sdpa"  # generate's default attention
    plain.generation_config.pad_token_id = handle.tokenizer.eos_token_id
    cfg = DecodeConfig(max_new_tokens=args.max_new_tokens, max_draft=8, window=6)
    cats = [c.strip() for c in args.categories.split(",") if c.strip()]
    prompts = load_categories()
    bar = tqdm(total=len(cats) * args.prompts, desc="prompts", file=sys.stderr)
    categories, all_rows = {}, []
    for cat in cats:
        per_prompt, skip_set = [], None
        for item in prompts[cat][: args.prompts]:
            ids = handle.tokenize(render_messages(handle, item.messages))[0].tolist()
            rows = run_prompt(handle, plain, ids, cfg, skip_set)
            skip_set = skip_set or rows["layer_skip"]["skip_layers"]
            rows["prompt_tokens"] = {"n": len(ids)}
            per_prompt.append({k: v for k, v in rows.items() if k != "prompt_tokens"})
            bar.update(1)
        categories[cat] = summarise(per_prompt)
        all_rows += per_prompt
        print(json.dumps({cat: categories[cat]}), file=sys.stderr, flush=True)
    bar.close()
    overall = summarise(all_rows)
    awrs = awrs_phone(handle, args.awrs_seeds)
    out = {
        "model": args.model,
        "device": "cpu",
        "threads": args.threads,
        "prompts_per_category": args.prompts,
        "max_new_tokens": args.max_new_tokens,
        "config": cfg.to_json(),
        "load_average_start": load_start,
        "load_average_end": load_avg(),
        "categories": categories,
        "overall": overall,
        "awrs": awrs,
        "bars": bars(categories, overall, awrs),
        "total_s": round(time.perf_counter() - t0, 1),
    }
    text = json.dumps(out)
    print(text)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


def bars(categories: dict, overall: dict, awrs: dict) -> dict:
    lossless = ("greedy", "greedy_attention_entropy", *SPECULATIVE, "layer_skip_reused_set")
    same = all(
        s["identical_to_generate"] == s["prompts"]
        for c in categories.values()
        for k, s in c.items()
        if k in lossless
    )
    ratio = overall["generate"]["wall_s"] and overall["greedy"]["wall_s"] / overall["generate"]["wall_s"]
    ls = overall["layer_skip"]
    out = {
        "lossless_identical_to_generate_on_every_prompt": same,
        "greedy_wall_vs_generate": round(ratio, 3),
        "greedy_within_1.1x_of_generate": ratio <= 1.1,
        "layer_skip_draft_cost": ls.get("draft_cost_median"),
        "layer_skip_draft_cost_bar": ls.get("draft_cost_bar"),
        "layer_skip_draft_cost_held": (ls.get("draft_cost_median") or 9) <= (ls.get("draft_cost_bar") or 0),
        "attention_entropy_cost": round(
            overall["greedy_attention_entropy"]["wall_s"] / overall["greedy"]["wall_s"], 3
        ),
        "awrs_phone_regex_succeeded": f"{awrs['succeeded']}/{awrs['seeds']}",
    }
    for cat in ("summarization", "rag"):
        if cat in categories:
            out[f"layer_skip_wall_speedup_{cat}"] = categories[cat]["layer_skip"]["wall_speedup_vs_greedy"]
    if "summarization" in categories:
        out["lookahead_MAT_summarization"] = categories["summarization"]["lookahead"]["MAT"]
        out["ngram_MAT_summarization"] = categories["summarization"]["ngram"]["MAT"]
    out["attention_entropy_cost_held"] = out["attention_entropy_cost"] <= 1.2
    return out


if __name__ == "__main__":
    main()
