"""Circuits tab: find a task's circuit as a cancellable job (ground truth by batched activation patching, scored
methods and, when asked, edge attribution over MIB's whole model graph with MIB's edge faithfulness) and read it;
select its heads, ablate the selection, export for circuit-tracer / Neuronpedia and MIB, view or compare reports.

The run job returns the CLI's JSON (`headscope circuits run ... --print-report`, so it runs on Ray where
HEADSCOPE_RAY_ADDRESS is set); `draw` draws every view from it (`CircuitResult.from_json`), the same way for a run,
an uploaded report and a session file. Uploaded reports arrive as bytes (size-limited, validated, migrated)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import gradio as gr

from headscope.app import circuits_edge_views as ev
from headscope.app import circuits_views as cv
from headscope.app import examples, jobs
from headscope.app import selection_bar as sel
from headscope.app.figures import Plot, RawResult, json_file
from headscope.app.inputs import choice, integer, number, ranged_number, text
from headscope.app.state import STORE, VIEW_EVENT
from headscope.app.tabs import AppContext, register_tab
from headscope.app.views import HeadGrid
from headscope.app.wiring import Ctx, bind, pick, section
from headscope.circuits import edge_layout as lay
from headscope.circuits import summary as cs
from headscope.circuits.ablate import AblationConfig, ablate_selection
from headscope.circuits.config import EDGE_METHODS, CircuitConfig
from headscope.circuits.finder import find_circuit
from headscope.circuits.formats import export_report, slug
from headscope.circuits.report import compare_reports, loads_upload
from headscope.circuits.result import CircuitResult
from headscope.circuits.sae import SAEConfig
from headscope.circuits.tasks import TASKS, make_task
from headscope.circuits.variants import check_variant, variant_choices
from headscope.cli.circuits import ablate_argv, to_argv
from headscope.errors import InputError

TASK_CHOICES = [*TASKS, "custom"]
APP_MAX_EXAMPLES = 32  # one user's run must not hold the shared model for long
APP_MAX_EPOCHS = 500
APP_MAX_TASK_CHARS = 50_000
LAYER_SCOPES = ("all layers", "last 4 layers", "last 2 layers")
OPTIONS = ("faithfulness curves", "stability (bootstrap, 100 resamples)", "edges (path patching; slow)")
EDGE_CHOICES = [(cs.title(m), m) for m in EDGE_METHODS]
EDGE_PERCENT = 0.5  # the graph's default circuit size (% of all edges), as graph exports use
RUN_KEYS = ("task", "custom", "n_examples", "seed", "epochs", "reduce", "norm", "scope", "options",
            "edge_methods", "sae_variant")  # fmt: skip
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
    ("MIB, Mueller et al. 2025 (arXiv 2504.13151)", "https://arxiv.org/abs/2504.13151"),
)


# ---- inputs ------------------------------------------------------------------------------------------------------
def _layers(scope: Any, n_layers: int) -> tuple[int, int] | None:
    scope = choice(scope, "layers", LAYER_SCOPES)
    if scope == LAYER_SCOPES[0]:
        return None
    last = 4 if scope == LAYER_SCOPES[1] else 2
    return (max(0, n_layers - last), n_layers)


def _task(inputs: dict[str, Any]) -> tuple[str, int, int]:
    """The task, its number of prompt pairs and the seed, checked: a run and an ablation share them."""
    task = choice(inputs["task"], "task", TASK_CHOICES)
    return (
        task,
        integer(inputs["n_examples"], "prompt pairs", 6, APP_MAX_EXAMPLES),
        integer(inputs["seed"], "seed", 0, 2**31 - 1),
    )


def config_of(inputs: dict[str, Any], n_layers: int) -> CircuitConfig:
    """The run's config from the tab's inputs, every value checked (one line naming the field and its range)."""
    picked = set(inputs.get("options") or ())
    if not picked <= set(OPTIONS):
        raise InputError(f"options must be among: {', '.join(OPTIONS)}")
    edge_methods = tuple(choice(m, "edge methods", EDGE_METHODS) for m in inputs.get("edge_methods") or ())
    task, n, seed = _task(inputs)
    return CircuitConfig(
        task=task, n_examples=n, seed=seed, reduce=choice(inputs["reduce"], "head output", ("mean", "last")),  # type: ignore[arg-type]
        sae=SAEConfig(epochs=integer(inputs["epochs"], "SAE epochs", 1, APP_MAX_EPOCHS), decoder_norm=inputs["norm"]),
        layers=_layers(inputs["scope"], n_layers), faithfulness=OPTIONS[0] in picked,
        stability=OPTIONS[1] in picked, n_bootstrap=100, edges=OPTIONS[2] in picked, edge_methods=edge_methods,
        sae_variant=check_variant(inputs.get("sae_variant") or CircuitConfig().sae_variant),
    )  # fmt: skip


def run_command(cfg: CircuitConfig) -> tuple[str, ...]:
    """The same run as a `headscope circuits run` command whose JSON is the whole report (what a cluster runner
    executes instead of `work`): the CLI's own writer, `to_argv`, which its parser inverts."""
    return (*to_argv(cfg), "--out", "-", "--print-report")


def _custom_text(task: str, value: Any) -> str | None:
    if task != "custom":
        return None
    if not isinstance(value, str) or not value.strip():
        raise InputError("paste the custom task as JSON")
    return text(value, "custom task", APP_MAX_TASK_CHARS)


def with_time_left(
    progress: Callable[..., Any] | None, clock: Callable[[], float] = time.monotonic
) -> Callable[..., Any] | None:
    """Gradio's progress with an estimate of the time left appended ("… patching layer 17/30, ~40 s left"),
    from the elapsed time (`clock`, seconds) and the job's own fraction (whichever runner relays it)."""
    if progress is None:
        return None
    t0 = clock()

    def say(frac: float | None, desc: str = "") -> Any:
        elapsed = clock() - t0
        if frac is not None and 0.02 < frac < 1 and elapsed > 2:
            desc = f"{desc}, ~{cv.duration(elapsed * (1 - frac) / frac)} left"
        return progress(frac, desc=desc)

    return say


# ---- handlers ----------------------------------------------------------------------------------------------------
def run(inputs: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    """Find the task's circuit on the selected model (a job: sub-step progress with time left, Cancel); `raw` is
    the report, as `headscope circuits run --print-report` prints it."""
    handle = STORE.get(str(inputs["model"]))
    cfg = config_of(inputs, handle.facts.n_layers)
    spec = _custom_text(cfg.task, inputs.get("custom"))

    def work(report: jobs.Reporter) -> dict[str, Any]:
        return find_circuit(handle, cfg, task_spec=spec, progress=report.stages()).to_json()

    job = jobs.JobSpec(
        f"circuit run ({cfg.task}) on {handle.identity.name}", work, model=handle.identity.name,
        command=None if spec is not None else run_command(cfg),  # a custom task's text has no flag: in-process
    )  # fmt: skip
    payload = jobs.run(job, request=ctx.request, slot="circuits_run", progress=with_time_left(ctx.progress))
    n = len(payload.get("circuit") or ())
    return {"raw": payload, "status": f"done: {cfg.task} on {handle.identity.name}, {n} circuit heads"}


def draw(inputs: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    """Every view of a report (a run's, an upload's, a session's), drawn from its JSON."""
    payload = inputs["raw"]
    if not isinstance(payload, dict) or "schema_version" not in payload:
        return {}
    result = CircuitResult.from_json(payload)
    picked = sel.names(inputs.get("selection"))
    methods = ev.edge_methods(result)
    method = inputs.get("edge_method") if inputs.get("edge_method") in methods else (methods or [None])[-1]
    ea = result.edge_attribution
    percent = cs.default_percent(ea.graph.n_edges) if ea is not None else EDGE_PERCENT
    name = f"circuit_report_{result.task.name}_{result.model.name}"
    return {
        "summary": cv.summary(result), "sae_grid": cv.score_grid(result, "sae_node", picked),
        "truth_grid": cv.truth_grid(result, picked), "heads": cv.head_table(result),
        "metrics": cv.metrics_table(result), "roc": cv.roc_figure(result), "faithfulness": cv.faithfulness_figure(result),
        "stability": cv.stability_table(result), "edges": cv.edges_table(result), "report_file": json_file(payload, name),
        "edge_method": gr.Dropdown(choices=[(cs.title(m), m) for m in methods], value=method),
        "edge_graph": ev.edge_graph_figure(result, method, percent) if method else None,
        "edge_percent": percent, "edge_faithfulness": ev.edge_faithfulness_figure(result),
        "edge_table": ev.edge_table(result), "results": gr.Column(visible=True),
    }  # fmt: skip


def _result(payload: Any) -> CircuitResult:
    if not isinstance(payload, dict) or "schema_version" not in payload:
        raise InputError("run or view a circuit first")
    return CircuitResult.from_json(payload)


def _percent(value: Any) -> float:
    return number(value, "circuit size (% of edges)", 0.01, 100)


def draw_edges(inputs: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    """The edge graph of the chosen method at the chosen size."""
    result = _result(inputs["raw"])
    method = choice(inputs["edge_method"], "edge method", ev.edge_methods(result) or list(EDGE_METHODS))
    return {"edge_graph": ev.edge_graph_figure(result, method, _percent(inputs["edge_percent"]))}


def export(inputs: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    """The report as circuit-tracer / Neuronpedia's attribution graph or MIB's circuit file: the chosen edge
    method's circuit at the chosen size (a report without edge scores exports its head circuit as a graph)."""
    report = inputs["raw"]
    _result(report)  # checked like any report
    fmt = choice(inputs["format"], "export format", ("neuronpedia", "mib"))
    ea = report.get("edge_attribution")
    method = choice(inputs["edge_method"], "edge method", list(ea["methods"])) if ea else None
    out = export_report(report, fmt, method, _percent(inputs["edge_percent"]) / 100 if ea else None)
    return {f"{fmt}_file": json_file(out, f"{slug(report, method or 'heads')}-{fmt}")}


def view(inputs: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    """View an uploaded report (older schema versions are migrated); with a second one, also their comparison."""
    a = loads_upload(inputs["report_a"], "report A")
    CircuitResult.from_json(a)  # a report that cannot be drawn is refused here, with its reason
    b = inputs.get("report_b")
    diff = compare_reports(a, loads_upload(b, "report B")) if b else None
    return {"raw": a, "comparison": cv.diff_table(diff)}


def ablate(inputs: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    """The task metric with the shared selection mean-ablated, and with everything but the selection ablated."""
    handle = STORE.get(str(inputs["model"]))
    heads = sel.selected_heads(inputs["selection"], handle, "ablating the selection")
    name, n, seed = _task(inputs)
    cfg, spec = AblationConfig(name, n, seed), _custom_text(name, inputs.get("custom"))
    make_task(name, handle.tokenizer, n=n, seed=seed, spec=spec)  # a bad custom task: refused before the job

    def work(report: jobs.Reporter) -> dict[str, Any]:
        return ablate_selection(handle, heads, cfg=cfg, spec=spec, progress=report).to_json()

    command = None if spec is not None else tuple(ablate_argv(cfg, str(heads)))  # a custom task: in-process
    job = jobs.JobSpec(f"ablate {heads} ({name})", work, model=handle.identity.name, command=command)
    res = jobs.run(job, request=ctx.request, slot="circuits_ablate", progress=ctx.progress)
    return {"ablation": cv.ablation_line(res), "ablation_rows": cv.ablation_table(res), "ablation_json": res}


def report_heads(report: Any, which: str) -> str:
    """The heads of the report's circuit or of its ground truth (`which`), in the selection's grammar."""
    result = _result(report)
    heads = result.circuit.heads if which == "circuit" else result.ground_truth.heads
    if not heads:
        raise InputError(f"the report's {which} has no heads")
    return ", ".join(heads)


def edge_circuit_heads(report: Any, method: Any, percent: Any) -> str:
    """The heads of the edge circuit on show, in the selection's grammar ("0.1, 1.3")."""
    result = _result(report)
    return ", ".join(
        lay.circuit_heads(result, choice(method, "edge method", ev.edge_methods(result)), _percent(percent))
    )


# ---- layout: one dict `w` of the tab's components, keyed as the handlers' inputs and outputs ------------------
def _run_inputs(w: dict[str, Any]) -> None:
    with gr.Row():
        w["task"] = gr.Dropdown(TASK_CHOICES, value="ioi", label="Task")
        w["n_examples"] = ranged_number("Prompt pairs", 6, APP_MAX_EXAMPLES, 16, integer=True)
        w["seed"] = gr.Number(0, precision=0, label="Seed")
        w["epochs"] = ranged_number("SAE epochs", 1, APP_MAX_EPOCHS, 500, integer=True)
    with gr.Row():
        w["reduce"] = gr.Radio(["mean", "last"], value="mean", label="Head output: positions")
        w["norm"] = gr.Radio(["reference_rows", "atoms"], value="reference_rows", label="SAE decoder norm")
        w["scope"] = gr.Radio(list(LAYER_SCOPES), value=LAYER_SCOPES[0], label="Analyse (heads)")
        choices = [
            (f"{c.name}: {c.summary}", c.name) for c in variant_choices()
        ]  # the default is CircuitConfig's
        w["sae_variant"] = gr.Dropdown(choices, value=CircuitConfig().sae_variant,
                                       label="SAE variant (sae_node / sae_edge)")  # fmt: skip
    with gr.Row():
        w["options"] = gr.CheckboxGroup(list(OPTIONS), value=[OPTIONS[0]], label="Also")
        w["edge_methods"] = gr.CheckboxGroup(
            EDGE_CHOICES,
            value=[],
            label="Edge attribution over the whole model graph (MIB; with its faithfulness)",
        )
    with gr.Accordion("Custom task (used when Task = custom)", open=False):
        w["custom"] = gr.Code(
            EXAMPLE_CUSTOM, language="json", label="Custom task JSON (prompts, answer, wrong)"
        )


def _result_views(w: dict[str, Any]) -> None:
    w["summary"] = gr.Markdown()
    with gr.Row():
        w["sae_grid"] = HeadGrid(label="SAE node score", elem_id="hs-circuit-sae")
        w["truth_grid"] = HeadGrid(label="Ground truth (patching effect)", elem_id="hs-circuit-truth")
    w["metrics"] = gr.Dataframe(label="Methods against the ground truth (95 % bootstrap CIs; click a header to sort)",
                                interactive=False)  # fmt: skip
    w["roc"] = Plot(label="ROC")
    w["faithfulness"] = Plot(label="Faithfulness (heads)")
    w["heads"] = gr.Dataframe(label="Heads (click a header to sort)", interactive=False, max_height=420)
    with gr.Row():
        w["add_circuit"] = gr.Button("Select the circuit's heads", size="sm")
        w["add_truth"] = gr.Button("Select the ground-truth heads", size="sm")
    gr.Markdown("#### Edge circuit (edge attribution over MIB's model graph)")
    with gr.Row():
        w["edge_method"] = gr.Dropdown(
            EDGE_CHOICES, value=None, label="Edge method", allow_custom_value=False
        )
        # no minimum/maximum: the server's check refuses out-of-range values with the field's own line
        w["edge_percent"] = gr.Number(EDGE_PERCENT, label="Circuit size (% of all edges, 0.01–100)")
    w["edge_graph"] = Plot(label="Edge circuit")
    w["edge_faithfulness"] = Plot(label="Edge faithfulness (MIB)")
    w["edge_table"] = gr.Dataframe(
        label="Edge methods: CPR and CMD with 95 % bootstrap CIs", interactive=False
    )
    with gr.Row():
        w["redraw"] = gr.Button("Draw the edge circuit", size="sm")
        w["add_edges"] = gr.Button("Select these heads", size="sm")
    with gr.Accordion("Stability and path-patching edges", open=False):
        w["stability"] = gr.Dataframe(label="Stability under resampling", interactive=False)
        w["edges"] = gr.Dataframe(label="Edges (path patching)", interactive=False, max_height=360)
    gr.Markdown("#### Download and export")
    raw = RawResult("circuit report", elem_id="hs-circuit-report")
    w["report"], w["report_file"] = raw.json, raw.file
    with gr.Row():
        w["to_np"] = gr.Button(
            "Export for circuit-tracer / Neuronpedia", size="sm", elem_id="hs-circuit-export-np"
        )
        w["to_mib"] = gr.Button("Export MIB circuit file", size="sm", elem_id="hs-circuit-export-mib")
    with gr.Row():  # each file shown once it is set (figures.reveal_when_set): no empty download boxes
        w["neuronpedia_file"] = gr.File(label="attribution graph (circuit-tracer)", interactive=False,
                                        elem_id="hs-circuit-np-file")  # fmt: skip
        w["mib_file"] = gr.File(label="MIB circuit file", interactive=False, elem_id="hs-circuit-mib-file")


def _wire_results(ctx: AppContext, w: dict[str, Any]) -> None:
    edge_in = {"raw": w["report"], "edge_method": w["edge_method"], "edge_percent": w["edge_percent"]}
    for trigger, event in ((w["redraw"].click, {"api_name": "circuits_edges"}),
                           (w["edge_method"].input, {"api_visibility": "private"}),
                           (w["edge_percent"].submit, {"api_visibility": "private"})):  # fmt: skip
        bind(trigger, draw_edges, inputs=edge_in, outputs=pick(w, "edge_graph"), **event, **VIEW_EVENT)
    for btn, fmt in ((w["to_np"], "neuronpedia"), (w["to_mib"], "mib")):
        bind(btn.click, export, inputs={**edge_in, "format": gr.State(fmt)}, outputs=pick(w, f"{fmt}_file"),
             api_name=f"circuits_export_{fmt}", **VIEW_EVENT)  # fmt: skip
    for grid in (w["sae_grid"], w["truth_grid"]):
        ctx.selection.connect_grid(grid)
    ctx.selection.add_button(w["add_circuit"], lambda r: report_heads(r, "circuit"), [w["report"]])
    ctx.selection.add_button(w["add_truth"], lambda r: report_heads(r, "truth"), [w["report"]])
    ctx.selection.add_button(
        w["add_edges"], edge_circuit_heads, list(pick(w, "report", "edge_method", "edge_percent").values())
    )


def _ablation(w: dict[str, Any], selection: Any) -> None:
    gr.Markdown("### Does the selection explain the behaviour?")
    btn = gr.Button("Ablate the selected heads")
    controls = jobs.JobControls.build("circuits_ablate")
    w["ablation"] = gr.Markdown()
    w["ablation_rows"] = gr.Dataframe(
        label="Task metric under mean ablation", interactive=False
    )  # shown once set
    inputs = {**pick(w, "model", "task", "custom", "n_examples", "seed"), "selection": selection}
    outputs = {**pick(w, "ablation", "ablation_rows"), "ablation_json": gr.JSON(visible=False)}
    controls.bind(btn.click, ablate, inputs=inputs, outputs=outputs, api_name="circuits_ablate")


def _viewer(w: dict[str, Any]) -> None:
    gr.Markdown("### View or compare reports")
    with gr.Row():
        up_a = gr.File(type="binary", file_types=[".json"], label="Report A")
        up_b = gr.File(type="binary", file_types=[".json"], label="Report B (optional: compare)")
    btn = gr.Button("View")
    w["comparison"] = gr.Dataframe(label="Comparison (B relative to A)", interactive=False)  # shown once set
    out = {"raw": w["report"], "comparison": w["comparison"]}
    bind(btn.click, view, inputs={"report_a": up_a, "report_b": up_b}, outputs=out, api_name="circuits_view",
         **VIEW_EVENT)  # fmt: skip


@register_tab("Circuits", order=20)
def build(ctx: AppContext) -> None:
    examples.guide(
        "Which attention heads — and which edges between components — carry a task? A **ground truth** from "
        "activation patching every head (batched), and methods scored against it: the discrete SAE's node and edge "
        "scores, attribution patching and EAP-IG per head; optionally EAP / EAP-IG over every edge of the model "
        "graph, with MIB's faithfulness (CPR ↑, CMD ↓).",
        "Heatmaps mark circuit heads ● and ground-truth heads ◆ (click a cell to select it; hatched layers were not "
        "analysed); ROC is against the ground truth; faithfulness shows how much of the task the top-k heads (or "
        "edges) keep when the rest are ablated. On SmolLM2 a full run takes minutes on CPU: the examples analyse "
        "the last layers only.",
        PAPERS,
    )
    example_slot = gr.Column()
    w: dict[str, Any] = {"model": ctx.model}
    _run_inputs(w)
    run_btn = gr.Button("Find circuit", variant="primary")
    controls = jobs.JobControls.build("circuits_run")
    # shown once a report is drawn: no empty plots, tables or download boxes before a run
    with gr.Column(visible=False) as w["results"]:
        _result_views(w)
    run_in, run_out = pick(w, "model", *RUN_KEYS), {"raw": w["report"], "status": controls.status}
    drawn = pick(w, "summary", "sae_grid", "truth_grid", "heads", "metrics", "roc", "faithfulness",
                 "stability", "edges", "report_file", "edge_method", "edge_graph", "edge_percent",
                 "edge_faithfulness", "edge_table", "results")  # fmt: skip
    draw_in = {"raw": w["report"], "selection": ctx.selection.state, "edge_method": w["edge_method"]}
    section(run_btn.click, run, draw, inputs=run_in, outputs=run_out, views=drawn, draw_inputs=draw_in,
            on_change=w["report"], controls=controls, api_name="circuits_run")  # fmt: skip
    _wire_results(ctx, w)
    with example_slot:
        ex = examples.worked_example(
            [["ioi", 8, 0, 100, LAYER_SCOPES[2]], ["greater_than", 8, 0, 100, LAYER_SCOPES[2]]],
            list(pick(w, "task", "n_examples", "seed", "epochs", "scope").values()), None, [], [],
            labels=["IOI, last 2 layers", "greater-than, last 2 layers"],
        )  # fmt: skip
        controls.bind(ex.load_input_event.then, run, inputs=run_in, outputs=run_out, api_visibility="private")
    _ablation(w, ctx.selection.state)
    _viewer(w)
    views = {k: v for k, v in drawn.items() if k not in ("edges", "results")}
    ctx.session.add("circuits", **pick(w, *RUN_KEYS), status=controls.status, **views, path_edges=w["edges"],
                    **pick(w, "report", "ablation", "ablation_rows", "comparison"))  # fmt: skip
