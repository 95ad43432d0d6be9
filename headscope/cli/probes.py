"""`headscope entropy` and `headscope locality sweep` (registered through `headscope.cli.CAPABILITY_COMMANDS`).

Both take the same locality-dial options (`_dial_options`): mode, schedule, β, layer weights, heads (HeadSet
grammar), strength and blocks; `entropy` takes one `--lambda`, the sweep a `--lambdas` grid.

`headscope locality view` is the app's entropy view (`probes.view.ViewConfig` → `EntropyView` JSON).

`to_argv(cfg, ...)` writes the command for an `EntropyConfig`, a `SweepConfig` or a `ViewConfig` and `config_from_argv(argv)` parses
it back (`config_from_argv(to_argv(c)) == c`, tests/unit/test_cli_argv.py): an app job carries that command, so a
cluster runs exactly what the tab would."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from headscope.cli.common import emit, model_args, numbers, progress_bar, text_or_file
from headscope.errors import InputError

ENTROPY_LIMITS = (
    "Token limits: the eager backend takes up to 2048 tokens (or the model's context if shorter: it holds N×N "
    "patterns); the fused backend takes up to the model's context length (8192 for smollm2-135m, 32768 for "
    "gemma3-270m), its memory is O(N). auto: fused above 512 tokens."
)


def register(sub: Any) -> None:
    from headscope.probes.backends import BACKENDS

    p = sub.add_parser(
        "entropy",
        help="attention entropy (bits) per layer × head of a text, optionally under a locality dial",
        description="Attention entropy per layer × head, optionally under a locality dial. " + ENTROPY_LIMITS,
    )
    model_args(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="the text to analyse")
    src.add_argument("--file", help="a UTF-8 text file to analyse")
    p.add_argument("--backend", choices=BACKENDS, default="auto", help=ENTROPY_LIMITS)
    p.add_argument("--lambda", dest="lam", default="0", help="dial value λ in [0, 1] (0: the model as is)")
    _dial_options(p)
    p.set_defaults(func=cmd_entropy)

    loc = sub.add_parser("locality", help="the inference-time locality dial")
    loc_sub = loc.add_subparsers(dest="locality_command", required=True)
    sweep = loc_sub.add_parser("sweep", help="λ sweep: entropy, pointer fidelity, perplexity, accuracy, KL")
    model_args(sweep)
    _sweep_parser(sweep)
    view = loc_sub.add_parser(
        "view", help="the app's entropy view: every probe metric per head, λ = 0 baseline"
    )
    model_args(view)
    _view_parser(view)


def _view_parser(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="the text to analyse")
    src.add_argument("--file", help="a UTF-8 text file to analyse")
    p.add_argument("--lambda", dest="lam", default="0", help="dial value λ in [0, 1] (0: the model as is)")
    _dial_options(p)
    p.add_argument("--show-heads", default="", help="heads whose per-token entropy is kept, e.g. '9.4, 12.1'")
    p.add_argument("--max-tokens", default="1024", help="refuse a longer text (at most 2048)")
    p.set_defaults(func=cmd_locality_view)


def view_config_from_args(args: argparse.Namespace) -> Any:
    from headscope.probes.view import ViewConfig

    return ViewConfig(dial_from_args(args, args.lam), args.show_heads.strip() or None, args.max_tokens)


def cmd_locality_view(args: argparse.Namespace) -> None:
    from headscope.models import ModelHandle
    from headscope.probes.view import entropy_view

    cfg = view_config_from_args(args)  # validate before loading a model
    text = text_or_file(args)
    if text is None or not text.strip():
        raise InputError("text is empty")
    handle = ModelHandle.load(args.model, device=args.device)
    with progress_bar("entropy view") as progress:
        view = entropy_view(handle, text, cfg.dial, max_tokens=cfg.max_tokens, shown=cfg.shown_heads(handle),
                            progress=progress)  # fmt: skip
    p = view.probes
    emit(
        view.to_json(),
        args.json,
        [f"{p.model}: {p.n_tokens} tokens, mean entropy {p.mean_entropy_bits:.3f} bits"],
    )


def _dial_options(p: argparse.ArgumentParser) -> None:
    from headscope.attention import BLOCK_SOURCES, MODES, SCHEDULES

    p.add_argument("--mode", choices=list(MODES), default="distance")
    p.add_argument("--schedule", choices=list(SCHEDULES), default="uniform")
    p.add_argument("--beta", default="1", help="progressive exponent β ≥ 1")
    p.add_argument("--layer-weights", default="", help="explicit schedule: one weight in [0, 1] per layer")
    p.add_argument(
        "--heads", default="", help="heads to dial, e.g. '9.4, 12.*' or '*.3' (default: every head)"
    )
    p.add_argument("--strength", default="1", help="s: nats per token (distance), ×10 nats (block)")
    p.add_argument(
        "--blocks", choices=list(BLOCK_SOURCES), default="sentence", help="block source (block mode)"
    )
    p.add_argument("--block-size", default="16", help="tokens per block for --blocks fixed")
    p.add_argument("--spans", default="", help="for --blocks spans: start:end,start:end in token indices")


def _sweep_parser(p: argparse.ArgumentParser) -> None:
    from headscope.attention import TARGETS

    src = p.add_mutually_exclusive_group()
    src.add_argument("--text", help="evaluation text (default: the shipped Wikipedia excerpt)")
    src.add_argument("--file", help="evaluation text file (UTF-8)")
    p.add_argument("--lambdas", default="0,0.25,0.5,0.75,1", help="comma-separated λ values in [0, 1] (≤ 21)")
    _dial_options(p)
    p.add_argument("--target", choices=list(TARGETS), default=None, help="pointer-fidelity target")
    p.add_argument("--max-tokens", type=int, default=256, help="cut the evaluation text to this many tokens")
    p.set_defaults(func=cmd_locality_sweep)


def _spans(raw: str) -> tuple[tuple[int, int], ...]:
    try:
        return tuple((int(a), int(b)) for a, b in (s.split(":") for s in raw.split(",") if s.strip()))
    except ValueError:
        raise InputError(f"--spans must look like 0:5,5:12, got {raw!r}") from None


def dial_from_args(args: argparse.Namespace, lam: Any = 0.0) -> Any:
    """The LocalityDial the options describe (validated here, before any model is loaded)."""
    from headscope.attention import BlockSpec, LocalityDial

    blocks = BlockSpec(source=args.blocks, size=args.block_size, spans=_spans(args.spans))
    return LocalityDial(
        lam=lam, mode=args.mode, schedule=args.schedule, beta=args.beta, heads=args.heads.strip() or None,
        strength=args.strength, layer_weights=numbers("--layer-weights", args.layer_weights), blocks=blocks,
    )  # fmt: skip


def entropy_config_from_args(args: argparse.Namespace) -> Any:
    from headscope.probes.report import EntropyConfig

    return EntropyConfig(backend=args.backend, dial=dial_from_args(args, args.lam))


def cmd_entropy(args: argparse.Namespace) -> None:
    from headscope.models import ModelHandle
    from headscope.probes.report import entropy_report

    cfg = entropy_config_from_args(args)  # validate before loading a model
    dial = cfg.dial
    text = text_or_file(args)
    if text is None or not text.strip():
        raise InputError("text is empty")
    handle = ModelHandle.load(args.model, device=args.device)
    payload = entropy_report(handle, text, backend=cfg.backend, dial=dial)
    head = f"{payload['model']}: {payload['n_tokens']} tokens, backend {payload['backend']}"
    if dial.lam > 0:
        head += f", dial λ = {dial.lam:g} ({dial.mode}, {dial.schedule}, heads {dial.heads_text or 'all'})"
    lines = [head] + [f"layer {layer:3d}: " + " ".join(f"{h:5.2f}" for h in row) for layer, row in
                      enumerate(payload["entropy_bits"])]  # fmt: skip
    lines.append(f"mean entropy: {payload['mean_entropy_bits']:.3f} bits")
    emit(payload, args.json, lines)


def sweep_config_from_args(args: argparse.Namespace) -> Any:
    from headscope.probes import SweepConfig

    return SweepConfig(
        lambdas=numbers("--lambdas", args.lambdas), dial=dial_from_args(args), target=args.target
    )


def cmd_locality_sweep(args: argparse.Namespace) -> None:
    from headscope.models import ModelHandle
    from headscope.probes import eval_tokens, sweep_locality

    cfg = sweep_config_from_args(args)  # validate before loading a model
    text = text_or_file(args)
    if text is not None and not text.strip():
        raise InputError("text is empty")
    handle = ModelHandle.load(args.model, device=args.device)
    cfg.dial.check(handle)  # layer count and head indices: before any work
    tokens, cut = eval_tokens(handle, text, max_tokens=args.max_tokens)
    if cut is not None:
        print(f"headscope: note: evaluation text cut from {cut} to {tokens.shape[1]} tokens", file=sys.stderr)
    with progress_bar("λ sweep") as progress:
        result = sweep_locality(handle, tokens, cfg, progress=progress, truncated_from=cut)
    payload = result.to_json()
    head = f"{'lambda':>7} {'entropy':>8} {'fidelity':>8} {'ppl':>9} {'acc':>6} {'kl':>8}"
    lines = [head] + [
        f"{r['lambda']:7.3f} {r['mean_entropy_bits']:8.3f} {r['pointer_fidelity']:8.3f} "
        f"{r['perplexity']:9.3f} {r['accuracy']:6.3f} {r['kl']:8.4f}"
        for r in payload["rows"]
    ]
    emit(payload, args.json, lines)


# ---- argument writers: the exact inverse of the parsers above ------------------------------------------------------
ARGV_CONFIGS = (
    "headscope.probes.report:EntropyConfig",
    "headscope.probes.sweep:SweepConfig",
    "headscope.probes.view:ViewConfig",
)


def _nums(values: Any) -> str:
    return ",".join(repr(float(v)) for v in values)  # repr: float() reads it back exactly


def _dial_argv(dial: Any) -> list[str]:
    argv = [f"--mode={dial.mode}", f"--schedule={dial.schedule}", f"--beta={dial.beta!r}",
            f"--strength={dial.strength!r}", f"--blocks={dial.blocks.source}", f"--block-size={dial.blocks.size}"]  # fmt: skip
    if dial.layer_weights:
        argv.append(f"--layer-weights={_nums(dial.layer_weights)}")
    if dial.heads_text is not None:
        argv.append(f"--heads={dial.heads_text}")  # the HeadSet grammar, canonical ("9.4, 12.*")
    if dial.blocks.spans:
        argv.append("--spans=" + ",".join(f"{a}:{b}" for a, b in dial.blocks.spans))
    return argv


def _common_argv(model: str | None, text: str | None) -> list[str]:
    return ([f"--model={model}"] if model is not None else []) + (
        [f"--text={text}"] if text is not None else []
    )


def to_argv(
    cfg: Any, *, model: str | None = None, text: str | None = None, max_tokens: int = 256
) -> list[str]:
    """What follows `headscope` to run `cfg` (an `EntropyConfig` or a `SweepConfig`) on `model` and `text`.
    Values are written as `--flag=value`, so a text that starts with '-' stays a value."""
    from headscope.probes.report import EntropyConfig
    from headscope.probes.sweep import SweepConfig
    from headscope.probes.view import ViewConfig

    if isinstance(cfg, ViewConfig):
        shown = [f"--show-heads={cfg.shown}"] if cfg.shown else []
        return ["locality", "view", *_common_argv(model, text if text is not None else ""), f"--lambda={cfg.dial.lam!r}",
                *_dial_argv(cfg.dial), *shown, f"--max-tokens={cfg.max_tokens}"]  # fmt: skip
    if isinstance(cfg, EntropyConfig):
        return ["entropy", *_common_argv(model, text if text is not None else ""), f"--backend={cfg.backend}",
                f"--lambda={cfg.dial.lam!r}", *_dial_argv(cfg.dial)]  # fmt: skip
    if isinstance(cfg, SweepConfig):
        target = [f"--target={cfg.target}"] if cfg.target is not None else []
        return ["locality", "sweep", *_common_argv(model, text), f"--lambdas={_nums(cfg.lambdas)}",
                *_dial_argv(cfg.dial), *target, f"--max-tokens={max_tokens}"]  # fmt: skip
    raise TypeError(f"no headscope command for a {type(cfg).__name__}")


def config_from_argv(argv: Sequence[str]) -> Any:
    """The config the command `argv` (what follows `headscope`) runs: its parser and checks, as `main` uses them."""
    from headscope.cli import build_parser

    args = build_parser().parse_args(list(argv))
    if args.command == "entropy":
        return entropy_config_from_args(args)
    if args.command == "locality" and args.locality_command == "sweep":
        return sweep_config_from_args(args)
    if args.command == "locality" and args.locality_command == "view":
        return view_config_from_args(args)
    raise InputError(f"not a probes command: {' '.join(argv[:2])}")
