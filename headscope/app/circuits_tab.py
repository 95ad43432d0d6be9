"""Circuits tab: run the discrete-SAE circuit finder with its same-run baselines; heatmaps, ROC, the circuit;
download the report; upload one report to view it or two to compare. Wiring only: the work is in
`headscope.circuits`. Uploaded reports arrive as bytes (size-limited and schema-validated), never as a path."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from headscope.app.inputs import integer
from headscope.app.registry import AppContext, register_tab
from headscope.app.state import MODEL_CONCURRENCY_ID, STORE, user_errors
from headscope.circuits.finder import CircuitConfig, find_circuit
from headscope.circuits.report import MAX_REPORT_BYTES, compare_reports, loads_report, write_report
from headscope.circuits.sae import SAEConfig
from headscope.circuits.tasks import TASKS
from headscope.errors import InputError

TASK_CHOICES = [*TASKS, "custom"]
APP_MAX_EXAMPLES = 32  # one user's run must not hold the shared model for long
APP_MAX_EPOCHS = 500
APP_MAX_TASK_CHARS = 50_000
EXAMPLE_CUSTOM = json.dumps(
    {
        "name": "repeat",
        "positive": [{"prompt": "one two three one two", "answer": " three", "wrong": " one"}],
        "negative": [{"prompt": "one two three four five"}],
    }
)


def _config(task: Any, n_examples: Any, seed: Any, epochs: Any, reduce: Any) -> CircuitConfig:
    if task not in TASK_CHOICES:
        raise InputError(f"task must be one of {', '.join(TASK_CHOICES)}, got {task!r}")
    return CircuitConfig(
        task=str(task),
        n_examples=integer(n_examples, "examples", 6, APP_MAX_EXAMPLES),
        seed=integer(seed, "seed", 0, 2**31 - 1),
        sae=SAEConfig(epochs=integer(epochs, "epochs", 1, APP_MAX_EPOCHS)),
        reduce="last" if reduce == "last" else "mean",
    )


def _custom_text(task: str, text: Any) -> str | None:
    if task != "custom":
        return None
    if not isinstance(text, str) or not text.strip():
        raise InputError("paste the custom task as JSON")
    if len(text) > APP_MAX_TASK_CHARS:
        raise InputError(f"custom task is longer than {APP_MAX_TASK_CHARS} characters")
    return text


# ---- figures -----------------------------------------------------------------------------------------------------
def heatmaps(report: dict[str, Any]) -> go.Figure:
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=("SAE node score", "ground truth: activation patching effect")
    )
    grids = {"sae_node": report["methods"]["sae_node"]["scores"], "truth": report["ground_truth"]["effects"]}
    for col, m, scale in ((1, "sae_node", "Viridis"), (2, "truth", "RdBu")):
        z = np.array(grids[m])
        extra = {"zmid": 0} if scale == "RdBu" else {}
        fig.add_trace(go.Heatmap(z=z, colorscale=scale, showscale=False, **extra), row=1, col=col)
        fig.update_xaxes(title_text="head", row=1, col=col)
        fig.update_yaxes(title_text="layer", row=1, col=col)
    fig.update_layout(height=520, margin={"t": 50})
    return fig


def roc_figure(report: dict[str, Any]) -> go.Figure:
    """Draws the ROC points the circuits package computed (report metrics), never recomputes them."""
    fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot"}, name="chance"))
    for m, metrics in report["metrics"].items():
        roc = metrics.get("roc") or {"fpr": [], "tpr": []}
        fpr, tpr = roc["fpr"], roc["tpr"]
        auc = metrics.get("roc_auc")
        fig.add_trace(
            go.Scatter(x=fpr, y=tpr, mode="lines", name=f"{m} ({'n/a' if auc is None else f'{auc:.3f}'})")
        )
    fig.update_layout(
        title="ROC vs the patching ground truth", xaxis_title="FPR", yaxis_title="TPR", height=420
    )
    return fig


def summary(report: dict[str, Any]) -> str:
    perf = report["task"]["performance"]
    lines = [
        f"**{report['task']['name']}** on **{report['model']['name']}** — accuracy on positives "
        f"{perf['positive']['accuracy']:.2f}, mean logit diff {perf['positive']['mean_logit_diff']:.2f} "
        f"(negatives {perf['negative']['mean_logit_diff']:.2f}); ground truth: "
        f"{len(report['ground_truth']['heads'])} heads ({report['ground_truth']['mode']} activation patching, "
        f"{report['ground_truth']['runtime_s']:.1f} s; not a scored method).",
        "",
        "| method | ROC-AUC | precision | recall | Spearman | time (s) |",
        "|---|---|---|---|---|---|",
    ]
    for m, d in report["metrics"].items():
        cells = [  # only the keys this view knows: a newer report's extra metrics are ignored
            "n/a" if d.get(k) is None else f"{d[k]:.3f}"
            for k in ("roc_auc", "precision", "recall", "spearman")
        ]
        lines.append(f"| {m} | {' | '.join(cells)} | {report['runtime_s'].get(m, 0.0):.2f} |")
    lines += [f"\n⚠ {w}" for w in report["warnings"]]
    return "\n".join(lines)


def _views(report: dict[str, Any]) -> tuple[str, go.Figure, go.Figure, dict[str, Any]]:
    circuit = {"rule": report["circuit_rule"], "circuit": report["circuit"], "ranked": report["ranked"][:30]}
    return summary(report), heatmaps(report), roc_figure(report), circuit


def _report(progress: gr.Progress, stage: str, frac: float) -> None:
    progress(frac, desc=stage)


# ---- events ------------------------------------------------------------------------------------------------------
@user_errors
def circuits_run(
    model: str, task: str, custom: str, n_examples: float, seed: float, epochs: float, reduce: str,
    progress: gr.Progress = gr.Progress(),  # noqa: B008
) -> tuple[str, go.Figure, go.Figure, dict[str, Any], dict[str, Any], str]:  # fmt: skip
    """Find the task's circuit on the selected model; returns the views, the report and a download file."""
    cfg = _config(task, n_examples, seed, epochs, reduce)
    spec = _custom_text(cfg.task, custom)
    handle = STORE.get(str(model))
    result = find_circuit(handle, cfg, task_spec=spec, progress=lambda s, f: _report(progress, s, f))
    report = result.to_json()
    out = Path(tempfile.mkdtemp(prefix="headscope-circuit-")) / "circuit_report.json"
    write_report(report, out)
    return (*_views(report), report, str(out))


def _read_upload(data: Any, what: str) -> dict[str, Any]:
    if isinstance(data, str):  # pasted JSON text
        data = data.encode("utf-8")
    if not isinstance(data, bytes):
        raise InputError(f"upload {what} as a JSON file")
    if len(data) > MAX_REPORT_BYTES:
        raise InputError(f"{what} is larger than {MAX_REPORT_BYTES // 1_000_000} MB")
    return loads_report(data)


@user_errors
def circuits_view(
    report_a: Any, report_b: Any
) -> tuple[str, go.Figure, go.Figure, dict[str, Any], dict[str, Any] | None]:
    """View an uploaded report; with a second one, also their comparison (heads added/removed, metric changes)."""
    a = _read_upload(report_a, "report A")
    diff = compare_reports(a, _read_upload(report_b, "report B")) if report_b else None
    return (*_views(a), diff)


@register_tab("Circuits", order=20)
def build(ctx: AppContext) -> None:
    gr.Markdown(
        "Find a task's circuit with a discrete sparse autoencoder (O'Neill & Bui 2024), with attribution and "
        "exhaustive activation patching in the same run as baselines (patching is the ground truth). "
        "On SmolLM2 a run takes a few minutes on CPU."
    )
    with gr.Row():
        task = gr.Dropdown(TASK_CHOICES, value="ioi", label="Task")
        n_examples = gr.Slider(6, APP_MAX_EXAMPLES, value=16, step=1, label="Prompt pairs")
        seed = gr.Number(0, precision=0, label="Seed")
        epochs = gr.Slider(1, APP_MAX_EPOCHS, value=500, step=1, label="SAE epochs")
        reduce = gr.Radio(["mean", "last"], value="mean", label="Head output: positions")
    custom = gr.Code(EXAMPLE_CUSTOM, language="json", label="Custom task (task = custom)")
    run = gr.Button("Find circuit", variant="primary")
    text = gr.Markdown()
    with gr.Row():
        maps = gr.Plot(label="Layer × head")
        roc = gr.Plot(label="ROC")
    circuit = gr.JSON(label="Circuit")
    report = gr.JSON(label="Report", visible=False)
    download = gr.File(label="Download report")
    run.click(
        circuits_run, inputs=[ctx.model, task, custom, n_examples, seed, epochs, reduce],
        outputs=[text, maps, roc, circuit, report, download], api_name="circuits_run",
        concurrency_id=MODEL_CONCURRENCY_ID, concurrency_limit=1,
    )  # fmt: skip
    gr.Markdown("### View or compare reports")
    with gr.Row():
        up_a = gr.File(type="binary", file_types=[".json"], label="Report A")
        up_b = gr.File(type="binary", file_types=[".json"], label="Report B (optional: compare)")
    view = gr.Button("View")
    diff = gr.JSON(label="Comparison (B relative to A)")
    view.click(
        circuits_view, inputs=[up_a, up_b], outputs=[text, maps, roc, circuit, diff], api_name="circuits_view"
    )
