"""`headscope entropy` and `headscope locality sweep` (registered through `headscope.cli.CAPABILITY_COMMANDS`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from headscope.cli.common import emit, model_args, numbers, text_or_file
from headscope.errors import InputError


def register(sub: Any) -> None:
    from headscope.probes.backends import BACKENDS

    p = sub.add_parser("entropy", help="attention entropy (bits) per layer × head of a text")
    model_args(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="the text to analyse")
    src.add_argument("--file", help="a UTF-8 text file to analyse")
    p.add_argument(
        "--backend", choices=BACKENDS, default="auto", help="auto: fused above 512 tokens if available"
    )
    p.set_defaults(func=cmd_entropy)

    loc = sub.add_parser("locality", help="the inference-time locality dial")
    loc_sub = loc.add_subparsers(dest="locality_command", required=True)
    sweep = loc_sub.add_parser("sweep", help="λ sweep: entropy, pointer fidelity, perplexity, accuracy, KL")
    model_args(sweep)
    _sweep_parser(sweep)


def _sweep_parser(p: argparse.ArgumentParser) -> None:
    from headscope.localist import BLOCK_SOURCES, MODES, SCHEDULES
    from headscope.probes.patterns import TARGETS

    src = p.add_mutually_exclusive_group()
    src.add_argument("--text", help="evaluation text (default: the shipped Wikipedia excerpt)")
    src.add_argument("--file", help="evaluation text file (UTF-8)")
    p.add_argument("--lambdas", default="0,0.25,0.5,0.75,1", help="comma-separated λ values in [0, 1] (≤ 21)")
    p.add_argument("--mode", choices=list(MODES), default="distance")
    p.add_argument("--schedule", choices=list(SCHEDULES), default="uniform")
    p.add_argument("--beta", type=float, default=1.0, help="progressive exponent β ≥ 1")
    p.add_argument("--layer-weights", default="", help="explicit schedule: one weight in [0, 1] per layer")
    p.add_argument("--heads", default="", help="comma-separated head indices (default: all heads)")
    p.add_argument(
        "--strength", type=float, default=1.0, help="s: nats per token (distance), ×10 nats (block)"
    )
    p.add_argument(
        "--blocks", choices=list(BLOCK_SOURCES), default="sentence", help="block source (block mode)"
    )
    p.add_argument("--block-size", type=int, default=16, help="tokens per block for --blocks fixed")
    p.add_argument("--spans", default="", help="for --blocks spans: start:end,start:end in token indices")
    p.add_argument("--target", choices=list(TARGETS), default=None, help="pointer-fidelity target")
    p.add_argument("--max-tokens", type=int, default=256, help="cut the evaluation text to this many tokens")
    p.set_defaults(func=cmd_locality_sweep)


def _spans(raw: str) -> tuple[tuple[int, int], ...]:
    try:
        return tuple((int(a), int(b)) for a, b in (s.split(":") for s in raw.split(",") if s.strip()))
    except ValueError:
        raise InputError(f"--spans must look like 0:5,5:12, got {raw!r}") from None


def cmd_entropy(args: argparse.Namespace) -> None:
    from headscope.models import ModelHandle
    from headscope.probes.report import entropy_report

    text = text_or_file(args)
    assert text is not None  # the argument group is required
    handle = ModelHandle.load(args.model, device=args.device)
    payload = entropy_report(handle, text, backend=args.backend)
    lines = [f"{payload['model']}: {payload['n_tokens']} tokens, backend {payload['backend']}"]
    lines += [f"layer {layer:3d}: " + " ".join(f"{h:5.2f}" for h in row) for layer, row in
              enumerate(payload["entropy_bits"])]  # fmt: skip
    lines.append(f"mean entropy: {payload['mean_entropy_bits']:.3f} bits")
    emit(payload, args.json, lines)


def sweep_config_from_args(args: argparse.Namespace) -> Any:
    from headscope.localist import BlockSpec, LocalityDial, SweepConfig

    heads = numbers("--heads", args.heads, int) or None
    blocks = BlockSpec(source=args.blocks, size=args.block_size, spans=_spans(args.spans))
    dial = LocalityDial(
        mode=args.mode, schedule=args.schedule, beta=args.beta, heads=heads, strength=args.strength,
        layer_weights=numbers("--layer-weights", args.layer_weights), blocks=blocks,
    )  # fmt: skip
    return SweepConfig(lambdas=numbers("--lambdas", args.lambdas), dial=dial, target=args.target)


def cmd_locality_sweep(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from headscope.localist import eval_tokens, sweep_locality
    from headscope.models import ModelHandle

    cfg = sweep_config_from_args(args)  # validate before loading a model
    handle = ModelHandle.load(args.model, device=args.device)
    cfg.dial.check(handle)  # layer count and head indices: before any work
    tokens, cut = eval_tokens(handle, text_or_file(args), max_tokens=args.max_tokens)
    if cut is not None:
        print(f"headscope: note: evaluation text cut from {cut} to {tokens.shape[1]} tokens", file=sys.stderr)
    with tqdm(total=len(cfg.lambdas), desc="λ sweep", unit="λ", file=sys.stderr) as bar:
        result = sweep_locality(handle, tokens, cfg, progress=lambda done, total: bar.update(1),
                                truncated_from=cut)  # fmt: skip
    payload = result.to_json()
    head = f"{'lambda':>7} {'entropy':>8} {'fidelity':>8} {'ppl':>9} {'acc':>6} {'kl':>8}"
    lines = [head] + [
        f"{r['lambda']:7.3f} {r['mean_entropy_bits']:8.3f} {r['pointer_fidelity']:8.3f} "
        f"{r['perplexity']:9.3f} {r['accuracy']:6.3f} {r['kl']:8.4f}"
        for r in payload["rows"]
    ]
    emit(payload, args.json, lines)
