"""`headscope decode compare`: several strategies on one prompt, lined up against greedy, as JSON.

`--heads 9.4,12.* --heads-action ablate|dial` runs the strategies on the model with that head set mean-ablated
(or dialled with the locality dial at `--lambda` / `--mode`), against greedy on the unchanged model, so the
comparison shows where the intervention changes the output; `--attention-entropy` adds every head's attention
entropy per generated token (and at the divergence).
"""

from __future__ import annotations

import argparse

from headscope.cli.common import emit, model_args, progress_bar
from headscope.errors import InputError

DEFAULT_STRATEGIES = "greedy,layer_skip,ngram,lookahead"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("decode", help="decoding strategies with one token-by-token trace")
    dsub = p.add_subparsers(dest="decode_command", required=True)
    c = dsub.add_parser("compare", help="run several strategies on one prompt and compare them with greedy")
    model_args(c)
    c.add_argument("--prompt", required=True)
    c.add_argument("--chat", action="store_true", help="wrap the prompt in the model's chat template")
    c.add_argument(
        "--strategies", default=DEFAULT_STRATEGIES, help=f"comma-separated (default {DEFAULT_STRATEGIES})"
    )
    c.add_argument("--max-new-tokens", default=32, help="1..256")
    c.add_argument("--temperature", default=0.0, help="0 = greedy")
    c.add_argument("--top-k", default=0)
    c.add_argument("--top-p", default=1.0)
    c.add_argument("--seed", default=0)
    c.add_argument("--draft-model", default=None, help="speculative: a model sharing the target's tokenizer")
    c.add_argument("--max-draft", default=6, help="longest draft per verifier pass (1..16)")
    c.add_argument("--window", default=6, help="jacobi / lookahead window")
    c.add_argument("--lookahead-n", default=4, help="lookahead n-gram size")
    c.add_argument("--skip-layers", default=None, help="layer_skip: a fixed skip set, e.g. a3,m5 (no search)")
    c.add_argument("--regex", default=None, help="constrained: regular expression")
    c.add_argument("--grammar", default=None, help="constrained: named grammar (json_object)")
    c.add_argument("--constraint-method", default="awrs", choices=["awrs", "mask"])
    c.add_argument("--particles", default=1, help="constrained: SMC particles (1 = no SMC)")
    c.add_argument("--attention-entropy", action="store_true", help="record per-head attention entropy")
    c.add_argument("--heads", default=None, help="head set to intervene on, e.g. '9.4, 12.*' (L.H, L.*, *.H)")
    c.add_argument("--heads-action", default="ablate", choices=["ablate", "dial"])
    c.add_argument(
        "--ablation", default="mean", choices=["mean", "zero"], help="ablate: mean over the prompt or zero"
    )
    c.add_argument("--lambda", dest="dial_lambda", default=1.0, help="dial: λ in [0, 1]")
    c.add_argument("--mode", dest="dial_mode", default="distance", choices=["distance", "block", "window"])
    c.set_defaults(func=cmd_compare)


def _config(args: argparse.Namespace):
    from headscope.decoding.config import DecodeConfig

    return DecodeConfig(
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
        seed=args.seed, max_draft=args.max_draft, window=args.window, lookahead_n=args.lookahead_n,
        skip_layers=args.skip_layers, draft_model=args.draft_model, regex=args.regex, grammar=args.grammar,
        constraint_method=args.constraint_method, particles=args.particles,
        attention_entropy=args.attention_entropy, heads=args.heads, heads_action=args.heads_action,
        ablation=args.ablation, dial_lambda=args.dial_lambda, dial_mode=args.dial_mode,
    )  # fmt: skip


def _lines(payload: dict) -> list[str]:
    out = [f"intervention: {payload['intervention']}"] if payload.get("intervention") else []
    for s in payload["strategies"]:
        same = (
            "same as greedy"
            if s["identical_to_greedy"]
            else f"departs from greedy at token {s['diverges_at']}"
        )
        out.append(
            f"{s['name']:12} tok/fwd {s['tokens_per_target_forward']:.2f}  tok/s {s['tokens_per_second']:.1f}  "
            f"{same}  {s['text']!r}"
        )
    return out


def cmd_compare(args: argparse.Namespace) -> None:

    from headscope.decoding.compare import compare, parse_strategies
    from headscope.decoding.prompts import render
    from headscope.models import DEFAULT_MODEL, ModelHandle

    cfg = _config(args)  # bad values fail before any model loads
    names = parse_strategies(args.strategies)
    if "speculative" in names and not args.draft_model:
        raise InputError("speculative needs --draft-model (a model sharing the target's tokenizer)")
    if not args.prompt.strip():
        raise InputError("the prompt is empty")
    handle = ModelHandle.load(args.model or DEFAULT_MODEL, device=args.device)
    if cfg.heads is not None:
        handle.head_set(cfg.heads)  # checked against the model's shape before any decoding
    draft = ModelHandle.load(args.draft_model, device=args.device) if args.draft_model else None
    ids = handle.tokenize(render(handle, args.prompt, chat=args.chat))[0].tolist()
    with progress_bar("decode") as progress:
        result = compare(handle, ids, names, cfg, draft=draft, progress=progress)
    payload = result.to_json()
    emit(payload, args.json, _lines(payload))
