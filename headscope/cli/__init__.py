"""The `headscope` command. Every subcommand prints JSON with `--json`; bad input exits 2 with one line on stderr
(and, under `--json`, `{"error": ..., "exit_code": 2}` on stdout). One module per capability in this package;
the options every command shares are in `common.py`."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from headscope.batch.commands import CommandLine, register_command_line
from headscope.cli.common import device_map_args, emit, json_flag, model_placement
from headscope.errors import HeadscopeError

Command = Callable[[argparse.Namespace], Any]


def cmd_models(args: argparse.Namespace) -> None:
    from headscope.features.catalog import available
    from headscope.models import CATALOG, DEFAULT_MODEL, cached_models

    cached = set(cached_models())
    rows = [
        dict(e.to_json(), cached=name in cached, default=name == DEFAULT_MODEL) for name, e in CATALOG.items()
    ]
    payload = {"models": rows, "default": DEFAULT_MODEL, "saes": [e.to_json() for e in available()]}

    def text(p: dict) -> str:
        lines = [f"{'name':16} {'installed':9} {'cached':6}  description"]
        for r in p["models"]:
            lines.append(f"{r['name']:16} {r['installed']!s:9} {r['cached']!s:6}  {r['description']}")
        for r in p["saes"]:
            lines.append(f"SAE {r['model']}/{r['name']}: {r['hook']}, {r['d_sae']} features, "
                         f"explained variance {r['explained_variance']}, CE score {r['ce_loss_score']}")  # fmt: skip
        return "\n".join(lines)

    emit(payload, args.json, text)


def cmd_info(args: argparse.Namespace) -> None:
    from headscope.models import ModelHandle

    t0 = time.perf_counter()
    handle = ModelHandle.load(args.model, device=args.device)
    info = handle.info()
    info["load_seconds"] = round(time.perf_counter() - t0, 3)
    emit(info, args.json, lambda p: "\n".join(f"{k}: {v}" for k, v in {**p.pop("facts"), **p}.items()))


# Command modules: each exposes `register(sub)`, adding its subparsers with `set_defaults(func=...)`. A new
# capability adds its module here (one line). They are imported by name when the parser is built, so `headscope
# --help` stays cheap; `serve` is the one command above the CLI's layer (it starts the app).
CAPABILITY_COMMANDS: tuple[str, ...] = (
    "headscope.cli.serve",
    "headscope.cli.decoding",
    "headscope.cli.probes",
    "headscope.cli.localist",
    "headscope.cli.steering",
    "headscope.cli.circuits",
    "headscope.cli.features",
    "headscope.cli.batch",
)


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (exit 2), and as a JSON error object too when --json was given."""

    def error(self, message: str) -> NoReturn:
        line = f"{self.prog}: {message}"
        print(f"headscope: error: {line}", file=sys.stderr)
        if "--json" in _ARGV:
            print(json.dumps({"error": line, "exit_code": 2}))
        raise SystemExit(2)


_ARGV: list[str] = []


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="headscope", description="headscope interpretability workbench")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("models", help="list the model catalog and what is cached")
    json_flag(p)
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("info", help="load a model and print its architecture facts and load time")
    p.add_argument("model", help="catalog name, Hugging Face id (org/name) or local safetensors folder")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None)
    device_map_args(p)
    json_flag(p)
    p.set_defaults(func=cmd_info)

    for module in CAPABILITY_COMMANDS:
        importlib.import_module(module).register(sub)
    return parser


def _fail(args: argparse.Namespace, kind: str, message: str, code: int) -> int:
    """One line on stderr; under --json also a JSON error object on stdout (scripts read one stream)."""
    print(f"headscope: {kind}: {message}", file=sys.stderr)
    if getattr(args, "json", False):
        print(json.dumps({"error": message, "exit_code": code}))
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    _ARGV[:] = list(argv) if argv is not None else sys.argv[1:]
    args = parser.parse_args(argv)
    try:
        with model_placement(args):
            args.func(args)
    except HeadscopeError as e:
        return _fail(args, "error", str(e).splitlines()[0] if str(e) else type(e).__name__, 2)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `headscope ... | head`: the reader left; no traceback, the shell's usual status
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's final flush must not raise again
        return 141
    except Exception as e:  # one readable line, never a traceback, for anything we did not foresee
        first = str(e).splitlines()[0] if str(e) else ""
        return _fail(args, "internal error", f"{type(e).__name__}: {first}", 1)
    return 0


# Batch jobs (headscope/batch) run commands through this entry point; batch never imports the CLI itself.
register_command_line(CommandLine(main, build_parser))

if __name__ == "__main__":
    raise SystemExit(main())
