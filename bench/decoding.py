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


def run_prompt(handle, plain, ids: list[int], cfg: DecodeConfig, skip_set: str | None, rounds: int) -> dict:
    """Every run on one prompt. Baselines in `rounds` interleaved rounds of (generate, greedy, greedy recording
    attention entropy): each round gives paired ratios; a baseline's wall time is its median over the rounds."""
    gen_runs, greedy_runs, ent_runs = [], [], []
    for _ in range(rounds):
        gen_runs.append(generate(plain, ids, cfg.max_new_tokens))
        greedy_runs.append(decode(handle, ids, "greedy", cfg))
        ent_runs.append(decode(handle, ids, "greedy", _with(cfg, attention_entropy=True)))
    ref = gen_runs[0][0]
    assert all(g[0] == ref for g in gen_runs)
    rows: dict = {
        "generate": {"tokens": len(ref), "forwards": len(ref), "wall": statistics.median(w for _, w in gen_runs),
                     "same": True},
        "greedy": _row(greedy_runs[0], ref, statistics.median(t.wall_s for t in greedy_runs)),
        "greedy_attention_entropy": _row(ent_runs[0], ref, statistics.median(t.wall_s for t in ent_runs)),
    }  # fmt: skip
    rows["greedy"]["same"] = all(list(t.token_ids) == ref for t in greedy_runs)
    rows["pairs"] = {
        "greedy_over_generate": [t.wall_s / w for t, (_, w) in zip(greedy_runs, gen_runs, strict=True)],
        "entropy_over_greedy": [e.wall_s / t.wall_s for e, t in zip(ent_runs, greedy_runs, strict=True)],
    }
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


def _row(trace: Trace, ref: list[int], wall: float | None = None) -> dict:
    row = {
        "tokens": len(trace.token_ids),
        "forwards": trace.target_forwards,
        "wall": trace.wall_s if wall is None else wall,
        "same": list(trace.token_ids) == ref,
        "drafted": trace.n_drafted,
        "accepted": sum(s.n_draft_accepted for s in trace.steps),
    }
    if trace.layer_skip is not None:
        r = trace.layer_skip
        row.update(draft_cost=trace.draft_cost, fraction=r.fraction, share=r.compute_share,
                   skip_layers=r.skip_layers, search_forwards=r.search_forwards)  # fmt: skip
    return row


def summarise(per_prompt: list[dict]) -> dict[str, dict]:
    """Per strategy over the prompts: MAT, wall speed-up over greedy (same prompts), equality with `generate`;
    the baselines' paired ratios as medians over every (prompt, round)."""
    out: dict[str, dict] = {}
    names = list(dict.fromkeys(k for p in per_prompt for k in p if k != "pairs"))
    for name in names:
        rows = [p[name] for p in per_prompt if name in p]
        walls = sum(r["wall"] for r in rows)
        base = sum(p["greedy"]["wall"] for p in per_prompt if name in p)
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
            s["draft_cost_bar_by_count"] = round(1 - s["skipped_fraction"] + 0.1, 3)
            s["draft_cost_bar_by_compute"] = round(1 - s["skipped_compute_share"] + 0.1, 3)
            s["skip_sets"] = [r["skip_layers"] for r in rows]
        out[name] = s
    for key in ("greedy_over_generate", "entropy_over_greedy"):
        ratios = [x for p in per_prompt for x in p["pairs"][key]]
        out.setdefault("paired_ratios", {})[key] = {
            "median": round(statistics.median(ratios), 3), "n": len(ratios),
            "quartiles": [round(q, 3) for q in statistics.quantiles(ratios, n=4)] if len(ratios) > 1 else None,
        }  # fmt: skip
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
    ap.add_argument("--rounds", type=int, default=3, help="interleaved baseline rounds per prompt")
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
            rows = run_prompt(handle, plain, ids, cfg, skip_set, args.rounds)
            skip_set = skip_set or rows["layer_skip"]["skip_layers"]
            per_prompt.append(rows)
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
        "rounds": args.rounds,
        "command": " ".join(["python bench/decoding.py", *sys.argv[1:]]),
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
    pairs = overall["paired_ratios"]
    ls = overall["layer_skip"]
    out = {
        "lossless_identical_to_generate_on_every_prompt": same,
        "greedy_wall_over_generate_paired_median": pairs["greedy_over_generate"]["median"],
        "greedy_wall_over_generate_summed": round(
            overall["greedy"]["wall_s"] / overall["generate"]["wall_s"], 3
        ),
        "greedy_within_1.1x_of_generate": pairs["greedy_over_generate"]["median"] <= 1.1,
        "layer_skip_draft_cost": ls["draft_cost_median"],
        "layer_skip_draft_cost_bar_by_count": ls["draft_cost_bar_by_count"],
        "layer_skip_draft_cost_held_by_count": ls["draft_cost_median"] <= ls["draft_cost_bar_by_count"],
        "layer_skip_draft_cost_bar_by_compute": ls["draft_cost_bar_by_compute"],
        "layer_skip_draft_cost_held_by_compute": ls["draft_cost_median"] <= ls["draft_cost_bar_by_compute"],
        "attention_entropy_cost_paired_median": pairs["entropy_over_greedy"]["median"],
        "attention_entropy_cost_held": pairs["entropy_over_greedy"]["median"] <= 1.2,
        "awrs_phone_regex_succeeded": f"{awrs['succeeded']}/{awrs['seeds']}",
        "awrs_phone_regex_held": awrs["succeeded"] == awrs["seeds"],
    }
    for cat in ("summarization", "rag"):
        if cat in categories:
            c = categories[cat]
            out[f"layer_skip_wall_speedup_{cat}"] = c["layer_skip"]["wall_speedup_vs_greedy"]
            if "layer_skip_reused_set" in c:
                out[f"layer_skip_reused_set_wall_speedup_{cat}"] = c["layer_skip_reused_set"][
                    "wall_speedup_vs_greedy"
                ]
    if "summarization" in categories:
        c = categories["summarization"]
        out["lookahead_MAT_summarization"] = c["lookahead"]["MAT"]
        out["lookahead_held"] = c["lookahead"]["MAT"] >= 1.2
        out["ngram_MAT_summarization"] = c["ngram"]["MAT"]
        out["ngram_held"] = c["ngram"]["MAT"] >= 1.5
    return out


if __name__ == "__main__":
    main()
