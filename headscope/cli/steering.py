"""`headscope steer ...`: contrastive vectors, LoFiT training and application. Prints JSON with --json.

File arguments (--pos/--neg/--data, --out/--vectors) exist only here: the app never takes a path.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from headscope.cli.common import emit, model_args, read_lines, writable_dir


def _text(payload: dict[str, Any], indent: str = "") -> str:
    lines = []
    for k, v in payload.items():
        if isinstance(v, dict):
            lines.append(f"{indent}{k}:\n{_text(v, indent + '  ')}")
        else:
            lines.append(f"{indent}{k}: {v}")
    return "\n".join(lines)


def _progress() -> tuple[Callable[[str, int, int, float], None], Callable[[], None]]:
    """A tqdm bar on stderr per training phase."""
    from tqdm import tqdm

    bars: dict[str, Any] = {}

    def on_step(phase: str, step: int, total: int, loss: float) -> None:
        if phase not in bars:
            for bar in bars.values():
                bar.close()
            bars[phase] = tqdm(total=total, desc=f"lofit {phase}", leave=False)
        bars[phase].update(1)
        bars[phase].set_postfix(loss=f"{loss:.3f}")

    def close() -> None:
        for bar in bars.values():
            bar.close()

    return on_step, close


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


def cmd_contrastive(args: argparse.Namespace) -> None:
    from headscope.models import ModelHandle
    from headscope.steering import vectors
    from headscope.steering.contrastive import ContrastiveConfig, SteerConfig, compare, contrastive_vector
    from headscope.steering.generate import GenConfig

    pos, neg = read_lines(args.pos, "positive"), read_lines(args.neg, "negative")
    steer = SteerConfig(args.alpha, args.position)  # validate before loading a model
    gen = GenConfig(args.max_new_tokens)
    cfg = ContrastiveConfig(args.layer, args.pooling)
    out = writable_dir(args.out) if args.out else None
    with _stages(["load model", "vector", "generate + effect"]) as advance:
        handle = ModelHandle.load(args.model, device=args.device)
        advance()
        cv = contrastive_vector(handle, pos, neg, cfg)
        advance()
        result = compare(handle, cv, args.prompt, pos, neg, steer, gen)
        advance()
    if out is not None:
        vectors.save(out, *vectors.contrastive_meta(handle, cv, steer))
    emit(result.to_json(), args.json, _text)


def cmd_lofit_train(args: argparse.Namespace) -> None:
    from headscope.models import ModelHandle
    from headscope.steering import vectors
    from headscope.steering.lofit import LofitConfig, lofit
    from headscope.steering.tasks import load_pairs_file, load_task

    cfg = LofitConfig(
        k=args.heads, scale_steps=args.scale_steps, bias_steps=args.bias_steps, batch_size=args.batch_size,
        seed=args.seed, random_baseline=not args.no_random,
    )  # fmt: skip
    task = load_task(args.task) if args.data is None else load_pairs_file(args.data, seed=args.seed)
    out = writable_dir(args.out) if args.out else None
    handle = ModelHandle.load(args.model, device=args.device)
    on_step, close = _progress()
    try:
        result = lofit(handle, task, cfg, on_step)
    finally:
        close()
    payload = result.to_json()
    if out is not None:
        path = vectors.save(out, *vectors.lofit_meta(handle, result.offsets, result.data_hash))
        payload["vectors"] = str(path)
    emit(payload, args.json, _text)


def cmd_lofit_apply(args: argparse.Namespace) -> None:
    from headscope.models import ModelHandle
    from headscope.steering import vectors
    from headscope.steering.generate import GenConfig, generate

    meta, tensors = vectors.load(args.vectors)
    gen = GenConfig(args.max_new_tokens)
    model = args.model or str(meta.model.get("name"))
    with _stages(["load model", "unsteered", "steered"]) as advance:
        handle = ModelHandle.load(model, device=args.device)
        offsets = vectors.to_offsets(meta, tensors, handle)  # refuses another model
        ids = handle.tokenize(args.prompt)
        advance()
        plain = generate(handle, ids, gen)
        advance()
        steered = generate(handle, ids, gen, lambda _start: offsets.hooks(handle.facts.n_heads))
        advance()
    payload = {
        "model": handle.identity.name,
        "heads": [{"layer": layer, "head": head} for layer, head in offsets.heads],
        "unsteered": plain.to_json(),
        "steered": steered.to_json(),
    }
    emit(payload, args.json, _text)


def register(sub: Any) -> None:
    steer = sub.add_parser("steer", help="steering: contrastive vectors (GLOV / CAA) and LoFiT head offsets")
    ssub = steer.add_subparsers(dest="steer_command", required=True)

    p = ssub.add_parser(
        "contrastive", help="mean(pos) − mean(neg) at one layer's resid_post; steer a generation"
    )
    model_args(p)
    p.add_argument("--pos", required=True, help="plain-text file, one positive example per line")
    p.add_argument("--neg", required=True, help="plain-text file, one negative example per line")
    p.add_argument("--layer", type=int, required=True)
    p.add_argument("--alpha", type=float, required=True, help="steering strength, finite, in [-100, 100]")
    p.add_argument("--prompt", required=True)
    p.add_argument("--pooling", choices=["mean", "last"], default="mean")
    p.add_argument("--position", choices=["last", "all"], default="last")
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.add_argument(
        "--out", default=None, help="also save the vector (safetensors + JSON sidecar) in this folder"
    )
    p.set_defaults(func=cmd_contrastive)

    lofit_p = ssub.add_parser("lofit", help="LoFiT: select heads, learn per-head offsets")
    lsub = lofit_p.add_subparsers(dest="lofit_command", required=True)
    p = lsub.add_parser("train", help="train on a built-in task or a JSONL file of {prompt, target}")
    model_args(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--task", help="built-in task: ioi or antonyms")
    src.add_argument("--data", help='JSONL file, one {"prompt", "target"} object a line')
    p.add_argument(
        "--heads", type=int, default=None, help="K heads to tune (default: 3%% of heads, at least 1)"
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
    p.add_argument("--prompt", required=True)
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.set_defaults(func=cmd_lofit_apply)
