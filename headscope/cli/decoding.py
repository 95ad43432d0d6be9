"""`headscope decode compare`: several strategies on one prompt, lined up against greedy, as JSON."""

from __future__ import annotations

import argparse
import json
import sys

from headscope.cli.common import model_args
from headscope.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("decode", help="decoding strategies with one token-by-token trace")
    dsub = p.add_subparsers(dest="decode_command", required=True)
    c = dsub.add_parser("compare", help="run several strategies on one prompt and compare them with greedy")
    model_args(c)
    c.add_argument("--prompt", required=True)
    c.add_argument("--chat", action="store_true", help="wrap the prompt in the model's chat template")
    c.add_argument("--strategies", default="greedy,layer_skip,ngram,jacobi")
    c.add_argument("--max-new-tokens", type=int, default=32)
    c.add_argument("--temperature", type=float, default=0.0)
    c.add_argument("--top-k", type=int, default=0)
    c.add_argument("--top-p", type=float, default=1.0)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--draft-model", default=None, help="speculative: a model sharing the target's tokenizer")
    c.add_argument("--max-draft", type=int, default=6)
    c.add_argument("--window", type=int, default=6, help="jacobi window")
    c.add_argument("--regex", default=None, help="constrained: regular expression")
    c.add_argument("--grammar", default=None, help="constrained: named grammar (json_object)")
    c.add_argument("--constraint-method", default="awrs", choices=["awrs", "mask"])
    c.set_defaults(func=cmd_compare)


def _config(args: argparse.Namespace):
    from headscope.decoding.config import DecodeConfig

    return DecodeConfig(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
        max_draft=args.max_draft,
        window=args.window,
        draft_model=args.draft_model,
        regex=args.regex,
        grammar=args.grammar,
        constraint_method=args.constraint_method,
    )


def cmd_compare(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from headscope.decoding.compare import compare, parse_strategies
    from headscope.decoding.prompts import render
    from headscope.models import DEFAULT_MODEL, ModelHandle

    cfg = _config(args)  # bad values fail before any model loads
    names = parse_strategies(args.strategies)
    if "speculative" in names and not args.draft_model:
        raise InputError("speculative needs --draft-model (a model sharing the target's tokenizer)")
    handle = ModelHandle.load(args.model or DEFAULT_MODEL, device=args.device)
    draft = ModelHandle.load(args.draft_model, device=args.device) if args.draft_model else None
    ids = handle.tokenize(render(handle, args.prompt, chat=args.chat))[0].tolist()
    bar = tqdm(total=len(set(names) | {"greedy"}), desc="decode", file=sys.stderr)

    def step(name: str) -> None:
        bar.set_postfix_str(name)
        bar.update(1)

    try:
        result = compare(handle, ids, names, cfg, draft=draft, progress=step)
    finally:
        bar.close()
    payload = result.to_json()
    if args.json:
        print(json.dumps(payload, indent=1))
        return
    for s in payload["strategies"]:
        print(
            f"{s['name']:12} tok/fwd {s['tokens_per_target_forward']:.2f}  tok/s {s['tokens_per_second']:.1f}  "
            f"same-as-greedy {s['identical_to_greedy']}  {s['text']!r}"
        )
