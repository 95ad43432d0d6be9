"""Static figures (plotly, exported as SVG), tables, numbers as people read them, and result downloads."""

from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Mapping, Sequence
from typing import Any

import gradio as gr
import plotly.graph_objects as go
from gradio.components.plot import PlotData
from plotly.subplots import make_subplots

from headscope.app import downloads

MODEBAR: dict[str, Any] = {
    "displaylogo": False,
    "displayModeBar": True,
    "modeBarButtonsToRemove": ["sendDataToCloud", "lasso2d", "select2d"],
    "toImageButtonOptions": {"format": "svg", "scale": 1},
}


def with_export(data: PlotData | None, label: str | None = None) -> PlotData | None:
    """Plot data with the modebar config added (the camera saves an SVG named after the figure's title)."""
    if data is None or data.type != "plotly" or not data.plot:
        return data
    fig = json.loads(data.plot)
    title = ((fig.get("layout") or {}).get("title") or {}).get("text") or label or "figure"
    name = re.sub(r"[^A-Za-z0-9_.=-]+", "_", str(title)).strip("_")[:80] or "figure"
    fig["config"] = {**MODEBAR, "toImageButtonOptions": {**MODEBAR["toImageButtonOptions"], "filename": name}}
    return PlotData(type="plotly", plot=json.dumps(fig))


def Plot(value: Any = None, **kw: Any) -> gr.Plot:  # named like the component it makes
    """`gr.Plot` with export: every figure it shows carries the modebar config (`with_export`). A configured
    instance, not a subclass: gradio writes a .pyi stub beside the module of every component subclass."""
    plot = gr.Plot(**kw)
    plain = plot.postprocess

    def postprocess(v: Any) -> PlotData | None:
        return with_export(plain(v), plot.label if isinstance(plot.label, str) else None)

    setattr(plot, "postprocess", postprocess)  # noqa: B010 (an instance attribute shadows the method)
    if value is not None:
        data = postprocess(value)
        plot.value = data.model_dump() if data is not None else None  # as Component.__init__ stores it
    return plot


def fmt_num(x: Any, digits: int = 3) -> str:
    """A number for people: fixed digits, scientific only when tiny or huge; "n/a" for None/NaN."""
    if x is None or isinstance(x, bool):
        return "n/a"
    v = float(x)
    if not math.isfinite(v):
        return "n/a"
    if v != 0 and (abs(v) < 10**-digits or abs(v) >= 1e6):
        return f"{v:.2e}"
    return f"{v:.{digits}f}"


def fmt_prob(p: Any) -> str:
    """A probability: "31.2%", "0.42%", "1.8e-04" below 0.01% — never an SI prefix."""
    if p is None:
        return "n/a"
    v = float(p)
    if not math.isfinite(v):
        return "n/a"
    if v >= 0.001:
        return f"{100 * v:.{1 if v >= 0.1 else 2}f}%"
    return f"{v:.1e}"


def _round(x: Any, digits: int) -> Any:
    # array scalars register as numbers.Integral / numbers.Real: no array library needed here
    if isinstance(x, bool):
        return x
    if isinstance(x, numbers.Integral):
        return int(x)
    if isinstance(x, numbers.Real):
        v = float(x)
        return round(v, digits) if math.isfinite(v) else None
    return x


def table(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]], digits: int = 4
) -> dict[str, Any]:
    """A `gr.Dataframe` value: `columns` [(key, header with unit)], numbers rounded to `digits`."""
    return {
        "headers": [h for _, h in columns],
        "data": [[_round(r.get(k), digits) for k, _ in columns] for r in rows],
    }


def curves(
    x: Sequence[float],
    panels: Sequence[tuple[str, str, Sequence[float | None]]],
    *,
    x_label: str,
    title: str,
    mark_x: float | None = None,
) -> go.Figure:
    """Side-by-side line panels sharing x: each (panel title, y-axis label with unit, values)."""
    # a wider gap than plotly's 0.2 / panels: each y-axis title sits clear of the panel on its left
    fig = make_subplots(
        rows=1, cols=len(panels), subplot_titles=[p[0] for p in panels], horizontal_spacing=0.12
    )
    for col, (name, y_label, ys) in enumerate(panels, start=1):
        fig.add_trace(
            go.Scatter(
                x=list(x), y=list(ys), mode="lines+markers", name=name,
                hovertemplate=f"{x_label} = %{{x}}<br>{y_label}: %{{y:.4g}}<extra></extra>",
            ), row=1, col=col,
        )  # fmt: skip
        fig.update_xaxes(title_text=x_label, row=1, col=col)
        fig.update_yaxes(title_text=y_label, row=1, col=col)
        if mark_x is not None:
            fig.add_vline(x=mark_x, line_dash="dot", line_color="#ff6d00", row=1, col=col)  # pyright: ignore[reportArgumentType]
    fig.update_layout(title={"text": title}, height=380, showlegend=False, margin={"t": 80})
    return fig


def json_file(payload: Any, name: str) -> str:
    """Write `payload` as `<name>.json` in a fresh folder of the visitor's (`downloads.folder`: removed when they
    leave, the total capped); gradio serves it as a download."""
    safe = re.sub(r"[^A-Za-z0-9_.=-]+", "_", name).strip("_") or "result"
    path = downloads.folder() / f"{safe}.json"
    path.write_text(json.dumps(payload, indent=1, ensure_ascii=False), encoding="utf-8")
    return str(path)


def reveal_when_set(blocks: gr.Blocks) -> None:
    """No empty table with placeholder headers ("1 2 3"), no empty download box and no empty plot frame, in every
    tab: each output `gr.Dataframe` / `gr.File` / `gr.Plot` that starts without a value starts hidden and shows
    itself when a value arrives (and hides again when cleared). Runs once over the built app (main.build_demo)."""
    inputs = {id(b) for fn in blocks.fns.values() for b in fn.inputs}  # an input table may be typed into
    for comp in list(blocks.blocks.values()):
        if not isinstance(comp, gr.Dataframe | gr.File | gr.Plot):
            continue
        shown_only = (
            isinstance(comp, gr.Plot)  # never typed into (a session export reads plots as inputs)
            or comp.interactive is False
            or (comp.interactive is None and id(comp) not in inputs)
        )
        if shown_only and _empty(comp.value) and comp.visible is True:
            comp.visible = False
            comp.change(_visible_if_set, [comp], [comp], queue=False, show_progress="hidden",
                        api_visibility="private")  # fmt: skip


def _empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, dict):
        return not value.get("data") or value.get("data") == [["", "", ""]]
    return False


def _visible_if_set(value: Any) -> Any:
    rows = getattr(value, "shape", None)
    has = bool(rows[0]) if rows is not None else not _empty(value)
    return gr.update(visible=has)


class RawResult:
    """A result's download (`file`: the CLI's JSON, written with `json_file`) and its raw JSON (`json`), collapsed."""

    def __init__(self, what: str, *, elem_id: str | None = None):
        self.file = gr.File(
            label=f"Download {what} (JSON, as the CLI writes it)", interactive=False, elem_id=elem_id
        )
        with gr.Accordion(f"{what}: raw JSON", open=False):
            self.json = gr.JSON(label=f"{what} (raw)", show_label=False)
