"""`headscope serve`: start the web app. The one command above the CLI's layer (it imports the app, lazily)."""

from __future__ import annotations

import argparse
from typing import Any

from headscope.cli.common import DEFAULT_MODEL


def cmd_serve(args: argparse.Namespace) -> None:
    from headscope.app.main import serve

    serve(model=args.model, port=args.port, host=args.host)


def register(sub: Any) -> None:
    p = sub.add_parser("serve", help="start the web app")
    p.add_argument("--model", default=DEFAULT_MODEL, help="model to load at start (catalog name)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--host", default="127.0.0.1")
    p.set_defaults(func=cmd_serve)
