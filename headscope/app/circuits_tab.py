"""Circuits tab: find a task's circuit as a cancellable job with staged progress — ground truth by batched
activation patching, scored methods (discrete-SAE node/edge, attribution patching, EAP-IG) — and read it as
heatmaps that mark circuit and ground-truth heads, a sortable head table, metrics, ROC and faithfulness curves,
stability and edges; ablate the shared selection ("does it explain the behaviour?"); view or compare reports.
Wiring only: the work is in `headscope.circuits`, the views in circuits_views.py. Uploaded reports arrive as
bytes (size-limited, validated, migrated), never as a path."""

from __future__ import annotations

import json
from typing import Any

import gradio as gr

from headscope.app import circuits_views as cv
from headscope.app import examples, jobs
from headscope.app import selection_bar as sel
from headscope.app.figures import Plot, RawResult
from headscope.app.inputs import choice, integer, text
from headscope.app.state import JOB_EVENT, STORE, VIEW_EVENT, user_errors
from headscope.app.tabs import AppContext, register_tab
from headscope.app.views import HeadGrid
from headscope.circuits.ablate import AblationConfig, ablate_selection
from headscope.circuits.config import CircuitConfig
from headscope.circuits.finder import find_circuit
from headscope.circuits.report import MAX_REPORT_BYTES, compare_reports, loads_report
from headscope.circuits.result import CircuitResult
from headscope.circuits.sae import SAEConfig
from headscope.circuits.tasks import TASKS, make_task
from headscope.errors import InputError
from headscope.models import ModelHandle

TASK_CHOICES = [*TASKS, "custom"]
APP_MAX_EXAMPLES = 32  # one user's run must not hold the shared model for long
APP_MAX_EPOCHS = 500
APP_MAX_TASK_CHARS = 50_000
LAYER_SCOPES = ("all layers", "last 4 layers", "last 2 layers")
OPTIONS = ("faithfulness curves", "stability (bootstrap, 100 resamples)", "edges (path patching; slow)")
EXAMPLE_CUSTOM = json.dumps(
    {
        "name": "repeat",
        "positive": [{"prompt": "one two three one two", "answer": " three", "wrong": " one"}],
        "negative": [{"prompt": "one two three four five"}],
    }
)
PAPERS = (
    ("O'Neill & Bui 2024, discrete SAEs for circuits (arXiv 2405.12522)", "https://arxiv.org/abs/2405.12522"),
    ("EAP-IG, Hanna et al. 2024 (arXiv 2403.17806)", "https://arxiv.org/abs/2403.17806"),
    ("MIB faithfulness, Mueller et al. 2025 (arXiv 2504.13151)", "https://arxiv.org/abs/2504.13151"),
)


# ---- inputs ------------------------------------------------------------------------------------------------------
def _layers(scope: Any, n_layers: int) -> tuple[int, int] | None:
    scope = choice(scope, "layers", LAYER_SCOPES)
    if scope == LAYER_SCOPES[0]:
        return None
    last = 4 if scope == LAYER_SCOPES[1] else 2
    return (max(0, n_layers - last), n_layers)


def _config(
    handle: ModelHandle, task: Any, n_examples: Any, seed: Any, epochs: Any, reduce: Any, norm: Any, scope: Any,
    options: Any,
) -> CircuitConfig:  # fmt: skip
    picked = set(options or ())
    if not picked <= set(OPTIONS):
        raise InputError(f"options must be among: {', '.join(OPTIONS)}")
    return CircuitConfig(
        task=choice(task, "task", TASK_CHOICES), n_examples=integer(n_examples, "prompt pairs", 6, APP_MAX_EXAMPLES),
        seed=integer(seed, "seed", 0, 2**31 - 1), reduce=choice(reduce, "head output", ("mean", "last")),  # type: ignore[arg-type]
        sae=SAEConfig(epochs=integer(epochs, "epochs", 1, APP_MAX_EPOCHS), decoder_norm=norm),
        layers=_layers(scope, handle.facts.n_layers), faithfulness=OPTIONS[0] in picked,
        stability=OPTIONS[1] in picked, n_bootstrap=100, edges=OPTIONS[2] in picked,
    )  # fmt: skip


def run_command(cfg: CircuitConfig) -> tuple[str, ...]:
    """The same run as a `headscope circuits run` command line whose JSON is the whole report (what a cluster
    runner executes instead of `work`; the CLI parses it back into `cfg`)."""
    argv = ["circuits", "run", "--task", cfg.task, "--n-examples", str(cfg.n_examples), "--seed", str(cfg.seed),
            "--reduce", cfg.reduce, "--epochs", str(cfg.sae.epochs), "--decoder-norm", cfg.sae.decoder_norm,
            "--n-bootstrap", str(cfg.n_bootstrap), "--gt-frac", repr(cfg.gt_frac), "--out", "-", "--print-report"]  # fmt: skip
    if cfg.layers is not None:
        argv += ["--layers", f"{cfg.layers[0]}:{cfg.layers[1]}"]
    argv += [flag for on, flag in ((cfg.edges, "--edges"), (cfg.stability, "--stability")) if on]
    return tuple(argv if cfg.faithfulness else [*argv, "--no-faithfulness"])


def _custom_text(task: str, value: Any) -> str | None:
    if task != "custom":
        return None
    if not isinstance(value, str) or not value.strip():
        raise InputError("paste the custom task as JSON")
    return text(value, "custom task", APP_MAX_TASK_CHARS)


def _selected(selection: Any) -> list[str]:
    return sel.names(selection)


# ---- views -------------------------------------------------------------------------------------------------------
def _views(result: CircuitResult, selection: Any) -> tuple[Any, ...]:
    picked = _selected(selection)
    return (
        cv.summary(result), cv.score_grid(result, "sae_node", picked), cv.truth_grid(result, picked),
        cv.head_table(result), cv.metrics_table(result), cv.roc_figure(result), cv.faithfulness_figure(result),
        cv.stability_table(result), cv.edges_table(result),
    )  # fmt: skip


# ---- events ------------------------------------------------------------------------------------------------------
@user_errors
def circuits_run(
    model: str, task: str, custom: str, n_examples: float, seed: float, epochs: float, reduce: str, norm: str,
    scope: str, options: list[str], selection: Any, request: gr.Request,
    progress: gr.Progress = gr.Progress(),  # noqa: B008
) -> tuple[Any, ...]:  # fmt: skip
    """Find the task's circuit on the selected model (a job: staged progress, Cancel)."""
    handle = STORE.get(str(model))
    cfg = _config(handle, task, n_examples, seed, epochs, reduce, norm, scope, options)
    spec = _custom_text(cfg.task, custom)

    def work(report: jobs.Reporter) -> dict[str, Any]:
        return find_circuit(handle, cfg, task_spec=spec, progress=report.stages()).to_json()

    job = jobs.JobSpec(
        f"circuit run ({cfg.task}) on {handle.identity.name}", work, model=handle.identity.name,
        command=None if spec is not None else run_command(cfg),  # a custom task's text has no flag: in-process
    )  # fmt: skip
    payload = jobs.run(job, request=request, slot="circuits_run", progress=progress)
    result = CircuitResult.from_json(payload)
    name = f"circuit_report_{cfg.task}_{handle.identity.name}"
    status = f"done: {cfg.task} on {handle.identity.name}, {len(result.circuit.heads)} circuit heads"
    return (status, *_views(result, selection), *RawResult.values(payload, name))


def _read_upload(data: Any, what: str) -> dict[str, Any]:
    if isinstance(data, str):  # pasted JSON text
        data = data.encode("utf-8")
    if not isinstance(data, bytes):
        raise InputError(f"upload {what} as a JSON file")
    if len(data) > MAX_REPORT_BYTES:
        raise InputError(f"{what} is larger than {MAX_REPORT_BYTES // 1_000_000} MB")
    return loads_report(data)


@user_errors
def circuits_view(report_a: Any, report_b: Any, selection: Any = None) -> tuple[Any, ...]:
    """View an uploaded report (1.0 reports are migrated); with a second one, also their comparison."""
    a = _read_upload(report_a, "report A")
    diff = compare_reports(a, _read_upload(report_b, "report B")) if report_b else None
    return (*_views(CircuitResult.from_json(a), selection), cv.diff_table(diff), a)


@user_errors
def circuits_ablate(
    model: str, task: str, custom: str, n_examples: float, seed: float, selection: Any, request: gr.Request,
    progress: gr.Progress = gr.Progress(),  # noqa: B008
) -> tuple[Any, ...]:  # fmt: skip
    """The task metric with the shared selection mean-ablated, and with everything but the selection ablated."""
    handle = STORE.get(str(model))
    heads = sel.head_set(selection, handle)
    if not heads:
        raise InputError("no head is selected: click heads in a grid, or add the circuit's heads")
    name = choice(task, "task", TASK_CHOICES)
    n = integer(n_examples, "prompt pairs", 6, APP_MAX_EXAMPLES)
    seed_n = integer(seed, "seed", 0, 2**31 - 1)
    cfg, spec = AblationConfig(name, n, seed_n), _custom_text(name, custom)
    make_task(
        name, handle.tokenizer, n=n, seed=seed_n, spec=spec
    )  # a bad custom task: refused before the job

    def work(report: jobs.Reporter) -> dict[str, Any]:
        return ablate_selection(handle, heads, cfg=cfg, spec=spec, progress=report).to_json()

    job = jobs.JobSpec(
        f"ablate {heads} ({name})", work, model=handle.identity.name,
        command=None if name == "custom" else  # a custom task's text has no flag: in-process
        ("circuits", "ablate", "--task", name, "--heads", str(heads), "--n-examples", str(n), "--seed", str(seed_n)),
    )  # fmt: skip
    res = jobs.run(job, request=request, slot="circuits_ablate", progress=progress)
    line = (
        f"**{name}**, heads {res['heads']} ({res['n_heads']}): clean metric {res['clean_metric']:.3f}; with the "
        f"selection ablated {res['selection_ablated']:.3f}; with only the selection kept {res['others_ablated']:.3f} "
        f"→ the selection recovers **{res['faithfulness']:.0%}** of the clean − all-ablated gap."
    )
    return line, cv.ablation_table(res), res


# ---- layout ------------------------------------------------------------------------------------------------------
@register_tab("Circuits", order=20)
def build(ctx: AppContext) -> None:
    examples.guide(
        "Which attention heads carry a task? A **ground truth** from activation patching every head (batched), "
        "and four methods scored against it: the discrete SAE's node and edge scores, attribution patching and "
        "EAP-IG.",
        "Heatmaps mark circuit heads ● and ground-truth heads ◆ (click a cell to select it); ROC is against the "
        "ground truth; faithfulness shows how much of the task the top-k heads keep when the rest are mean-ablated. "
        "On SmolLM2 a full run takes minutes on CPU: the examples analyse the last layers only.",
        PAPERS,
    )
    example_slot = gr.Column()
    with gr.Row():
        task = gr.Dropdown(TASK_CHOICES, value="ioi", label="Task")
        n_examples = gr.Slider(6, APP_MAX_EXAMPLES, value=16, step=1, label="Prompt pairs")
        seed = gr.Number(0, precision=0, label="Seed")
        epochs = gr.Slider(1, APP_MAX_EPOCHS, value=500, step=1, label="SAE epochs")
    with gr.Row():
        reduce = gr.Radio(["mean", "last"], value="mean", label="Head output: positions")
        norm = gr.Radio(["reference_rows", "atoms"], value="reference_rows", label="SAE decoder norm")
        scope = gr.Radio(list(LAYER_SCOPES), value=LAYER_SCOPES[0], label="Analyse")
        options = gr.CheckboxGroup(list(OPTIONS), value=[OPTIONS[0]], label="Also")
    with gr.Accordion("Custom task (used when Task = custom)", open=False):
        custom = gr.Code(EXAMPLE_CUSTOM, language="json", label="Custom task JSON (prompts, answer, wrong)")
    run = gr.Button("Find circuit", variant="primary")
    controls = jobs.JobControls.build("circuits_run")
    summary = gr.Markdown()
    with gr.Row():
        sae_grid = HeadGrid(label="SAE node score", elem_id="hs-circuit-sae")
        truth_grid = HeadGrid(label="Ground truth (patching effect)", elem_id="hs-circuit-truth")
    with gr.Row():
        add_circuit = gr.Button("Select the circuit's heads", size="sm")
        add_truth = gr.Button("Select the ground-truth heads", size="sm")
    metrics = gr.Dataframe(
        label="Methods against the ground truth (click a header to sort)", interactive=False
    )
    with gr.Row():
        roc = Plot(label="ROC")
        faith = Plot(label="Faithfulness")
    heads_table = gr.Dataframe(label="Heads (click a header to sort)", interactive=False, max_height=420)
    with gr.Accordion("Stability and edges", open=False):
        stab = gr.Dataframe(label="Stability under resampling", interactive=False)
        edges = gr.Dataframe(label="Edges (path patching)", interactive=False, max_height=360)
    gr.Markdown("#### Download the circuit report")
    raw = RawResult("circuit report", elem_id="hs-circuit-report")
    views = [summary, sae_grid, truth_grid, heads_table, metrics, roc, faith, stab, edges]
    run_in = [
        ctx.model,
        task,
        custom,
        n_examples,
        seed,
        epochs,
        reduce,
        norm,
        scope,
        options,
        ctx.selection.state,
    ]
    run_out = [controls.status, *views, *raw.outputs]
    event = {"show_progress_on": [controls.status], **JOB_EVENT}
    run.click(circuits_run, run_in, run_out, api_name="circuits_run", **event)
    with example_slot:
        examples.worked_example(
            [["ioi", 8, 0, 100, LAYER_SCOPES[2]], ["greater_than", 8, 0, 100, LAYER_SCOPES[2]]],
            [task, n_examples, seed, epochs, scope], circuits_run, run_in, run_out,
            labels=["IOI, last 2 layers", "greater-than, last 2 layers"], **event,
        )  # fmt: skip
    for grid in (sae_grid, truth_grid):
        ctx.selection.connect_grid(grid)
    ctx.selection.add_button(add_circuit, lambda r: _report_heads(r, "circuit"), [raw.json])
    ctx.selection.add_button(add_truth, lambda r: _report_heads(r, "truth"), [raw.json])

    gr.Markdown("### Does the selection explain the behaviour?")
    ablate_btn = gr.Button("Ablate the selected heads")
    ablate_controls = jobs.JobControls.build("circuits_ablate")
    ablate_text = gr.Markdown()
    ablate_rows = gr.Dataframe(label="Task metric under mean ablation", interactive=False)
    ablate_json = gr.JSON(visible=False)
    ablate_btn.click(
        circuits_ablate, [ctx.model, task, custom, n_examples, seed, ctx.selection.state],
        [ablate_text, ablate_rows, ablate_json], api_name="circuits_ablate",
        show_progress_on=[ablate_controls.status], **JOB_EVENT,
    )  # fmt: skip

    gr.Markdown("### View or compare reports")
    with gr.Row():
        up_a = gr.File(type="binary", file_types=[".json"], label="Report A")
        up_b = gr.File(type="binary", file_types=[".json"], label="Report B (optional: compare)")
    view = gr.Button("View")
    diff = gr.Dataframe(label="Comparison (B relative to A)", interactive=False)
    view.click(
        circuits_view, [up_a, up_b, ctx.selection.state], [*views, diff, raw.json], api_name="circuits_view",
        **VIEW_EVENT,
    )  # fmt: skip
    ctx.session.add(
        "circuits", task=task, n_examples=n_examples, seed=seed, epochs=epochs, reduce=reduce, norm=norm,
        scope=scope, options=options, custom=custom, status=controls.status, summary=summary, sae_grid=sae_grid,
        truth_grid=truth_grid, heads=heads_table, metrics=metrics, roc=roc, faithfulness=faith, stability=stab,
        edges=edges, report=raw.json, report_file=raw.file, ablation=ablate_text, ablation_rows=ablate_rows,
        comparison=diff,
    )  # fmt: skip


def _report_heads(report: Any, which: str) -> str:
    if not isinstance(report, dict) or "circuit" not in report:
        raise InputError("run or view a circuit first")
    heads = report["circuit"] if which == "circuit" else report["ground_truth"]["heads"]
    if not heads:
        raise InputError(f"the report's {which} has no heads")
    return ", ".join(heads)
