"""Interactive views every tab can use: `gr.HTML` components whose value is DATA (the dicts built below) and
whose JavaScript (headscope/assets/app/*.js) draws it, with SVG/PNG downloads. The JavaScript writes data only
through `textContent`, so a value read from a session file cannot inject markup."""

from __future__ import annotations

import base64
import math
import re
import sys
from array import array
from collections.abc import Mapping, Sequence
from typing import Any

import gradio as gr

from headscope import assets

SCALES = ("viridis", "blues", "oranges", "diverging")
MAX_VIEW_HEADS = 6  # small multiples: beyond this the page gets heavy at 256 tokens
HTML_TEMPLATE = "<div class='hs-root'></div>"


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def visible_token(token: str) -> str:
    """A token as text with visible whitespace (the same mapping as the views' JavaScript): a space is "·",
    a newline "↵", a tab "⇥"; the empty token "∅"; any other control character as its code ("\\x1b", never
    an invisible character or a font's empty box). For tables and plotly labels."""
    if not token:
        return "∅"
    token = token.replace(" ", "·").replace("\n", "↵").replace("\t", "⇥").replace("\r", "␍")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", token)


def _view(kind: str, value: Any = None, *, label: str | None = None, **kw: Any) -> gr.HTML:
    # A configured gr.HTML, not a subclass: gradio writes a .pyi stub beside the module of every component
    # subclass at import time, which a read-only install cannot take.
    kw.setdefault("show_label", label is not None)
    js = "\n".join(assets.read_text("app", name) for name in ("common.js", f"{kind}.js"))
    comp = gr.HTML(
        value, label=label, html_template=HTML_TEMPLATE, css_template=assets.read_text("app", "views.css"),
        js_on_load=js, container=True, padding=True, **kw,
    )  # fmt: skip
    comp.hs_view = kind  # pyright: ignore[reportAttributeAccessIssue]
    return comp


def is_view(component: Any) -> bool:
    """Whether `component` is one of these views (its value is data, safe to load from a file)."""
    return isinstance(component, gr.HTML) and bool(getattr(component, "hs_view", None))


def HeadGrid(value: Any = None, **kw: Any) -> gr.HTML:  # named like the component it makes
    """A layer × head heatmap (value: `grid_value(...)`), hover in words ("layer 21, head 3: 2.07 bits"); a
    click fires `cell` {layer, head}, a drag `box` {layers, heads} (wired by `ctx.selection.connect_grid`)."""
    return _view("grid", value, **kw)


def AttentionView(value: Any = None, **kw: Any) -> gr.HTML:
    """Attention patterns of up to MAX_VIEW_HEADS heads (value: `attention_value(...)`): a matrix with token
    labels on both axes, or circuitsvis-style token modes (hover a token: what it attends to / what attends to
    it)."""
    return _view("attention", value, **kw)


def TokenStrip(value: Any = None, **kw: Any) -> gr.HTML:
    """Tokens as text with visible whitespace, shaded by a value or a category (value: `strip_value(...)`);
    hover: position, id, value; a click fires `token` {position}."""
    return _view("strip", value, **kw)


# ---- values ------------------------------------------------------------------------------------------------------
def _finite(x: Any) -> float | None:
    v = float(x)
    return v if math.isfinite(v) else None


def _range(vals: list[float], lo: float | None, hi: float | None, scale: str) -> tuple[float, float]:
    """A colour range: `lo` / `hi` where given, else the values' own (0 … 1 with none); `scale` checked."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}")
    return min(vals, default=0.0) if lo is None else lo, max(vals, default=1.0) if hi is None else hi


def rows_of(a: Any) -> list[Any]:
    """Nested lists of a 2-D value (lists, or an array / tensor of a typed result: anything with `tolist`)."""
    return a.tolist() if hasattr(a, "tolist") else [list(r) for r in a]


def _matrix(z: Any, digits: int) -> list[list[float | None]]:
    rows = rows_of(z)
    if not rows or not isinstance(rows[0], list) or not rows[0] or len({len(r) for r in rows}) != 1:
        raise ValueError("a layer × head grid needs a non-empty 2-D array")
    return [[None if x is None else _finite(round(float(x), digits + 2)) for x in row] for row in rows]


def grid_value(
    z: Any,
    *,
    title: str,
    unit: str,
    zmin: float | None = None,
    zmax: float | None = None,
    scale: str = "viridis",
    selected: Sequence[str] = (),
    marks: Mapping[str, str] | None = None,
    mark_names: Mapping[str, str] | None = None,
    extra: Sequence[Mapping[str, Any]] = (),
    digits: int = 2,
    model: str | None = None,
    caption: str | None = None,
    filename: str | None = None,
) -> dict[str, Any]:
    """The value of a `HeadGrid`: z[layer][head] in `unit`; zmin/zmax fix the colour range (give the same range to
    runs that must be compared by eye; default: the data's own); `diverging` centres on 0. `marks` {"9.4": "●"}
    with `mark_names` {"●": "circuit head"}; `extra` [{label, unit, z}] adds hover lines (e.g. Δ vs λ = 0)."""
    rows = _matrix(z, digits)
    vals = [x for row in rows for x in row if x is not None]
    lo, hi = _range(vals, zmin, zmax, scale)
    # every head the same value, no range asked for: the colour bar says so instead of showing lo … lo + 1
    flat = vals[0] if vals and zmin is None and zmax is None and min(vals) == max(vals) else None
    if scale == "diverging":
        m = max(abs(lo), abs(hi)) or 1.0
        lo, hi = -m, m
    legend = " · ".join(f"{sym} {name}" for sym, name in (mark_names or {}).items()) or None
    return {
        "kind": "head_grid", "title": title, "unit": unit, "z": rows, "zmin": lo, "zmax": hi if hi > lo else lo + 1,
        "flat": flat,  # the one value, or None
        "scale": scale, "selected": list(selected), "marks": dict(marks or {}), "mark_names": dict(mark_names or {}),
        "mark_legend": legend, "extra": [{**e, "z": _matrix(e["z"], e.get("digits", digits))} for e in extra],
        "digits": digits, "model": model, "caption": caption, "filename": filename or title,
    }  # fmt: skip


def _u16(cells: array) -> array:
    if sys.byteorder == "big":  # the JavaScript reads little-endian
        cells.byteswap()
    return cells


def encode_pattern(a: Any) -> str:
    """An [n, n] attention pattern as base64 little-endian uint16 (weight × 65535): 2 bytes a cell, ±8e-6."""
    cells = array("H", (round(min(max(float(x), 0.0), 1.0) * 65535) for row in rows_of(a) for x in row))
    return base64.b64encode(_u16(cells).tobytes()).decode("ascii")


def decode_pattern(b64: str, n: int) -> list[list[float]]:
    """The inverse of `encode_pattern` (tests, session checks): [n][n] weights."""
    cells = array("H")
    cells.frombytes(base64.b64decode(b64))
    cells = _u16(cells)
    if len(cells) != n * n:
        raise ValueError(f"pattern has {len(cells)} cells, expected {n * n}")
    return [[v / 65535 for v in cells[i * n : (i + 1) * n]] for i in range(n)]


def attention_value(
    tokens: Sequence[str],
    ids: Sequence[int],
    patterns: Mapping[str, Any],
    *,
    title: str,
    mode: str = "matrix",
    caption: str | None = None,
    filename: str | None = None,
) -> dict[str, Any]:
    """The value of an `AttentionView`: `patterns` {"L9 H4": [n, n] query × key weights} (≤ MAX_VIEW_HEADS)."""
    n = len(tokens)
    if not patterns or len(patterns) > MAX_VIEW_HEADS:
        raise ValueError(f"show between 1 and {MAX_VIEW_HEADS} heads")
    heads = []
    for label, a in patterns.items():
        rows = rows_of(a)
        if len(rows) != n or any(len(r) != n for r in rows):
            raise ValueError(f"{label}: pattern shape is not the expected {n} × {n}")
        heads.append({"label": label, "b64": encode_pattern(rows)})
    return {
        "kind": "attention", "title": title, "tokens": list(tokens), "ids": [int(i) for i in ids],
        "heads": heads, "mode": mode, "caption": caption, "filename": filename or title,
    }  # fmt: skip


def strip_row(
    tokens: Sequence[str],
    ids: Sequence[int],
    values: Sequence[float | None] | None = None,
    *,
    label: str = "",
    cats: Sequence[str] | None = None,
    notes: Sequence[str] | None = None,
    marks: Sequence[bool] | None = None,
    offset: int = 0,
) -> dict[str, Any]:
    """One line of a `TokenStrip`: numeric `values` or categorical `cats` (names of the strip's categories)."""
    row: dict[str, Any] = {
        "label": label,
        "tokens": list(tokens),
        "ids": [int(i) for i in ids],
        "offset": offset,
    }
    if values is not None:
        row["values"] = [None if v is None else _finite(v) for v in values]
    if cats is not None:
        row["cats"] = list(cats)
    if notes is not None:
        row["notes"] = list(notes)
    if marks is not None:
        row["marks"] = [bool(m) for m in marks]
    return row


def strip_value(
    rows: Sequence[Mapping[str, Any]],
    *,
    label: str,
    unit: str = "",
    vmin: float | None = None,
    vmax: float | None = None,
    scale: str = "oranges",
    categories: Mapping[str, str] | None = None,
    title: str | None = None,
    digits: int = 2,
    positions: Sequence[int] = (),
    caption: str | None = None,
    filename: str | None = None,
) -> dict[str, Any]:
    """The value of a `TokenStrip`: rows from `strip_row`; the legend says `label` from vmin to vmax in `unit`
    (default: the values' range), or names the `categories` {name: "#rrggbb"}."""
    lo, hi = _range([v for r in rows for v in r.get("values") or [] if v is not None], vmin, vmax, scale)
    return {
        "kind": "strip", "rows": [dict(r) for r in rows], "label": label, "unit": unit, "vmin": lo,
        "vmax": hi if hi > lo else lo + 1, "scale": scale, "categories": dict(categories) if categories else None,
        "title": title, "digits": digits, "positions": list(positions), "caption": caption,
        "filename": filename or title or label,
    }  # fmt: skip
