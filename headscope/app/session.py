"""Session files: every tab's registered components (`SessionParts.add`) as one JSON bundle that loads back
to the same state. The format without UI (base64 bytes, safe names, inert text, figures and tables, the
bundle's checks) is headscope/session.py; here values are encoded and decoded by the type of their component
(README: Session files)."""

from __future__ import annotations

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

from headscope import session as codec
from headscope.app import downloads
from headscope.app import selection_bar as sel_mod
from headscope.app.figures import json_file, with_export
from headscope.app.state import user_errors
from headscope.app.views import is_view
from headscope.errors import InputError
from headscope.files import read_bytes
from headscope.models import CATALOG
from headscope.session import MAX_SESSION_BYTES as MAX_SESSION_BYTES  # re-exported (tests)
from headscope.session import as_text


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
        return codec.jsonable(value)
    if isinstance(component, gr.File):
        paths = value if isinstance(value, list) else [value]
        return [_file_entry(p) for p in paths if p] or None
    return codec.jsonable(value)


def _file_entry(value: Any) -> dict[str, str]:
    if isinstance(value, bytes | bytearray):
        return {"name": "upload.bin", "b64": codec.b64(bytes(value))}
    path = Path(str(value))
    data = read_bytes(path, "session part", limit=codec.MAX_FILE_BYTES)
    return {"name": codec.safe_name(path.name), "b64": codec.b64(data)}


def decode(component: Any, value: Any) -> Any:
    """JSON from a session file → what the component is set to."""
    if value is None:
        return None
    if isinstance(component, gr.Markdown):
        return as_text(value)
    if isinstance(component, gr.Plot):
        return with_export(PlotData(type="plotly", plot=json.dumps(codec.inert_figure(value))))
    if isinstance(component, gr.Dataframe):
        return codec.inert_table(value)
    if isinstance(component, gr.File):
        return _restore_files(value, getattr(component, "file_count", "single") != "single")
    if isinstance(component, gr.HTML) and not is_view(component):
        raise InputError("session file: markup is never loaded from a file")
    if is_view(component) and value is not None and not isinstance(value, dict):
        raise InputError("session file: a view's value must be data")
    return codec.unjsonable(value)


def _restore_files(entries: Any, many: bool) -> Any:
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise InputError("session file: files must be a list of {name, b64}")
    folder = downloads.folder("headscope-session-")
    paths = []
    for i, e in enumerate(entries):
        data = codec.unb64(e.get("b64"), f"file {i}")
        name = codec.safe_name(e.get("name"))
        path = folder / (f"{i}_{name}" if len(entries) > 1 else name)
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
    return codec.make_bundle(model, sel_mod.clean(selection).to_json(), tabs)


def read_bundle(data: Any) -> dict[str, Any]:
    """A session file, checked (headscope/session.py); its model must be a catalog name."""
    return codec.read_bundle(data, CATALOG)


def import_values(parts: SessionParts, bundle: dict[str, Any]) -> list[Any]:
    """Values for [model, selection state, heads box, positions box, *every registered component]; a component
    the file does not mention is left as it is."""
    out: list[Any] = [bundle["model"], *sel_mod.shown(sel_mod.clean(bundle.get("selection")))]
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
