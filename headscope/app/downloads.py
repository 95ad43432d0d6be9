"""Per-visitor temporary folders for downloads and session imports: removed when the visitor leaves
(`release`), the total capped oldest first (`cap`). `user_errors` runs every event under `visitor(request)`,
so `folder()` needs no visitor argument (issue 24 item 7)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

ROOT = Path(tempfile.gettempdir()) / f"headscope-app-{os.getpid()}"  # this server's own tree, nobody else's


def _limit() -> int:
    """HEADSCOPE_DOWNLOADS_MB: the total size of every visitor's folders together (default 256 MB)."""
    raw = os.environ.get("HEADSCOPE_DOWNLOADS_MB", "256")
    return int(raw) * 1_000_000 if raw.isdigit() and int(raw) > 0 else 256_000_000


MAX_TOTAL_BYTES = _limit()
_VISITOR: ContextVar[str] = ContextVar("headscope_visitor", default="shared")
_LOCK = threading.Lock()


def _safe(owner: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", owner)[:64] or "shared"


def owner_of(request: Any) -> str:
    """A visitor's identity: the browser session (gradio_client callers have one too)."""
    return str(getattr(request, "session_hash", None) or "shared")


@contextlib.contextmanager
def visitor(request: Any) -> Iterator[None]:
    """Files made inside belong to the visitor behind `request` (no request: "shared")."""
    token = _VISITOR.set(_safe(owner_of(request)))
    try:
        yield
    finally:
        _VISITOR.reset(token)


def folder(prefix: str = "headscope-") -> Path:
    """A fresh folder in the current visitor's tree (the total is capped first, oldest folders removed)."""
    cap()
    base = ROOT / _VISITOR.get()
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


def release(request: Any) -> None:
    """Remove every folder the visitor behind `request` was given (the page closed)."""
    owner = _safe(owner_of(request))
    if owner != "shared":
        shutil.rmtree(ROOT / owner, ignore_errors=True)


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def cap(limit: int | None = None) -> list[Path]:
    """Remove whole folders, oldest first, until the tree holds at most `limit` bytes; the removed folders."""
    limit = MAX_TOTAL_BYTES if limit is None else limit
    with _LOCK:
        if not ROOT.is_dir():
            return []
        folders = [d for owner in ROOT.iterdir() if owner.is_dir() for d in owner.iterdir() if d.is_dir()]
        sized = sorted(((d.stat().st_mtime, _size(d), d) for d in folders), key=lambda t: (t[0], str(t[2])))
        total, removed = sum(s for _, s, _ in sized), []
        for _, size, d in sized:
            if total <= limit:
                break
            shutil.rmtree(d, ignore_errors=True)
            total -= size
            removed.append(d)
        return removed


def total_bytes() -> int:
    return _size(ROOT) if ROOT.is_dir() else 0
