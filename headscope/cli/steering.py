"""`headscope steer ...`: contrastive vectors (at a layer's residual stream or at selected heads' outputs), saved
vectors applied, LoFiT training (optionally restricted to a head selection) and application. JSON with --json.

Every text input (--pos/--neg files, --prompt, --heads grammar, --data) is checked before a model is loaded.
File arguments (--pos/--neg/--data, --out/--vectors) exist only here: the app never takes a path.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from headscope.cli.common import emit, model_args, progress_bar, read_lines, writable_dir
from headscope.errors import InputError

_BARE_COUNT = re.compile(r"^\s*\d+\s*$")


def _text(payload: dict[str, Any], indent: str = "") -> str:
    lines = []
    for k, v in payload.items():
        if k == "tokens":
            continue  # the per-token strip is for --json and the app
        if isinstance(v, dict):
            lines.append(f"{indent}{k}:\n{_text(v, indent + '  ')}")
        else:
            lines.append(f"{indent}{k}: {v}")
    return "\n".join(lines)


@contextmanager
def _stages(names: list[str]) -> Iterator[Callable[[], None]]:
    """A stage-by-stage bar on stderr for jobs made of a few long steps."""
    from tqdm import tqdm

    bar = tqdm(total=len(names), desc=names[0], leave=False)

    def advance() -> None:
        bar.update(1)
        if bar.n < len(names):
            bar.set_description(names[bar.n])

    try:
        yield advance
    finally:
        bar.close()


def _heads_syntax(raw: str | None, *, lofit: bool = False) -> str | None:
    """Check a --heads value's grammar before loading a model; a bare number was LoFiT's old K."""
    from headscope.selection import parse_patterns

    if raw is None:
        return None
    if lofit and _BARE_COUNT.match(raw):
        raise InputError(
            f"--heads now selects heads (L.H, L.*, *.H, e.g. '9.4, 12.*'); "
            f"the number of heads to tune is --k: use --k {raw.strip()}"
        )
    if not parse_patterns(raw):
        raise InputError("--heads is empty: give heads like '9.4, 12.*'")
    return raw


def _pos_neg(args: argparse.Namespace, *, required: bool) -> tuple[list[str], list[str]] | tuple[None, None]:
    from headscope.steering.contrastive import check_texts

    if args.pos is None and args.neg is None and not required:
        return None, None
    if args.pos is None or args.neg is None:
        raise InputError("give both --pos and --neg (plain-text files, one example a line)")
    pos, neg = read_lines(args.pos, "positive"), read_lines(args.neg, "negative")
    return check_texts(pos, "positive"), check_texts(neg, "negative")


def cmd_contrastive(args: argparse.Namespace) -> None:
    from headscope.steering.contrastive import check_prompt
    from headscope.steering.direction import SteerConfig
    from headscope.steering.generate import GenConfig

    pos, neg = _pos_neg(args, required=True)
    prompt = check_prompt(args.prompt)
    heads = _heads_syntax(args.heads)
    steer = SteerConfig(args.alpha, args.position)
    gen = GenConfig(args.max_new_tokens)
    out = writable_dir(args.out) if args.out else None
    from headscope.models import ModelHandle
    from headscope.steering import vectors
    from headscope.steering.contrastive import ContrastiveConfig, compare, contrastive_vector

    with _stages(["load model", "vector", "generate + effect + cost"]) as advance:
        handle = ModelHandle.load(args.model, device=args.device)
        cfg = ContrastiveConfig(args.layer, args.pooling, None if heads is None else handle.head_set(heads))
        advance()
        sv = contrastive_vector(handle, pos, neg, cfg)  # type: ignore[arg-type]
        advance()
        result = compare(handle, sv, prompt, pos, neg, steer, gen)
        advance()
    payload = result.to_json()
    if out is not None:
        payload["vectors"] = str(vectors.save(out, *vectors.vector_meta(handle, sv, steer)))
    emit(payload, args.json, _text)


def cmd_contrastive_apply(args: argparse.Namespace) -> None:
    from headscope.steering import vectors
    from headscope.steering.contrastive import check_prompt
    from headscope.steering.direction import SteerConfig
    from headscope.steering.generate import GenConfig

    prompt = check_prompt(args.prompt)
    pos, neg = _pos_neg(args, required=False)
    gen = GenConfig(args.max_new_tokens)
    meta, tensors = vectors.load(args.vectors)
    position = args.position or meta.position or "last"
    steer = SteerConfig(meta.alpha if args.alpha is None else args.alpha, position)  # type: ignore[arg-type]
    from headscope.models import ModelHandle
    from headscope.steering.contrastive import compare

    with _stages(["load model", "generate + cost"]) as advance:
        handle = ModelHandle.load(args.model or str(meta.model.get("name")), device=args.device)
        sv, _saved = vectors.to_vector(meta, tensors, handle)  # refuses another model
        advance()
        result = compare(handle, sv, prompt, pos, neg, steer, gen)
        advance()
    emit({"model": handle.identity.name, **result.to_json()}, args.json, _text)


def cmd_lofit_train(args: argparse.Namespace) -> None:
    from headscope.steering.lofit import LofitConfig
    from headscope.steering.tasks import load_pairs_file, load_task

    heads = _heads_syntax(args.heads, lofit=True)
    cfg = LofitConfig(
        k=args.k, scale_steps=args.scale_steps, bias_steps=args.bias_steps, batch_size=args.batch_size,
        seed=args.seed, random_baseline=not args.no_random,
    )  # fmt: skip
    task = load_task(args.task) if args.data is None else load_pairs_file(args.data, seed=args.seed)
    out = writable_dir(args.out) if args.out else None
    from dataclasses import replace

    from headscope.models import ModelHandle
    from headscope.steering import vectors
    from headscope.steering.lofit import lofit

    handle = ModelHandle.load(args.model, device=args.device)
    if heads is not None:
        cfg = replace(cfg, heads=handle.head_set(heads))
    with progress_bar("lofit") as progress:
        result = lofit(handle, task, cfg, progress)
    payload = result.to_json()
    if out is not None:
        meta = vectors.lofit_meta(handle, result.offsets, result.data_hash, cfg.heads)
        payload["vectors"] = str(vectors.save(out, *meta))
    emit(payload, args.json, _text)


def cmd_lofit_apply(args: argparse.Namespace) -> None:
    from headscope.steering import vectors
    from headscope.steering.contrastive import check_prompt, token_strip
    from headscope.steering.generate import GenConfig

    prompt = check_prompt(args.prompt)
    meta, tensors = vectors.load(args.vectors)
    gen = GenConfig(args.max_new_tokens)
    from headscope.models import ModelHandle
    from headscope.selection import HeadSet
    from headscope.steering.cost import steering_cost
    from headscope.steering.generate import generate

    with _stages(["load model", "unsteered", "steered + cost"]) as advance:
        handle = ModelHandle.load(args.model or str(meta.model.get("name")), device=args.device)
        offsets = vectors.to_offsets(meta, tensors, handle)  # refuses another model
        hooks = offsets.hooks(handle.facts.n_heads)
        ids = handle.tokenize(prompt)
        advance()
        plain = generate(handle, ids, gen)
        advance()
        steered = generate(handle, ids, gen, lambda _start: hooks)
        cost = steering_cost(handle, ids, plain.token_ids, steered.token_ids, hooks)
        advance()
    payload = {
        "model": handle.identity.name,
        "heads": str(HeadSet.of(offsets.heads, handle.facts.n_layers, handle.facts.n_heads)),
        "unsteered": plain.to_json(),
        "steered": steered.to_json(),
        "cost": cost.to_json(),
        "tokens": token_strip(steered, cost),
    }
    emit(payload, args.json, _text)


def _generation_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prompt", default=None, help="text to continue (checked before the model loads)")
    p.add_argument("--max-new-tokens", type=int, default=24)


def _register_contrastive(ssub: Any) -> None:
    from headscope.steering.contrastive import DEFAULT_DEPTH
    from headscope.steering.direction import DEFAULT_ALPHA, DEFAULT_POSITION, MAX_ALPHA

    alpha_help = (
        f"steering strength relative to the activation norm at the site (α = 0.5 adds a vector half as long as "
        f"a typical residual there), in [-{MAX_ALPHA:g}, {MAX_ALPHA:g}]"
    )
    p = ssub.add_parser(
        "contrastive",
        help="v = mean(pos) − mean(neg) at a layer's resid_post or at selected heads' outputs; steer a generation",
        description="Build a contrastive vector and compare unsteered vs steered generation, with the effect "
        "and its cost. `steer contrastive apply --vectors DIR` applies a saved one.",
    )
    model_args(p)
    p.add_argument("--pos", default=None, help="plain-text file, one positive example a line")
    p.add_argument("--neg", default=None, help="plain-text file, one negative example a line")
    site = p.add_mutually_exclusive_group()
    site.add_argument(
        "--layer",
        type=int,
        default=None,
        help=f"resid_post of this layer (default: {DEFAULT_DEPTH:g} of depth)",
    )
    site.add_argument("--heads", default=None, help="steer these heads' outputs (hook_z): e.g. '9.4, 12.*'")
    p.add_argument(
        "--alpha", type=float, default=DEFAULT_ALPHA, help=f"{alpha_help} (default {DEFAULT_ALPHA:g})"
    )
    _generation_args(p)
    p.add_argument("--pooling", choices=["mean", "last"], default="mean")
    p.add_argument("--position", choices=["last", "all"], default=DEFAULT_POSITION)
    p.add_argument(
        "--out", default=None, help="also save the vector (safetensors + JSON sidecar) in this folder"
    )
    p.set_defaults(func=cmd_contrastive)
    csub = p.add_subparsers(dest="contrastive_command", required=False, metavar="{apply}")
    a = csub.add_parser(
        "apply", help="generate with a saved contrastive vector, side by side with the unsteered model"
    )
    model_args(a, default=None, help="defaults to the model named in the vectors' sidecar")
    a.add_argument("--vectors", required=True, help="folder written by `steer contrastive --out`")
    _generation_args(a)
    a.add_argument("--alpha", type=float, default=None, help=f"{alpha_help} (default: the saved α)")
    a.add_argument("--position", choices=["last", "all"], default=None, help="default: the saved position")
    a.add_argument("--pos", default=None, help="optional: positive examples, to report the effect")
    a.add_argument("--neg", default=None, help="optional: negative examples, to report the effect")
    a.set_defaults(func=cmd_contrastive_apply)


def register(sub: Any) -> None:
    steer = sub.add_parser("steer", help="steering: contrastive vectors (GLOV / CAA) and LoFiT head offsets")
    ssub = steer.add_subparsers(dest="steer_command", required=True)
    _register_contrastive(ssub)

    lofit_p = ssub.add_parser("lofit", help="LoFiT: select heads, learn per-head offsets")
    lsub = lofit_p.add_subparsers(dest="lofit_command", required=True)
    p = lsub.add_parser("train", help="train on a built-in task or a JSONL file of {prompt, target}")
    model_args(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--task", help="built-in task: ioi or antonyms")
    src.add_argument("--data", help='JSONL file, one {"prompt", "target"} object a line')
    p.add_argument(
        "--heads", default=None, help="restrict LoFiT to these heads, e.g. '9.*, 12.1' (default: all)"
    )
    p.add_argument(
        "--k", type=int, default=None, help="heads to tune (default: 3%% of all heads, at least 1)"
    )
    p.add_argument("--scale-steps", type=int, default=30)
    p.add_argument("--bias-steps", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-random", action="store_true", help="skip the random-heads baseline")
    p.add_argument(
        "--out", default=None, help="save the head offsets (safetensors + JSON sidecar) in this folder"
    )
    p.set_defaults(func=cmd_lofit_train)

    p = lsub.add_parser(
        "apply", help="generate with saved LoFiT offsets, side by side with the unsteered model"
    )
    model_args(p, default=None, help="defaults to the model named in the vectors' sidecar")
    p.add_argument("--vectors", required=True, help="folder written by `steer lofit train --out`")
    _generation_args(p)
    p.set_defaults(func=cmd_lofit_apply)
