"""Attention & locality tab: entropy heatmap and per-token shading under a locality dial, a single-head pattern
viewer, and a λ sweep drawn as curves. Wiring only: the work is in `headscope.probes` and `headscope.attention`."""

from __future__ import annotations

import html
from typing import Any

import gradio as gr
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from headscope.app.inputs import number
from headscope.app.registry import AppContext, register_tab
from headscope.app.state import MODEL_CONCURRENCY_ID, STORE, user_errors
from headscope.attention import MODES, LocalityDial, dial_hooks
from headscope.errors import InputError
from headscope.models import ModelHandle
from headscope.probes import (
    MAX_PATTERN_TOKENS,
    ProbeConfig,
    SweepConfig,
    eval_tokens,
    head_pattern,
    probe_attention,
    sweep_locality,
)

APP_MAX_TOKENS = 1024  # one user's analysis must not hold the shared model for long
APP_MAX_CHARS = 20_000
SWEEP_TOKENS = 256
SWEEP_LAMBDAS = tuple(round(k / 10, 1) for k in range(11))
APP_SCHEDULES = ("uniform", "progressive")
DEFAULT_TEXT = (
    "The cat sat on the mat. It was warm, and the sun was shining. "
    "Later that day the cat went inside, because the rain had started."
)


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError("text is empty")
    if len(value) > APP_MAX_CHARS:
        raise InputError(f"text is {len(value)} characters long; the app takes at most {APP_MAX_CHARS}")
    return value


def _dial(lam: Any, mode: Any, schedule: Any, beta: Any) -> LocalityDial:
    if schedule not in APP_SCHEDULES:
        raise InputError(f"schedule must be one of {', '.join(APP_SCHEDULES)}, got {schedule!r}")
    lam_v = number(lam, "lambda", 0.0, 1.0)
    return LocalityDial(
        lam=lam_v, mode=str(mode), schedule=str(schedule), beta=number(beta, "beta", 1.0, 20.0)
    )


def _handle_and_tokens(model: Any, text: Any) -> tuple[ModelHandle, Any]:
    handle = STORE.get(str(model))
    return handle, handle.tokenize(_text(text), max_tokens=min(APP_MAX_TOKENS, handle.max_tokens))


def _heatmap(values: np.ndarray, title: str, xlabel: str, ylabel: str, **kw: Any) -> go.Figure:
    fig = go.Figure(go.Heatmap(z=values, colorscale="Viridis", **kw))
    fig.update_layout(title=title, xaxis_title=xlabel, yaxis_title=ylabel, height=520, margin={"t": 50})
    return fig


def _shading(tokens: list[str], norm: np.ndarray) -> str:
    """Each token on a background whose opacity is its normalised entropy (mean over layers and heads)."""
    spans = []
    for tok, v in zip(tokens, norm, strict=True):
        shown = html.escape(tok).replace("\n", "↵<br>")
        spans.append(
            f'<span title="{v:.3f}" style="background: rgba(220, 80, 30, {float(v):.3f}); '
            f'padding: 1px 0; white-space: pre-wrap">{shown}</span>'
        )
    return '<div style="line-height: 1.9; font-family: monospace">' + "".join(spans) + "</div>"


@user_errors
def analyse(
    model: str, text: str, lam: float, mode: str, schedule: str, beta: float,
    progress: gr.Progress = gr.Progress(),  # noqa: B008
) -> tuple[go.Figure, str, dict[str, Any]]:  # fmt: skip
    """Entropy per layer × head (heatmap), per-token shading and a summary, for the text under the dial."""
    dial = _dial(lam, mode, schedule, beta)
    progress(0.1, desc="loading model")
    handle, tokens = _handle_and_tokens(model, text)
    cfg = ProbeConfig(target="block" if dial.mode == "block" else "local")
    progress(0.4, desc="running")
    probes = probe_attention(handle, tokens, cfg=cfg, dial=dial)
    means = probes.head_means()
    fig = _heatmap(means["entropy_bits"], f"attention entropy (bits), λ = {dial.lam:g}", "head", "layer")
    norm = probes.normalised_entropy.mean((0, 1))
    summary = {k: v for k, v in probes.to_json().items() if k != "str_tokens"}
    summary["dial"] = dial.to_json()
    return fig, _shading(list(probes.str_tokens), norm), summary


@user_errors
def pattern(
    model: str, text: str, lam: float, mode: str, schedule: str, beta: float, layer: float, head: float
) -> tuple[go.Figure, dict[str, Any]]:
    """One head's attention pattern under the dial (texts of at most MAX_PATTERN_TOKENS tokens)."""
    dial = _dial(lam, mode, schedule, beta)
    handle, tokens = _handle_and_tokens(model, text)
    layer_i = int(number(layer, "layer", 0, handle.facts.n_layers - 1))
    head_i = int(number(head, "head", 0, handle.facts.n_heads - 1))
    if tokens.shape[1] > MAX_PATTERN_TOKENS:
        raise InputError(
            f"the pattern viewer takes at most {MAX_PATTERN_TOKENS} tokens, got {tokens.shape[1]}"
        )
    a = head_pattern(handle, tokens, layer_i, head_i, fwd_hooks=dial_hooks(handle, tokens, dial))
    labels = [f"{i}:{t}" for i, t in enumerate(handle.str_tokens(tokens))]
    fig = _heatmap(a, f"layer {layer_i} head {head_i}", "key", "query", x=labels, y=labels)
    fig.update_yaxes(autorange="reversed")
    return fig, {
        "layer": layer_i,
        "head": head_i,
        "n_tokens": len(labels),
        "pattern": np.round(a, 5).tolist(),
    }


@user_errors
def sweep(
    model: str, text: str, mode: str, schedule: str, beta: float,
    progress: gr.Progress = gr.Progress(),  # noqa: B008
) -> tuple[go.Figure, dict[str, Any]]:  # fmt: skip
    """An 11-point λ sweep on the text (cut to SWEEP_TOKENS tokens): entropy, perplexity, pointer fidelity."""
    cfg = SweepConfig(lambdas=SWEEP_LAMBDAS, dial=_dial(0.0, mode, schedule, beta))
    handle = STORE.get(str(model))
    tokens, cut = eval_tokens(handle, _text(text), max_tokens=min(SWEEP_TOKENS, handle.max_tokens))
    progress(0.0, desc="λ sweep")
    result = sweep_locality(
        handle, tokens, cfg, truncated_from=cut,
        progress=lambda done, total: progress(done / total, desc=f"λ point {done}/{total}"),
    )  # fmt: skip
    payload = result.to_json()
    return _sweep_figure(payload["rows"]), payload


def _sweep_figure(rows: list[dict[str, float]]) -> go.Figure:
    lams = [r["lambda"] for r in rows]
    names = [("mean_entropy_bits", "entropy (bits)"), ("perplexity", "perplexity"),
             ("pointer_fidelity", "pointer fidelity")]  # fmt: skip
    fig = make_subplots(rows=1, cols=3, subplot_titles=[t for _, t in names])
    for col, (key, title) in enumerate(names, start=1):
        fig.add_trace(go.Scatter(x=lams, y=[r[key] for r in rows], mode="lines+markers", name=title), 1, col)
        fig.update_xaxes(title_text="λ", row=1, col=col)
    fig.update_layout(height=380, showlegend=False, margin={"t": 60})
    return fig


def _model_event(button: gr.Button, fn: Any, inputs: list[Any], outputs: list[Any], api_name: str) -> None:
    button.click(fn, inputs=inputs, outputs=outputs, api_name=api_name,
                 concurrency_id=MODEL_CONCURRENCY_ID, concurrency_limit=1)  # fmt: skip


@register_tab("Attention & locality", order=10)
def build(ctx: AppContext) -> None:
    gr.Markdown(
        "Attention entropy per layer × head, under an inference-time **locality dial** (λ = 0: the model as is). "
        f"Texts up to {APP_MAX_TOKENS} tokens; the pattern viewer up to {MAX_PATTERN_TOKENS}; "
        f"the sweep uses the first {SWEEP_TOKENS} tokens."
    )
    text = gr.Textbox(label="Text", value=DEFAULT_TEXT, lines=4, max_length=APP_MAX_CHARS)
    with gr.Row():
        lam = gr.Slider(0.0, 1.0, value=0.0, step=0.05, label="λ (locality)")
        mode = gr.Dropdown(list(MODES), value="distance", label="Mode")
        schedule = gr.Dropdown(list(APP_SCHEDULES), value="uniform", label="Layer schedule")
        beta = gr.Number(value=3.0, minimum=1.0, maximum=20.0, label="β (progressive)")
    dial = [lam, mode, schedule, beta]
    run = gr.Button("Analyse", variant="primary")
    heat, shade, summary = gr.Plot(label="Entropy per layer × head"), gr.HTML(), gr.JSON(label="Summary")
    _model_event(run, analyse, [ctx.model, text, *dial], [heat, shade, summary], "locality_analyse")
    with gr.Row():
        layer = gr.Number(value=0, precision=0, minimum=0, label="Layer")
        head = gr.Number(value=0, precision=0, minimum=0, label="Head")
        show = gr.Button("Show head pattern")
    pat, pat_json = gr.Plot(label="Attention pattern"), gr.JSON(visible=False)
    _model_event(show, pattern, [ctx.model, text, *dial, layer, head], [pat, pat_json], "locality_pattern")
    go_sweep = gr.Button("Sweep λ from 0 to 1 (11 points)")
    curves, table = gr.Plot(label="λ sweep"), gr.JSON(label="Sweep rows")
    _model_event(go_sweep, sweep, [ctx.model, text, mode, schedule, beta], [curves, table], "locality_sweep")
