"""`headscope steer ...`: contrastive vectors (at a layer's residual stream or at selected heads' outputs), saved
vectors applied, LoFiT training (optionally restricted to a head selection) and application. JSON with --json.

Every command is a frozen config (`ContrastiveRun`, `ContrastiveApply`, `LofitTrain`, `LofitApply`): `parse(argv)`
builds it from the command line, `to_argv(config)` is its exact inverse (`parse(to_argv(c)) == c`), and the
command runs from the config alone. Every text input (files, prompts, the --heads grammar, the instruction) is
checked before a model is loaded. File arguments exist only here: the app never takes a path.

Each run is read against baselines (`steering.side_by_side`): the table none / prompting / steering / steering +
prompting, with the held-out effect, the cost and 95 % bootstrap intervals; LoFiT adds the permutation test against
random head sets and says "better than random heads (p = …)" only at p < 0.05.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from headscope.cli.common import emit, model_args, progress_bar, writable_dir
from headscope.cli.steering_inputs import (
    Config,
    ContrastiveApply,
    ContrastiveRun,
    EvalOptions,
    Inputs,
    LofitApply,
    LofitTrain,
    ModelOptions,
    contrast_inputs,
    task_inputs,
    texts_from_files,
)
from headscope.errors import InputError
from headscope.progress import Progress, part

__all__ = [
    "Config",
    "ContrastiveApply",
    "ContrastiveRun",
    "EvalOptions",
    "Inputs",
    "LofitApply",
    "LofitTrain",
    "ModelOptions",
    "config_from_argv",
    "contrast_inputs",
    "eval_options",
    "evaluation_args",
    "parse",
    "register",
    "task_inputs",
    "to_argv",
]  # fmt: skip
# The config types `to_argv` writes (tests/unit/test_cli_argv.py checks `config_from_argv(to_argv(c)) == c`).
ARGV_CONFIGS = tuple(
    f"headscope.cli.steering_inputs:{c}"
    for c in ("ContrastiveRun", "ContrastiveApply", "LofitTrain", "LofitApply")
)


# ---- parse / to_argv -----------------------------------------------------------------------------------------------
def _model_options(args: argparse.Namespace) -> ModelOptions:
    return ModelOptions(
        args.model, args.device, args.device_map, args.max_memory, args.offload_dir, args.json
    )


def eval_options(args: argparse.Namespace) -> EvalOptions:
    return EvalOptions(
        args.task, tuple(args.prompt or ()), args.heldout_pos, args.heldout_neg, args.instruction,
        args.max_new_tokens, args.resamples, args.seed,
    )  # fmt: skip


def config_of(args: argparse.Namespace) -> Config:
    """The command's config from parsed arguments (every value checked; no model loaded)."""
    func = args.func
    if func is cmd_contrastive:
        return ContrastiveRun(
            _model_options(args), eval_options(args), args.pos, args.neg, args.layer, args.heads, args.alpha,
            args.position, args.pooling, args.out, tuple(args.pos_text or ()), tuple(args.neg_text or ()),
        )  # fmt: skip
    if func is cmd_contrastive_apply:
        return ContrastiveApply(
            args.vectors, _model_options(args), eval_options(args), args.alpha, args.position
        )
    if func is cmd_lofit_apply:
        return LofitApply(args.vectors, _model_options(args), eval_options(args))
    return LofitTrain(
        _model_options(args), args.task, args.data, args.heads, args.k, args.scale_steps, args.bias_steps,
        args.batch_size, args.seed, args.random_sets, args.eval_prompts, args.eval_tokens, args.resamples,
        args.instruction, args.out,
    )  # fmt: skip


def parse(argv: Sequence[str]) -> Config:
    from headscope.cli import build_parser

    return config_of(build_parser().parse_args(list(argv)))


config_from_argv = parse  # the name the to_argv harness looks for


def _opt(flag: str, value: Any) -> list[str]:
    """`--flag=value` (one word, so a value that starts with '-' stays a value); nothing for None."""
    return [] if value is None else [f"{flag}={value}"]


def _model_argv(m: ModelOptions) -> list[str]:
    out = [*_opt("--model", m.model), *_opt("--device", m.device), *_opt("--device-map", m.device_map)]
    out += [*_opt("--max-memory", m.max_memory), *_opt("--offload-dir", m.offload_dir)]
    return out + (["--json"] if m.json else [])


def _eval_argv(e: EvalOptions) -> list[str]:
    out = [*_opt("--task", e.task), *[a for p in e.prompts for a in _opt("--prompt", p)]]
    out += [*_opt("--heldout-pos", e.heldout_pos), *_opt("--heldout-neg", e.heldout_neg)]
    out += _opt("--instruction", e.instruction)
    out += [*_opt("--max-new-tokens", e.max_new_tokens), *_opt("--resamples", e.resamples)]
    return [*out, *_opt("--seed", e.seed)]


def to_argv(cfg: Config) -> list[str]:
    """The command line (after `headscope`) that `parse` turns back into exactly `cfg`."""
    if isinstance(cfg, ContrastiveRun):
        return ["steer", "contrastive", *_model_argv(cfg.model), *_eval_argv(cfg.evaluation),
                *_opt("--pos", cfg.pos), *_opt("--neg", cfg.neg), *_opt("--layer", cfg.layer),
                *_opt("--heads", cfg.heads), *_opt("--alpha", repr(cfg.alpha)), *_opt("--position", cfg.position),
                *_opt("--pooling", cfg.pooling), *_opt("--out", cfg.out),
                *[a for t in cfg.pos_texts for a in _opt("--pos-text", t)],
                *[a for t in cfg.neg_texts for a in _opt("--neg-text", t)]]  # fmt: skip
    if isinstance(cfg, ContrastiveApply):
        return ["steer", "contrastive", "apply", *_opt("--vectors", cfg.vectors), *_model_argv(cfg.model),
                *_eval_argv(cfg.evaluation), *_opt("--alpha", None if cfg.alpha is None else repr(cfg.alpha)),
                *_opt("--position", cfg.position)]  # fmt: skip
    if isinstance(cfg, LofitApply):
        return ["steer", "lofit", "apply", *_opt("--vectors", cfg.vectors), *_model_argv(cfg.model),
                *_eval_argv(cfg.evaluation)]  # fmt: skip
    numbers = ("scale_steps", "bias_steps", "batch_size", "seed", "random_sets", "eval_prompts", "eval_tokens",
               "resamples")  # fmt: skip
    return ["steer", "lofit", "train", *_model_argv(cfg.model), *_opt("--task", cfg.task), *_opt("--data", cfg.data),
            *_opt("--heads", cfg.heads), *_opt("--k", cfg.k),
            *[a for n in numbers for a in _opt(f"--{n.replace('_', '-')}", getattr(cfg, n))],
            *_opt("--instruction", cfg.instruction), *_opt("--out", cfg.out)]  # fmt: skip


# ---- text output ---------------------------------------------------------------------------------------------------
def _interval(name: str, m: dict[str, Any]) -> str:
    f = "+.3f" if name.endswith(("_effect", "_change", "margin")) else ".3f"
    return f"{m['value']:{f}} [{m['low']:{f}}, {m['high']:{f}}]"


def render(payload: dict[str, Any]) -> str:
    """The readable form: the first prompt side by side, the table with its intervals, and the verdict."""
    lines = [f"{k}: {v}" for k, v in payload.items() if not isinstance(v, dict | list)]
    for side in ("unsteered", "steered"):
        if side in payload:
            lines.append(f"{side}: {payload[side]['text']!r}")
    ev = payload.get("evaluation") or {}
    ev = ev if "rows" in ev else ev.get("evaluation")  # LoFiT nests its comparison
    if ev:
        lines.append(f"conditions over {len(ev['prompts'])} prompt(s), 95 % bootstrap intervals:")
        for row in ev["rows"]:
            lines.append(f"  {row['condition']}")
            lines += [f"    {name}: {_interval(name, m)}" for name, m in row["measures"].items()]
    if "verdict" in payload:
        lines.append(f"against chance: {payload['verdict']}")
    return "\n".join(lines)


# ---- commands ------------------------------------------------------------------------------------------------------
def _load(m: ModelOptions, fallback: str | None = None) -> Any:
    from headscope.models import ModelHandle

    return ModelHandle.load(m.model or str(fallback), device=m.device)


def _defining(cfg: ContrastiveRun) -> tuple[list[str], list[str]]:
    from headscope.steering.tasks import load_contrast

    if cfg.pos_texts:
        return list(cfg.pos_texts), list(cfg.neg_texts)
    if cfg.pos is not None or cfg.neg is not None:
        if cfg.pos is None or cfg.neg is None:
            raise InputError("give both --pos and --neg (plain-text files, one example a line)")
        return texts_from_files(cfg.pos, cfg.neg, "")
    if cfg.evaluation.task is None:
        raise InputError("give --pos and --neg (plain-text files, one example a line), or --task")
    cs = load_contrast(cfg.evaluation.task)
    return list(cs.positives), list(cs.negatives)


def contrastive_result(handle: Any, cfg: ContrastiveRun, progress: Progress | None = None) -> Any:
    """`steer contrastive` on a loaded model: the `Comparison` whose JSON the command prints (the app's
    in-process job runs exactly this)."""
    from headscope.steering.contrastive import ContrastiveConfig, compare_vector, contrastive_vector
    from headscope.steering.direction import SteerConfig

    pos, neg = _defining(cfg)
    inputs = contrast_inputs(cfg.evaluation, (pos, neg))
    steer = SteerConfig(cfg.alpha, cfg.position)  # type: ignore[arg-type]  (checked in the config)
    heads = None if cfg.heads is None else handle.head_set(cfg.heads)
    ccfg = ContrastiveConfig(cfg.layer, cfg.pooling, heads)  # type: ignore[arg-type]
    sv = contrastive_vector(handle, pos, neg, ccfg, progress=part(progress, 0.0, 0.1))
    return compare_vector(
        handle, sv, inputs.prompts, steer, inputs.sbs, texts=inputs.texts, progress=part(progress, 0.1, 1.0)
    )


def run_contrastive(cfg: ContrastiveRun) -> dict[str, Any]:
    from headscope.steering import vectors
    from headscope.steering.direction import SteerConfig

    contrast_inputs(cfg.evaluation, _defining(cfg))  # every input read and checked before the model loads
    out = writable_dir(cfg.out) if cfg.out else None
    handle = _load(cfg.model)
    with progress_bar("contrastive steering") as say:
        result = contrastive_result(handle, cfg, say)
    payload = result.to_json()
    if out is not None:
        steer = SteerConfig(cfg.alpha, cfg.position)  # type: ignore[arg-type]
        payload["vectors"] = str(vectors.save(out, *vectors.vector_meta(handle, result.vector, steer)))
    return payload


def run_contrastive_apply(cfg: ContrastiveApply) -> dict[str, Any]:
    from headscope.steering import vectors
    from headscope.steering.direction import SteerConfig
    from headscope.steering.heldout import HeldOut
    from headscope.steering.tasks import texts_hash

    meta, tensors = vectors.load(cfg.vectors)
    inputs = contrast_inputs(cfg.evaluation)
    if inputs.texts is not None:  # held out unless they are the very texts that built the vector
        same = texts_hash(list(inputs.texts.positives), list(inputs.texts.negatives)) == meta.data_hash
        inputs = Inputs(
            inputs.prompts, HeldOut(inputs.texts.positives, inputs.texts.negatives, not same), inputs.sbs
        )
    position: Any = cfg.position or meta.position or "last"
    steer = SteerConfig(meta.alpha if cfg.alpha is None else cfg.alpha, position)
    from headscope.steering.contrastive import compare_vector

    handle = _load(cfg.model, meta.model.get("name"))
    sv, _saved = vectors.to_vector(meta, tensors, handle)  # refuses another model
    with progress_bar("steering with a saved vector") as say:
        result = compare_vector(
            handle, sv, inputs.prompts, steer, inputs.sbs, texts=inputs.texts, progress=say
        )
    return {"model": handle.identity.name, **result.to_json()}


def lofit_task(cfg: LofitTrain) -> Any:
    """The task a `lofit train` config names (read and checked before any model loads)."""
    from dataclasses import replace

    from headscope.steering.tasks import load_pairs_file, load_task

    task = load_task(cfg.task) if cfg.task is not None else load_pairs_file(str(cfg.data), seed=cfg.seed)
    return task if cfg.instruction is None else replace(task, instruction=cfg.instruction)


def lofit_result(handle: Any, cfg: LofitTrain, progress: Progress | None = None, task: Any = None) -> Any:
    """`steer lofit train` on a loaded model: the `LofitResult` whose JSON the command prints (the app's
    in-process job runs exactly this)."""
    from headscope.steering.lofit import lofit

    lcfg = cfg.lofit_config(None if cfg.heads is None else handle.head_set(cfg.heads))
    return lofit(handle, task or lofit_task(cfg), lcfg, progress)


def run_lofit_train(cfg: LofitTrain) -> dict[str, Any]:
    from headscope.steering import vectors

    task = lofit_task(cfg)
    out = writable_dir(cfg.out) if cfg.out else None
    handle = _load(cfg.model)
    with progress_bar("lofit") as progress:
        result = lofit_result(handle, cfg, progress, task)
    payload = result.to_json()
    if out is not None:
        restricted = None if cfg.heads is None else handle.head_set(cfg.heads)
        meta = vectors.lofit_meta(handle, result.trained_offsets, result.data_hash, restricted)
        payload["vectors"] = str(vectors.save(out, *meta))
    return payload


def run_lofit_apply(cfg: LofitApply) -> dict[str, Any]:
    from headscope.steering import vectors
    from headscope.steering.lofit import apply_offsets

    meta, tensors = vectors.load(cfg.vectors)
    inputs = task_inputs(cfg.evaluation)
    handle = _load(cfg.model, meta.model.get("name"))
    offsets = vectors.to_offsets(meta, tensors, handle)  # refuses another model
    with progress_bar("LoFiT offsets") as say:
        result = apply_offsets(handle, offsets, inputs.prompts, inputs.sbs, items=inputs.items, progress=say)
    return {"model": handle.identity.name, **result.to_json()}


def cmd_contrastive(args: argparse.Namespace) -> None:
    emit(run_contrastive(config_of(args)), args.json, render)  # type: ignore[arg-type]


def cmd_contrastive_apply(args: argparse.Namespace) -> None:
    emit(run_contrastive_apply(config_of(args)), args.json, render)  # type: ignore[arg-type]


def cmd_lofit_train(args: argparse.Namespace) -> None:
    emit(run_lofit_train(config_of(args)), args.json, render)  # type: ignore[arg-type]


def cmd_lofit_apply(args: argparse.Namespace) -> None:
    emit(run_lofit_apply(config_of(args)), args.json, render)  # type: ignore[arg-type]


# ---- parsers -------------------------------------------------------------------------------------------------------
def evaluation_args(p: argparse.ArgumentParser, *, texts: bool = True) -> None:
    """The options every comparison shares (also used by `features steer`)."""
    p.add_argument("--prompt", action="append", default=None,
                   help="text to continue; repeat for several prompts (default: the --task's prompts)")  # fmt: skip
    p.add_argument("--task", default=None, help="built-in set: its prompts, held-out texts and instruction")
    if texts:
        p.add_argument("--heldout-pos", default=None, help="held-out positive texts (one a line), to measure")
        p.add_argument("--heldout-neg", default=None, help="held-out negative texts (one a line), to measure")
    else:
        p.set_defaults(heldout_pos=None, heldout_neg=None)
    p.add_argument("--instruction", default=None,
                   help="the prompting baseline's prefix (default: the task's; '' for none)")  # fmt: skip
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples for the 95 %% intervals")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")


def _register_contrastive(ssub: Any) -> None:
    alpha_help = (
        "steering strength relative to the activation norm at the site (α = 0.5 adds a vector half as long as "
        "a typical residual there), in [-10, 10]"
    )
    p = ssub.add_parser(
        "contrastive",
        help="v = mean(pos) − mean(neg) at a layer's resid_post or at selected heads' outputs; steer and compare",
        description="Build a contrastive vector and compare none / prompting / steering / steering + prompting "
        "on held-out texts, with cost and bootstrap intervals. `steer contrastive apply --vectors DIR` applies a "
        "saved one.",
    )
    model_args(p)
    p.add_argument(
        "--pos", default=None, help="plain-text file, one positive example a line (default: --task's)"
    )
    p.add_argument(
        "--neg", default=None, help="plain-text file, one negative example a line (default: --task's)"
    )
    p.add_argument("--pos-text", action="append", default=None,
                   help="a positive example itself; repeat for several (instead of --pos)")  # fmt: skip
    p.add_argument("--neg-text", action="append", default=None,
                   help="a negative example itself; repeat for several (instead of --neg)")  # fmt: skip
    site = p.add_mutually_exclusive_group()
    site.add_argument(
        "--layer", type=int, default=None, help="resid_post of this layer (default: 0.3 of depth)"
    )
    site.add_argument("--heads", default=None, help="steer these heads' outputs (hook_z): e.g. '9.4, 12.*'")
    p.add_argument("--alpha", type=float, default=0.2, help=f"{alpha_help} (default 0.2)")
    evaluation_args(p)
    p.add_argument("--pooling", choices=["mean", "last"], default="mean")
    p.add_argument("--position", choices=["last", "all"], default="last")
    p.add_argument(
        "--out", default=None, help="also save the vector (safetensors + JSON sidecar) in this folder"
    )
    p.set_defaults(func=cmd_contrastive)
    csub = p.add_subparsers(dest="contrastive_command", required=False, metavar="{apply}")
    a = csub.add_parser("apply", help="compare with a saved contrastive vector")
    model_args(a, default=None, help="defaults to the model named in the vectors' sidecar")
    a.add_argument("--vectors", required=True, help="folder written by `steer contrastive --out`")
    evaluation_args(a)
    a.add_argument("--alpha", type=float, default=None, help=f"{alpha_help} (default: the saved α)")
    a.add_argument("--position", choices=["last", "all"], default=None, help="default: the saved position")
    a.set_defaults(func=cmd_contrastive_apply)


def _register_lofit(ssub: Any) -> None:
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
    p.add_argument("--random-sets", type=int, default=20,
                   help="random head sets trained with the same budget, for the permutation test (0: none)")  # fmt: skip
    p.add_argument(
        "--eval-prompts", type=int, default=8, help="held-out prompts generated from, for the cost"
    )
    p.add_argument("--eval-tokens", type=int, default=8, help="tokens per continuation, for the cost")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples for the 95 %% intervals")
    p.add_argument("--instruction", default=None,
                   help="the prompting baseline's prefix (default: the task's; '' for none)")  # fmt: skip
    p.add_argument(
        "--out", default=None, help="save the head offsets (safetensors + JSON sidecar) in this folder"
    )
    p.set_defaults(func=cmd_lofit_train)

    p = lsub.add_parser("apply", help="compare with saved LoFiT offsets")
    model_args(p, default=None, help="defaults to the model named in the vectors' sidecar")
    p.add_argument("--vectors", required=True, help="folder written by `steer lofit train --out`")
    evaluation_args(p, texts=False)
    p.set_defaults(func=cmd_lofit_apply)


def register(sub: Any) -> None:
    steer = sub.add_parser("steer", help="steering: contrastive vectors (GLOV / CAA) and LoFiT head offsets")
    ssub = steer.add_subparsers(dest="steer_command", required=True)
    _register_contrastive(ssub)
    _register_lofit(ssub)
