"""What every `headscope` command shares, defined once: the model options, `--json`, reading user files
(through headscope/files.py), number lists, output paths checked before any work, and printing the result.

Contract: with `--json` a command prints one JSON object on stdout; otherwise readable lines. Bad input raises an
`InputError` (one line; `main` exits 2 and, under `--json`, also prints {"error", "exit_code"} on stdout).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from headscope.errors import InputError
from headscope.files import read_text
from headscope.progress import Progress

DEFAULT_MODEL = (
    "smollm2-135m"  # = headscope.models.DEFAULT_MODEL (kept here so `--help` does not import torch)
)


def json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")


def model_args(
    p: argparse.ArgumentParser, *, default: str | None = DEFAULT_MODEL, help: str | None = None
) -> None:
    """--model, --device (or --device-map) and --json."""
    p.add_argument(
        "--model",
        default=default,
        help=help or "catalog name, Hugging Face id (org/name) or local safetensors folder",
    )
    p.add_argument("--device", choices=["cpu", "cuda"], default=None)
    device_map_args(p)
    json_flag(p)


def device_map_args(p: argparse.ArgumentParser) -> None:
    """--device-map / --max-memory / --offload-dir: a model larger than one device (models/device_map.py)."""
    p.add_argument(
        "--device-map", choices=["auto", "balanced"], default=None,
        help="spread the model's layers over the GPUs, then CPU memory, then disk (accelerate)",
    )  # fmt: skip
    p.add_argument("--max-memory", default=None, help="budgets for --device-map, e.g. cuda:0=20GiB,cpu=64GiB")
    p.add_argument("--offload-dir", default=None, help="--device-map: folder for layers that fit nowhere")


def device_map_spec(args: argparse.Namespace) -> Any:
    """The `DeviceMapSpec` the options ask for (None: one device), checked before any model loads."""
    strategy = getattr(args, "device_map", None)
    extras = [f for f in ("max_memory", "offload_dir") if getattr(args, f, None) is not None]
    if strategy is None:
        if extras:
            raise InputError(f"--{extras[0].replace('_', '-')} needs --device-map")
        return None
    if getattr(args, "device", None) is not None:
        raise InputError("give --device or --device-map, not both")
    from headscope.models.device_map import DeviceMapSpec, parse_max_memory

    budgets = parse_max_memory(args.max_memory) if args.max_memory else {}
    offload = str(writable_dir(args.offload_dir, "--offload-dir")) if args.offload_dir else None
    return DeviceMapSpec(strategy, budgets, offload)


@contextlib.contextmanager
def model_placement(args: argparse.Namespace) -> Iterator[None]:
    """Every model the command loads is spread as its --device-map says (no per-command code)."""
    spec = device_map_spec(args)
    if spec is None:
        yield
        return
    from headscope.models.handle import default_device_map

    with default_device_map(spec):
        yield


def read_lines(path: str, what: str) -> list[str]:
    """A plain-text file, one example a line (blank lines skipped)."""
    lines = [ln.strip() for ln in read_text(path, what).splitlines() if ln.strip()]
    if not lines:
        raise InputError(f"{what} file has no examples (one per line): {path}")
    return lines


def text_or_file(args: argparse.Namespace, what: str = "text") -> str | None:
    """`--text` if given, else the contents of `--file`, else None."""
    if getattr(args, "text", None) is not None:
        return args.text
    if getattr(args, "file", None) is None:
        return None
    return read_text(args.file, what)


def numbers(flag: str, raw: str, kind: type = float) -> tuple[Any, ...]:
    """A comma-separated list of numbers (empty → ())."""
    try:
        return tuple(kind(x) for x in raw.split(",") if x.strip())
    except ValueError:
        raise InputError(f"{flag} must be comma-separated {kind.__name__}s, got {raw!r}") from None


def writable_file(path: str | os.PathLike[str], flag: str = "--out") -> Path:
    """An output file path whose folder exists (or can be made) and is writable — checked before the work."""
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{flag} {p} is a folder; give a file name")
    writable_dir(p.parent if str(p.parent) else ".", flag)
    return p


def writable_dir(path: str | os.PathLike[str], flag: str = "--out") -> Path:
    """An output folder that exists (or can be made) and is writable — checked before the work."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise InputError(f"{flag} {p} exists and is not a folder")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"{flag} {p} cannot be created: {e.strerror or e}") from None
    if not os.access(p, os.W_OK | os.X_OK):
        raise InputError(f"{flag} {p} is not writable")
    return p


@contextlib.contextmanager
def progress_bar(desc: str) -> Iterator[Progress]:
    """A tqdm bar on stderr (in percent) fed by the one progress protocol `(stage, fraction)`: the stage is the
    bar's description, so `headscope.batch` reads a running job's stage and fraction back from stderr."""
    import sys

    from tqdm import tqdm

    with tqdm(total=100, desc=desc, unit="%", file=sys.stderr) as bar:

        def show(stage: str, fraction: float) -> None:
            if stage != bar.desc:
                bar.set_description(stage[:60], refresh=False)
            bar.update(max(0, round(100 * min(1.0, fraction)) - bar.n))

        yield show
        bar.update(100 - bar.n)


def emit(payload: Any, as_json: bool, text: Callable[[Any], str] | Sequence[str] | None = None) -> None:
    """The result: one JSON object with --json, else `text(payload)` (or the given lines)."""
    if as_json or text is None:
        print(json.dumps(payload, indent=1))
    elif callable(text):
        print(text(payload))
    else:
        print("\n".join(text))
