"""Session files: the whole session — model, selection, each tab's inputs and results, report and vector files —
as one JSON bundle that loads back to the same state.

Each tab contributes its state once, at build time: `ctx.session.add("circuits", task=task, report=file, ...)`
(stable keys: they are the file's field names). Values are encoded by component type: plain values as they are,
plots as plotly JSON, tables as headers + rows, files and bytes (report, vector files, `gr.State` bytes) as
base64 with their name. On import every value is decoded by the type of the component it goes to (never by a
tag in the file), file names are reduced to a safe basename, and the model must be a catalog name. A plain
`gr.HTML` whose value is markup cannot be registered: markup from a file would be injected into the page; register
the data it is drawn from and a `rebuild` event instead (views from `views.py` hold data and are fine).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
from gradio.components.plot import PlotData

from headscope.app import downloads
from headscope.app import selection_bar as sel_mod
from headscope.app.figures import json_file, with_export
from headscope.app.state import user_errors
from headscope.app.views import is_view
from headscope.errors import InputError
from headscope.files import read_bytes
from headscope.models import CATALOG

FORMAT = "headscope-session"
VERSION = 1
MAX_SESSION_BYTES = 16_000_000
MAX_FILE_BYTES = 8_000_000


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise InputError(f"session file: {what} is not base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise InputError(f"session file: {what} is not valid base64") from None


def _safe_name(name: Any) -> str:
    base = Path(str(name or "file")).name
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", base).strip("._")[:100] or "file"


def _jsonable(value: Any) -> Any:
    """bytes anywhere inside a value → {"$bytes": base64} (gr.State may hold safetensors bytes)."""
    if isinstance(value, bytes | bytearray):
        return {"$bytes": _b64(bytes(value))}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _unjsonable(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$bytes"}:
            return _unb64(value["$bytes"], "bytes")
        return {k: _unjsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unjsonable(v) for v in value]
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


def _inert(value: Any, fix: Any) -> Any:
    if isinstance(value, str):
        return fix(value)
    if isinstance(value, list):
        return [_inert(v, fix) for v in value]
    if isinstance(value, dict):
        return {k: _inert(v, fix) for k, v in value.items()}
    return value


def _inert_figure(fig: dict[str, Any]) -> dict[str, Any]:
    """A plotly figure from a file without remote images or links (plotly draws <a href> in any label)."""
    layout = dict(fig.get("layout") or {})
    layout.pop("images", None)
    return _inert({"data": fig.get("data") or [], "layout": layout}, _inert_text)


def _inert_text(text: str) -> str:
    """Plain text for a place that draws a little markup (plotly labels, table cells): no tags that link, load
    or run anything, and no web address."""
    return _no_links(_TAG.sub("", text))


# ---- per component type ------------------------------------------------------------------------------------------
def encode(component: Any, value: Any) -> Any:
    """A component's current value (as its event handler receives it) → JSON."""
    if value is None:
        return None
    if isinstance(component, gr.Plot):
        return json.loads(value.plot) if isinstance(value, PlotData) and value.plot else None
    if isinstance(component, gr.Dataframe):
        if isinstance(value, pd.DataFrame):
            return {
                "headers": [str(c) for c in value.columns],
                "data": json.loads(value.to_json(orient="values") or "[]"),
            }
        return _jsonable(value)
    if isinstance(component, gr.File):
        paths = value if isinstance(value, list) else [value]
        return [_file_entry(p) for p in paths if p] or None
    return _jsonable(value)


def _file_entry(value: Any) -> dict[str, str]:
    if isinstance(value, bytes | bytearray):
        return {"name": "upload.bin", "b64": _b64(bytes(value))}
    path = Path(str(value))
    return {
        "name": _safe_name(path.name),
        "b64": _b64(read_bytes(path, "session part", limit=MAX_FILE_BYTES)),
    }


def decode(component: Any, value: Any) -> Any:
    """JSON from a session file → what the component is set to."""
    if value is None:
        return None
    if isinstance(component, gr.Markdown):
        return as_text(value)
    if isinstance(component, gr.Plot):
        if not isinstance(value, dict):
            raise InputError("session file: a figure is not a plotly figure")
        fig = {k: value[k] for k in ("data", "layout") if k in value}
        return with_export(PlotData(type="plotly", plot=json.dumps(_inert_figure(fig))))
    if isinstance(component, gr.Dataframe):
        if not (
            isinstance(value, dict)
            and isinstance(value.get("headers"), list)
            and isinstance(value.get("data"), list)
        ):
            raise InputError("session file: a table needs headers and data")
        return {
            "headers": [_inert_text(str(h)) for h in value["headers"]],
            "data": _inert(value["data"], _inert_text),
        }
    if isinstance(component, gr.File):
        return _restore_files(value, getattr(component, "file_count", "single") != "single")
    if isinstance(component, gr.HTML) and not is_view(component):
        raise InputError("session file: markup is never loaded from a file")
    if is_view(component) and value is not None and not isinstance(value, dict):
        raise InputError("session file: a view's value must be data")
    return _unjsonable(value)


def _restore_files(entries: Any, many: bool) -> Any:
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise InputError("session file: files must be a list of {name, b64}")
    folder = downloads.folder("headscope-session-")
    paths = []
    for i, e in enumerate(entries):
        data = _unb64(e.get("b64"), f"file {i}")
        path = (
            folder / f"{i}_{_safe_name(e.get('name'))}"
            if len(entries) > 1
            else folder / _safe_name(e.get("name"))
        )
        path.write_bytes(data)
        paths.append(str(path))
    return paths if many else paths[0]


# ---- registry ----------------------------------------------------------------------------------------------------
@dataclass
class SessionParts:
    """What each tab keeps in a session file; `ctx.session` in every tab's build function."""

    parts: dict[str, dict[str, Any]] = field(default_factory=dict)
    rebuilds: list[tuple[Callable[..., Any], list[Any], list[Any]]] = field(default_factory=list)

    def add(self, tab: str, **components: Any) -> None:
        """Register `tab`'s components under stable keys (inputs and results alike)."""
        if not re.fullmatch(r"[a-z][a-z0-9_]*", tab):
            raise ValueError(f"session part names are lower_snake_case, got {tab!r}")
        part = self.parts.setdefault(tab, {})
        for key, comp in components.items():
            if key in part:
                raise ValueError(f"session part {tab!r} already has {key!r}")
            if isinstance(comp, gr.HTML) and not is_view(comp):
                raise TypeError(
                    f"{tab}.{key}: a plain gr.HTML holds markup, which a session file must not carry; register the "
                    "data it is drawn from and pass `rebuild=` to redraw it"
                )
            part[key] = comp

    def rebuild(self, fn: Callable[..., Any], inputs: Sequence[Any], outputs: Sequence[Any]) -> None:
        """After an import, run `fn(*inputs) -> outputs` (e.g. redraw a plain-HTML view from restored data)."""
        self.rebuilds.append((fn, list(inputs), list(outputs)))

    def flat(self) -> list[tuple[str, str, Any]]:
        return [(tab, key, comp) for tab, part in self.parts.items() for key, comp in part.items()]


def export_bundle(parts: SessionParts, model: Any, selection: Any, values: Sequence[Any]) -> dict[str, Any]:
    tabs: dict[str, dict[str, Any]] = {}
    for (tab, key, comp), value in zip(parts.flat(), values, strict=True):
        tabs.setdefault(tab, {})[key] = encode(comp, value)
    return {
        "format": FORMAT, "version": VERSION, "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "model": model, "selection": sel_mod._clean(selection).to_json(), "tabs": tabs,
    }  # fmt: skip


def read_bundle(data: Any) -> dict[str, Any]:
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
    if bundle.get("model") not in CATALOG:
        raise InputError(f"session file: model {bundle.get('model')!r} is not in the catalog")
    if not isinstance(bundle.get("tabs", {}), dict):
        raise InputError("session file: 'tabs' must be an object")
    return bundle


def import_values(parts: SessionParts, bundle: dict[str, Any]) -> list[Any]:
    """Values for [model, selection state, heads box, positions box, *every registered component]; a component
    the file does not mention is left as it is."""
    selection = sel_mod._clean(bundle.get("selection"))
    out: list[Any] = [
        bundle["model"],
        selection,
        sel_mod.describe(selection),
        sel_mod.describe_positions(selection),
    ]
    tabs = bundle.get("tabs") or {}
    for tab, key, comp in parts.flat():
        saved = tabs.get(tab) if isinstance(tabs.get(tab), dict) else None
        out.append(decode(comp, saved[key]) if saved is not None and key in saved else gr.skip())
    return out


@dataclass(frozen=True)
class SessionControls:
    export: gr.Button
    download: gr.File
    upload: gr.UploadButton

    @classmethod
    def build(cls) -> SessionControls:
        """Two small buttons and the download slot, in a narrow column beside the model picker."""
        with gr.Column(scale=1, min_width=200, elem_id="hs-session"):
            with gr.Row():
                export = gr.Button("Export session", size="sm", elem_id="hs-session-export")
                upload = gr.UploadButton(
                    "Import session",
                    file_types=[".json"],
                    type="binary",
                    size="sm",
                    elem_id="hs-session-import",
                )
            download = gr.File(
                label="Session file", interactive=False, visible=False, elem_id="hs-session-file"
            )
        return cls(export, download, upload)

    def wire(self, parts: SessionParts, model: Any, bar: sel_mod.SelectionBar) -> None:
        comps = [c for _, _, c in parts.flat()]

        @user_errors
        def do_export(model_name: str, selection: Any, *values: Any) -> Any:
            bundle = export_bundle(parts, model_name, selection, values)
            stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            return gr.update(value=json_file(bundle, f"headscope-session-{stamp}"), visible=True)

        @user_errors
        def do_import(data: Any) -> list[Any]:
            return import_values(parts, read_bundle(data))

        self.export.click(do_export, [model, bar.state, *comps], [self.download], api_name="session_export")
        event = self.upload.upload(
            do_import, [self.upload], [model, *bar.outputs, *comps], api_name="session_import"
        )
        for fn, inputs, outputs in parts.rebuilds:
            event = event.then(fn, inputs, outputs, api_visibility="private")
