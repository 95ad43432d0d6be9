"""The `headscope` command. Every subcommand prints JSON with `--json`; bad input exits non-zero with one line."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from headscope.errors import HeadscopeError

Command = Callable[[argparse.Namespace], Any]


def _emit(payload: Any, as_json: bool, text: Callable[[Any], str]) -> None:
    print(json.dumps(payload, indent=1) if as_json else text(payload))


def cmd_models(args: argparse.Namespace) -> None:
    from headscope.models import CATALOG, DEFAULT_MODEL, cached_models

    cached = set(cached_models())
    rows = [
        dict(e.to_json(), cached=name in cached, default=name == DEFAULT_MODEL) for name, e in CATALOG.items()
    ]
    payload = {"models": rows, "default": DEFAULT_MODEL}

    def text(p: dict) -> str:
        lines = [f"{'name':16} {'installed':9} {'cached':6}  description"]
        for r in p["models"]:
            lines.append(f"{r['name']:16} {r['installed']!s:9} {r['cached']!s:6}  {r['description']}")
        return "\n".join(lines)

    _emit(payload, args.json, text)


def cmd_info(args: argparse.Namespace) -> None:
    from headscope.models import ModelHandle

    t0 = time.perf_counter()
    handle = ModelHandle.load(args.model, device=args.device)
    info = handle.info()
    info["load_seconds"] = round(time.perf_counter() - t0, 3)
    _emit(info, args.json, lambda p: "\n".join(f"{k}: {v}" for k, v in {**p.pop("facts"), **p}.items()))


def cmd_serve(args: argparse.Namespace) -> None:
    from headscope.app.main import serve

    serve(model=args.model, port=args.port, host=args.host)


# Capability command modules: each exposes `register(sub)`, adding its subparsers with `set_defaults(func=...)`.
# A new capability adds its module here (one line).
CAPABILITY_COMMANDS: tuple[str, ...] = (
    "headscope.decoding.cli",
    "headscope.probes.cli",
    "headscope.localist.train_cli",
    "headscope.steering.cli",
    "headscope.circuits.cli",
)


def build_parser() -> argparse.ArgumentParser:
    from headscope.models import DEFAULT_MODEL

    parser = argparse.ArgumentParser(prog="headscope", description="headscope interpretability workbench")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("models", help="list the model catalog and what is cached")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("info", help="load a model and print its architecture facts and load time")
    p.add_argument("model", help="catalog name, Hugging Face id (org/name) or local safetensors folder")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("serve", help="start the web app")
    p.add_argument("--model", default=DEFAULT_MODEL, help="model to load at start (catalog name)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--host", default="127.0.0.1")
    p.set_defaults(func=cmd_serve)
    for module in CAPABILITY_COMMANDS:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except HeadscopeError as e:
        print(f"headscope: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # one readable line, never a traceback, for anything we did not foresee
        first = str(e).splitlines()[0] if str(e) else ""
        print(f"headscope: internal error: {type(e).__name__}: {first}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
