"""The session file's format, without any UI: what a shared JSON bundle of a whole app session may carry and how
its values are made harmless (app/session.py maps it onto the app's components).

A bundle is `{"format": "headscope-session", "version": 1, "created", "model", "selection", "tabs"}`; `tabs`
maps a tab's name to its values by stable key. Bytes travel as base64 (`{"$bytes": ...}` inside a value, files as
`{name, b64}` with a safe basename). `read_bundle` checks size, JSON, format, version and that the model is one
the reader knows, before anything in it is used.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from collections.abc import Container
from pathlib import Path
from typing import Any

from headscope.errors import InputError

FORMAT = "headscope-session"
VERSION = 1
MAX_SESSION_BYTES = 16_000_000
MAX_FILE_BYTES = 8_000_000


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise InputError(f"session file: {what} is not base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise InputError(f"session file: {what} is not valid base64") from None


def safe_name(name: Any) -> str:
    """A file name from a file as a plain basename (no folder, no odd characters, at most 100 characters)."""
    base = Path(str(name or "file")).name
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", base).strip("._")[:100] or "file"


def jsonable(value: Any) -> Any:
    """bytes anywhere inside a value → {"$bytes": base64} (gr.State may hold safetensors bytes)."""
    if isinstance(value, bytes | bytearray):
        return {"$bytes": b64(bytes(value))}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def unjsonable(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$bytes"}:
            return unb64(value["$bytes"], "bytes")
        return {k: unjsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unjsonable(v) for v in value]
    return value


# ---- text from a file is text ------------------------------------------------------------------------------------
# A session file is shared between people: whatever it carries must not become a link, a remote image (a tracking
# pixel) or markup in the page of whoever loads it. Markdown fields get their text with every character that could
# start a link, an image or HTML escaped, and web addresses broken with a zero-width space (no autolink); emphasis
# stays. Figures lose `layout.images` and any <a>/<img> in their labels.
_MD_SPECIAL = re.compile(r"([\\`\[\]()!<>#|~&{}])")
_TAG = re.compile(r"(?is)<\s*/?\s*(a|img|script|iframe|svg|style|link|object|embed)\b[^>]*>")


def _no_links(text: str) -> str:
    return re.sub(r"(?i)(https?|ftp|file|data|javascript)(:)", "\\1\u200b\\2", text).replace(
        "www.", "www\u200b."
    )


def as_text(value: Any) -> str:
    """`value` as Markdown source that renders as the same characters: no link, image or HTML can come of it."""
    return _MD_SPECIAL.sub(r"\\\1", _no_links(str(value)))


def inert(value: Any) -> Any:
    """Every string inside `value` as plain text for a place that draws a little markup (plotly labels, table
    cells): no tags that link, load or run anything, and no web address."""
    if isinstance(value, str):
        return _no_links(_TAG.sub("", value))
    if isinstance(value, list):
        return [inert(v) for v in value]
    if isinstance(value, dict):
        return {k: inert(v) for k, v in value.items()}
    return value


def inert_figure(fig: Any) -> dict[str, Any]:
    """A plotly figure from a file without remote images or links (plotly draws <a href> in any label)."""
    if not isinstance(fig, dict):
        raise InputError("session file: a figure is not a plotly figure")
    layout = dict(fig.get("layout") or {})
    layout.pop("images", None)
    return inert({"data": fig.get("data") or [], "layout": layout})


def inert_table(table: Any) -> dict[str, Any]:
    """A table from a file ({headers, data}) with inert text in every cell."""
    if not (
        isinstance(table, dict)
        and isinstance(table.get("headers"), list)
        and isinstance(table.get("data"), list)
    ):
        raise InputError("session file: a table needs headers and data")
    return {"headers": [inert(str(h)) for h in table["headers"]], "data": inert(table["data"])}


# ---- the bundle --------------------------------------------------------------------------------------------------
def make_bundle(model: Any, selection: Any, tabs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A session file's content: the model's name, the selection's JSON and each tab's encoded values."""
    created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return {
        "format": FORMAT,
        "version": VERSION,
        "created": created,
        "model": model,
        "selection": selection,
        "tabs": tabs,
    }


def read_bundle(data: Any, models: Container[str]) -> dict[str, Any]:
    """A session file's bytes (or text) → its bundle, checked: at most MAX_SESSION_BYTES, JSON, this format and
    version, a model among `models`, `tabs` an object."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if not isinstance(data, bytes | bytearray):
        raise InputError("load a session file (.json)")
    if len(data) > MAX_SESSION_BYTES:
        raise InputError(f"the session file is larger than {MAX_SESSION_BYTES // 1_000_000} MB")
    try:
        bundle = json.loads(bytes(data).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"not a session file: invalid JSON ({e.__class__.__name__})") from None
    if not isinstance(bundle, dict) or bundle.get("format") != FORMAT:
        raise InputError(f"not a session file: its 'format' is not {FORMAT!r}")
    if bundle.get("version") != VERSION:
        raise InputError(f"session file version {bundle.get('version')!r}; this app reads version {VERSION}")
    if not isinstance(bundle.get("model"), str) or bundle["model"] not in models:
        raise InputError(f"session file: model {bundle.get('model')!r} is not in the catalog")
    if not isinstance(bundle.get("tabs", {}), dict):
        raise InputError("session file: 'tabs' must be an object")
    return bundle
