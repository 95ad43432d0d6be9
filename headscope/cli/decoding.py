"""`headscope decode compare`: several strategies on one prompt, lined up against greedy, as JSON.

`--heads 9.4,12.* --heads-action ablate|dial` runs the strategies on the model with that head set mean-ablated
(or dialled with the locality dial: `--lambda`, `--mode`, `--schedule`, `--beta`, `--layer-weights`, `--strength`,
`--blocks`; `--heads-action dial` without `--heads` dials every head), against greedy on the unchanged model, so
the comparison shows where the intervention changes the output; `--attention-entropy` adds every head's attention
entropy per generated token (and at the divergence). Every `DecodeConfig` field has its option.

`parse(argv)` turns the words after `headscope` into a `CompareCommand`; `to_argv(command)` is its exact inverse
(`parse(to_argv(c)) == c`): what the app's jobs run on a cluster.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from headscope.cli.common import emit, model_args, numbers, progress_bar
from headscope.errors import InputError

if TYPE_CHECKING:
    from headscope.decoding.compare import Comparison

DEFAULT_STRATEGIES = "greedy,token_recycling,ngram,lookahead"
HEAD_ACTIONS = ("ablate", "dial")

# DecodeConfig field → (option, help); booleans are flags (their option turns on the non-default value)
_OPTIONS: dict[str, tuple[str, str]] = {
    "max_new_tokens": ("--max-new-tokens", "1..256"),
    "temperature": ("--temperature", "0 = greedy"),
    "top_k": ("--top-k", "0 = off"),
    "top_p": ("--top-p", "nucleus mass in (0, 1]"),
    "seed": ("--seed", "sampling seed"),
    "max_draft": ("--max-draft", "longest draft (a tree's depth) per verifier pass (1..16)"),
    "adaptive_draft": ("--fixed-draft", "keep the draft length fixed (no acceptance-driven budget)"),
    "min_draft_confidence": ("--min-draft-confidence", "model drafts stop below this top-1 probability"),
    "draft_model": ("--draft-model", "speculative: a model sharing the target's tokenizer"),
    "skip_ratio": ("--skip-ratio", "layer_skip: share of skippable sublayers skipped"),
    "skip_layers": ("--skip-layers", "layer_skip: a fixed skip set, e.g. a3,m5 (no search)"),
    "search_steps": ("--search-steps", "layer_skip: most search iterations"),
    "search_window": ("--search-window", "layer_skip: context tokens each search iteration scores"),
    "accept_stop": ("--accept-stop", "layer_skip: stop searching at this running acceptance"),
    "ngram_max": ("--ngram-max", "ngram: longest suffix matched"),
    "window": ("--window", "jacobi / lookahead window"),
    "lookahead_n": ("--lookahead-n", "lookahead n-gram size"),
    "lookahead_pool": ("--lookahead-pool", "lookahead: n-grams kept per first token"),
    "regex": ("--regex", "constrained: regular expression"),
    "grammar": ("--grammar", "constrained: named grammar (json_object)"),
    "constraint_method": ("--constraint-method", "awrs or mask"),
    "particles": ("--particles", "constrained: SMC particles (1 = no SMC)"),
    "ess_threshold": ("--ess-threshold", "constrained SMC: resample below this × particles"),
    "attention_entropy": ("--attention-entropy", "record per-head attention entropy"),
    "tree_size": ("--tree-size", "token_recycling: drafted nodes of the static tree (1..128)"),
    "recycle_k": ("--recycle-k", "token_recycling: candidates kept per token (the paper's 8)"),
    "ngram_branches": ("--ngram-branches", "ngram: candidate continuations verified together"),
    "lookahead_guesses": ("--lookahead-guesses", "lookahead: pooled n-grams verified per forward (G)"),
    "task": ("--task", "layer_skip: search the skip set once per (model, task) and reuse it"),
    "ablation": ("--ablation", "ablate: mean over the prompt, or zero"),
}
_FLAGS = ("adaptive_draft", "attention_entropy")  # set by a flag that gives the field its non-default value


@dataclass(frozen=True)
class CompareCommand:
    """Everything `decode compare` runs: the model, the prompt, the strategies and the decoding config."""

    prompt: str
    strategies: tuple[str, ...] = tuple(DEFAULT_STRATEGIES.split(","))
    chat: bool = False
    model: str | None = None
    device: str | None = None
    config: Any = field(default=None)  # DecodeConfig (imported lazily: --help must not import torch)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("decode", help="decoding strategies with one token-by-token trace")
    dsub = p.add_subparsers(dest="decode_command", required=True)
    c = dsub.add_parser("compare", help="run several strategies on one prompt and compare them with greedy")
    compare_options(c)
    c.set_defaults(func=cmd_compare)


def compare_options(c: argparse.ArgumentParser) -> None:
    from headscope.attention import BLOCK_SOURCES, MODES, SCHEDULES

    model_args(c, default=None)
    c.add_argument("--prompt", required=True)
    c.add_argument("--chat", action="store_true", help="wrap the prompt in the model's chat template")
    c.add_argument("--strategies", default=DEFAULT_STRATEGIES, help=f"comma-separated ({DEFAULT_STRATEGIES})")
    for name, (flag, text) in _OPTIONS.items():
        if name in _FLAGS:
            c.add_argument(flag, dest=flag[2:].replace("-", "_"), action="store_true", help=text)
        else:
            c.add_argument(flag, dest=name, default=None, help=text)
    c.add_argument("--heads", default=None, help="heads to intervene on, e.g. '9.4, 12.*' (L.H, L.*, *.H)")
    c.add_argument("--heads-action", default="ablate", choices=list(HEAD_ACTIONS))
    c.add_argument("--lambda", dest="dial_lambda", default="1", help="dial: λ in [0, 1]")
    c.add_argument("--mode", dest="dial_mode", default="distance", choices=list(MODES))
    c.add_argument("--schedule", default="uniform", choices=list(SCHEDULES))
    c.add_argument("--beta", default="1", help="dial: progressive exponent β ≥ 1")
    c.add_argument("--layer-weights", default="", help="dial: explicit schedule, one weight per layer")
    c.add_argument("--strength", default="1", help="dial: s, nats per token (distance), ×10 nats (block)")
    c.add_argument("--blocks", default="sentence", choices=list(BLOCK_SOURCES), help="dial: block source")
    c.add_argument("--block-size", default="16", help="dial: tokens per block for --blocks fixed")


def _dial(args: argparse.Namespace) -> Any:
    from headscope.attention import BlockSpec, LocalityDial

    return LocalityDial(
        lam=args.dial_lambda, mode=args.dial_mode, schedule=args.schedule, beta=args.beta,
        layer_weights=numbers("--layer-weights", args.layer_weights), heads=args.heads, strength=args.strength,
        blocks=BlockSpec(source=args.blocks, size=args.block_size),
    )  # fmt: skip


def _config(args: argparse.Namespace) -> Any:
    """The DecodeConfig the options describe (every value checked there, before any model loads)."""
    from headscope.decoding.config import DecodeConfig

    given = {n: getattr(args, n) for n in _OPTIONS if n not in _FLAGS and getattr(args, n) is not None}
    given["adaptive_draft"] = not args.fixed_draft
    given["attention_entropy"] = bool(args.attention_entropy)
    dial = _dial(args)  # checked even when unused: a bad --lambda is refused, not ignored
    dialled = args.heads_action == "dial"
    return DecodeConfig(**given, ablate_heads=None if dialled else args.heads, dial=dial if dialled else None)


def command(args: argparse.Namespace) -> CompareCommand:
    from headscope.decoding.compare import parse_strategies

    return CompareCommand(
        prompt=args.prompt, strategies=tuple(parse_strategies(args.strategies)), chat=bool(args.chat),
        model=args.model, device=args.device, config=_config(args),
    )  # fmt: skip


def parse(argv: list[str]) -> CompareCommand:
    """`["decode", "compare", ...]` → the command it runs (bad values: one InputError line)."""
    parser = argparse.ArgumentParser(prog="headscope", exit_on_error=False)
    register(parser.add_subparsers(dest="command", required=True))
    try:
        args = parser.parse_args(argv)
    except (argparse.ArgumentError, SystemExit) as e:
        raise InputError(f"not a decode compare command: {e}") from None
    return command(args)


ARGV_CONFIGS = ("headscope.cli.decoding:CompareCommand",)
config_from_argv = parse  # the harness's name for the parser (tests/unit/test_cli_argv.py)


def to_argv(cmd: CompareCommand) -> list[str]:
    """The words after `headscope` that `parse` turns back into `cmd` (no --json: the runner adds it)."""
    from headscope.decoding.config import DecodeConfig

    cfg = cmd.config if cmd.config is not None else DecodeConfig()
    # "--prompt=…": a prompt that starts with "-" would otherwise read as an option
    out = ["decode", "compare", f"--prompt={cmd.prompt}", "--strategies", ",".join(cmd.strategies)]
    out += [*(["--model", cmd.model] if cmd.model else []), *(["--device", cmd.device] if cmd.device else [])]
    out += ["--chat"] if cmd.chat else []
    defaults = DecodeConfig()
    for f in fields(DecodeConfig):
        value, flag = getattr(cfg, f.name), _OPTIONS.get(f.name, ("", ""))[0]
        if f.name not in _OPTIONS or value == getattr(defaults, f.name):
            continue
        out += [flag] if isinstance(value, bool) else [f"{flag}={_word(value)}"]
    return out + _intervention_argv(cfg)


def _word(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _intervention_argv(cfg: Any) -> list[str]:
    if cfg.ablate_heads is not None and cfg.dial is not None:
        raise InputError("the command line ablates or dials, not both: run the two as separate commands")
    if cfg.ablate_heads is not None:
        return ["--heads", cfg.ablate_heads]
    if cfg.dial is None:
        return []
    d = cfg.dial
    if d.blocks.spans:
        raise InputError("block spans cannot be given on the decode command line")
    out = ["--heads-action", "dial", "--lambda", repr(d.lam), "--mode", d.mode, "--schedule", d.schedule]
    out += ["--beta", repr(d.beta), "--strength", repr(d.strength), "--blocks", d.blocks.source]
    out += ["--block-size", str(d.blocks.size)]
    out += ["--layer-weights", ",".join(repr(w) for w in d.layer_weights)] if d.layer_weights else []
    return out + (["--heads", d.heads_text] if d.heads_text is not None else [])


def _lines(result: Comparison) -> list[str]:
    """One line per run (named for the intervention, with its speed-ups against greedy, flagged below 1x), then
    where the first run departs from greedy and which heads' entropy changed most there."""
    from headscope.decoding import summary

    payload, out = result.to_json(), []
    if payload.get("intervention"):
        out.append(f"intervention: {payload['intervention']}")
    for s, r in zip(payload["strategies"], result.results, strict=True):
        same = (
            "same as greedy"
            if s["identical_to_greedy"]
            else f"departs from greedy at token {s['diverges_at']}"
        )
        slow = " (below 1x)" if s["below_1x_wall"] else ""
        out.append(
            f"{summary.run_name(r, result.config):15} tok/fwd {s['tokens_per_target_forward']:.2f} "
            f"(x{s['speedup_per_forward']:.2f})  tok/s {s['tokens_per_second']:.1f} (x{s['speedup_wall']:.2f}{slow})"
            f"  {same}  {s['text']!r}"
        )
    d = summary.departure(result)
    if d is not None and d.top_heads:
        heads = ", ".join(f"{h} ({v:+.2f} bits)" for h, v in d.top_heads)
        out.append(
            f"first departure: {d.run} at token {d.position}; attention entropy changed most in {heads}"
        )
    return out


def run_compare(cmd: CompareCommand, load: Callable[[str], Any], progress: Any = None) -> Comparison:
    """What `decode compare` does with `cmd`; `load(name)` gives a model (the CLI loads it, the app has it)."""
    from headscope.decoding.compare import compare_prompt
    from headscope.models import DEFAULT_MODEL

    handle = load(cmd.model or DEFAULT_MODEL)
    draft = load(cmd.config.draft_model) if cmd.config.draft_model else None
    return compare_prompt(
        handle, cmd.prompt, cmd.strategies, cmd.config, chat=cmd.chat, draft=draft, progress=progress
    )


def cmd_compare(args: argparse.Namespace) -> None:
    from headscope.models import ModelHandle

    cmd = command(args)  # bad values fail before any model loads
    cfg, names = cmd.config, list(cmd.strategies)
    if "speculative" in names and not cfg.draft_model:
        raise InputError("speculative needs --draft-model (a model sharing the target's tokenizer)")
    if not cmd.prompt.strip():
        raise InputError("the prompt is empty")
    with progress_bar("decode") as progress:
        result = run_compare(cmd, lambda name: ModelHandle.load(name, device=cmd.device), progress)
    payload = result.to_json()
    emit(payload, args.json, _lines(result))
