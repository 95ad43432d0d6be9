"""Reading a file a user named (a CLI path, a job file, a vectors or SAE folder, an upload): one place for the
checks and their one-line errors.

`read_bytes` / `read_text` / `read_json` refuse a missing path, a folder and a file over `limit` bytes before
reading anything (the size is checked on the open file, so a file that grows meanwhile is still refused), and
turn unreadable, non-UTF-8 or invalid-JSON contents into one `InputError` line naming `what` and the path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from headscope.errors import InputError

MiB = 1024 * 1024
TEXT_LIMIT = 2 * MiB  # a text to analyse, a prompt list, a task file
JSON_LIMIT = 16 * MiB  # job files, reports, sidecars and cards


def _size(n: int) -> str:
    return f"{n / MiB:g} MiB" if n >= MiB else f"{n:,} bytes"


def check_file(path: str | os.PathLike[str], what: str, limit: int) -> Path:
    """`path` as a Path if it is an existing regular file of at most `limit` bytes; else one line."""
    p = Path(path)
    try:
        if p.is_dir():
            raise InputError(f"{what} {p} is a folder, not a file")
        if not p.is_file():
            raise InputError(f"{what} file not found: {p}")
        size = p.stat().st_size
    except OSError as e:
        raise InputError(f"cannot read {what} file {p}: {e.strerror or e}") from None
    if size > limit:
        raise InputError(f"{what} file {p} is larger than {_size(limit)} ({_size(size)})")
    return p


def read_bytes(path: str | os.PathLike[str], what: str, *, limit: int) -> bytes:
    p = check_file(path, what, limit)
    try:
        with p.open("rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise InputError(f"cannot read {what} file {p}: {e.strerror or e}") from None
    if len(data) > limit:
        raise InputError(f"{what} file {p} is larger than {_size(limit)}")
    return data


def read_text(path: str | os.PathLike[str], what: str, *, limit: int = TEXT_LIMIT) -> str:
    """A UTF-8 text file."""
    data = read_bytes(path, what, limit=limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{what} file {Path(path)} is not UTF-8 text") from None


def read_json(path: str | os.PathLike[str], what: str, *, limit: int = JSON_LIMIT) -> Any:
    """A JSON file (any JSON value; callers check its shape)."""
    text = read_text(path, what, limit=limit)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{what} file {Path(path)} is not valid JSON: {e.msg} (line {e.lineno})") from None
    except RecursionError:
        raise InputError(f"{what} file {Path(path)} is nested too deeply") from None
