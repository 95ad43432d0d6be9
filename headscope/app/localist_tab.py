"""Localist models tab: the shipped λ-sweep table and curves, and a shipped checkpoint's attention next to the
distributed (λ = 0) one on the same text. Wiring only: the work is in `headscope.localist.train_*`."""

from __future__ import annotations

import math
from typing import Any

import gradio as gr
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from headscope.app.registry import AppContext, register_tab
from headscope.app.state import MODEL_CONCURRENCY_ID, STORE, user_errors
from headscope.errors import HeadscopeError, InputError
from headscope.localist.train_inspect import (
    DISTRIBUTED_MODEL,
    SHIPPED_MODELS,
    AttentionReading,
    read_attention,
)
from headscope.localist.train_ship import load_table

APP_MAX_CHARS = 2_000
APP_MAX_TOKENS = 256
DEFAULT_TEXT = (
    "The river rises in the hills north of the town. It flows south through farmland. "
    "In the nineteenth century a mill was built on its bank."
)
TABLE_COLUMNS = ("run", "lambda", "schedule", "beta", "perplexity", "accuracy", "mean_entropy_bits",
                 "pointer_fidelity", "pointer_hit_rate", "seconds")  # fmt: skip


def _table() -> dict[str, Any] | None:
    try:
        return load_table()
    except HeadscopeError:
        return None


@user_errors
def sweep_table() -> dict[str, Any]:
    """The shipped sweep table (rows, summary, paper numbers); no model is loaded."""
    table = _table()
    if table is None:
        raise InputError("no sweep table is shipped: run `headscope localist sweep --ship`")
    return {k: table[k] for k in ("rows", "summary", "paper", "machine")}


def _rows(table: dict[str, Any] | None) -> list[list[Any]]:
    return [[r.get(c) for c in TABLE_COLUMNS] for r in (table or {}).get("rows", [])]


def sweep_figure(table: dict[str, Any] | None) -> go.Figure:
    fig = make_subplots(
        rows=1, cols=3, subplot_titles=("entropy (bits)", "test perplexity", "pointer fidelity")
    )
    aila = sorted((table or {}).get("aila", []), key=lambda r: r["lambda"])
    lams = [r["lambda"] for r in aila]
    for col, key in enumerate(("mean_entropy_bits", "perplexity", "pointer_fidelity"), start=1):
        fig.add_trace(
            go.Scatter(x=lams, y=[r[key] for r in aila], mode="lines+markers", name=key), row=1, col=col
        )
        fig.update_xaxes(title_text="λ", row=1, col=col)
    fig.update_layout(height=320, showlegend=False, margin={"t": 40, "b": 40})
    return fig


def _checked(name: Any, text: Any, layer: Any, head: Any) -> tuple[str, str, int, int]:
    if name not in SHIPPED_MODELS:
        raise InputError(f"pick one of the shipped localist models: {', '.join(SHIPPED_MODELS)}")
    if not isinstance(text, str) or not text.strip():
        raise InputError("text is empty")
    if len(text) > APP_MAX_CHARS:
        raise InputError(f"text is {len(text)} characters long; this tab takes at most {APP_MAX_CHARS}")
    idx = []
    for label, value, hi in (
        ("layer", layer, 1),
        ("head", head, 3),
    ):  # all shipped models: 2 layers × 4 heads
        x = float(value) if isinstance(value, int | float) else math.nan
        if math.isnan(x) or x != int(x) or not 0 <= x <= hi:
            raise InputError(f"{label} must be an integer in [0, {hi}], got {value!r}")
        idx.append(int(x))
    return name, text, idx[0], idx[1]


def _figures(readings: list[AttentionReading], layer: int, head: int) -> tuple[go.Figure, go.Figure]:
    titles = [r.model for r in readings]
    ent = make_subplots(rows=1, cols=len(readings), subplot_titles=titles)
    pat = make_subplots(rows=1, cols=len(readings), subplot_titles=[f"{t} · L{layer}H{head}" for t in titles])
    for col, r in enumerate(readings, start=1):
        ent.add_trace(
            go.Heatmap(z=r.entropy_bits, zmin=0, colorscale="Viridis", coloraxis="coloraxis"), 1, col
        )
        ent.update_xaxes(title_text="head", row=1, col=col)
        ent.update_yaxes(title_text="layer", row=1, col=col)
        labels = [f"{i}:{t}" for i, t in enumerate(r.str_tokens)]
        pat.add_trace(go.Heatmap(z=r.patterns[layer, head], x=labels, y=labels, zmin=0, zmax=1,
                                 coloraxis="coloraxis"), 1, col)  # fmt: skip
        pat.update_yaxes(autorange="reversed", row=1, col=col)
    ent.update_layout(height=300, coloraxis={"colorscale": "Viridis", "colorbar": {"title": "bits"}})
    pat.update_layout(height=480, coloraxis={"colorscale": "Blues"})
    return ent, pat


@user_errors
def compare_attention(
    name: str,
    text: str,
    layer: float,
    head: float,
    progress: gr.Progress = gr.Progress(),  # noqa: B008
) -> tuple[go.Figure, go.Figure, dict[str, Any]]:
    """The chosen shipped model's attention (entropy per layer × head, one head's pattern) next to λ = 0's."""
    name, text, li, hi = _checked(name, text, layer, head)
    readings = []
    for i, model in enumerate(dict.fromkeys((name, DISTRIBUTED_MODEL))):
        progress(0.1 + 0.4 * i, desc=f"running {model}")
        readings.append(read_attention(STORE.get(model), text, max_tokens=APP_MAX_TOKENS))
    ent, pat = _figures(readings, li, hi)
    return ent, pat, {"readings": [r.to_json() for r in readings], "layer": li, "head": hi}


@register_tab("Localist models", order=15)
def build(ctx: AppContext) -> None:
    table = _table()
    gr.Markdown(
        "Small models trained **from scratch** with loss CE + λ·Ω (Ω: attention mass outside the query's own "
        "sentence), the AILA λ sweep and progressive layer schedules. The three shipped checkpoints are also in "
        "the model picker above. Table: `headscope/assets/localist/sweep_table.json` (`headscope localist sweep`)."
    )
    gr.Dataframe(value=_rows(table), headers=list(TABLE_COLUMNS), label="Sweep table", interactive=False)
    gr.Plot(value=sweep_figure(table), label="λ → entropy / perplexity / pointer fidelity")
    gr.JSON(value=(table or {}).get("summary", {}), label="Summary (ours vs the paper's direction)")
    show = gr.Button("Sweep table as JSON", size="sm")
    table_json = gr.JSON(visible=True, label="Sweep table")
    show.click(sweep_table, outputs=[table_json], api_name="localist_sweep_table", queue=False)
    with gr.Row():
        model = gr.Dropdown(
            choices=list(SHIPPED_MODELS), value="localist-2l-lambda1.0", label="Shipped model"
        )
        layer = gr.Number(value=1, precision=0, minimum=0, maximum=1, label="Layer")
        head = gr.Number(value=0, precision=0, minimum=0, maximum=3, label="Head")
    text = gr.Textbox(value=DEFAULT_TEXT, lines=3, max_length=APP_MAX_CHARS, label="Text")
    run = gr.Button("Compare with the distributed model (λ = 0)", variant="primary")
    ent_plot = gr.Plot(label="Entropy per layer × head (bits)")
    pat_plot = gr.Plot(label="Attention pattern")
    summary = gr.JSON(label="Entropies")
    run.click(
        compare_attention, inputs=[model, text, layer, head], outputs=[ent_plot, pat_plot, summary],
        api_name="localist_compare", concurrency_id=MODEL_CONCURRENCY_ID, concurrency_limit=1,
    )  # fmt: skip
    del ctx
