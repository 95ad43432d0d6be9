"""Steering tab: a contrastive vector (at a layer's residual stream or the selected heads' outputs) and LoFiT
head offsets (on all heads or the selection), each read against none / prompting / steering / both.

Wiring only. Each run is its CLI command (`cli.steering.to_argv`): a job on the loaded model, or on a Ray
cluster when HEADSCOPE_RAY_ADDRESS is set, drawn from its JSON either way (`steering_views`). Texts are
pasted, never paths; every input is checked on the server and refused, never cut.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import gradio as gr

from headscope.app import examples, jobs
from headscope.app import selection_bar as sel
from headscope.app import steering_views as views
from headscope.app.figures import Plot, RawResult, json_file
from headscope.app.inputs import choice, integer, ranged_number, text
from headscope.app.state import PRIVATE, STORE
from headscope.app.tabs import AppContext, register_tab
from headscope.app.views import HeadGrid, TokenStrip
from headscope.app.wiring import Ctx, Handler, bind, section
from headscope.cli.steering import contrastive_result, lofit_result, to_argv
from headscope.cli.steering_inputs import ContrastiveRun, EvalOptions, LofitTrain, ModelOptions
from headscope.errors import InputError
from headscope.steering.comparison import Evaluation
from headscope.steering.contrastive import Comparison, default_layer
from headscope.steering.direction import DEFAULT_ALPHA, DEFAULT_POSITION, MAX_ALPHA
from headscope.steering.hooks import POSITIONS
from headscope.steering.lofit import LofitResult
from headscope.steering.tasks import CONTRASTS, TASKS, load_contrast, load_task

APP_MAX_TEXT_CHARS = 20_000  # each pasted list
APP_MAX_PROMPTS = 8
APP_MAX_NEW_TOKENS = 48
APP_MAX_STEPS = 200
APP_MAX_K = 64
APP_MAX_RANDOM_SETS = 50
RESAMPLES = 1000
SITES = ("a layer's residual stream", "the selected heads' outputs")
NO_SET = "none: measure on the texts above (in-sample)"
LOFIT_SCOPES = ("all heads", "the selected heads only")
# A section: (the dropdown whose built-in set fills the instruction, button, job slot, endpoint, table title,
# result name, session key)
SECTIONS = {
    "contrastive": ("heldout", "Steer", "steering_run", "steer_contrastive", "Contrastive steering",
                    "steering result", "steering"),
    "lofit": ("task", "Train LoFiT", "steering_lofit", "steer_lofit_train", "LoFiT", "LoFiT result", "lofit"),
}  # fmt: skip
PAPERS = (
    ("AxBench (Wu et al. 2025)", "https://arxiv.org/abs/2501.17148"),
    ("CAA (Rimsky et al. 2024)", "https://arxiv.org/abs/2312.06681"),
    ("LoFiT (Yin, Ye & Durrett 2024)", "https://arxiv.org/abs/2406.01563"),
)
_SET = load_contrast("sentiment")


def _lines(value: Any, what: str, limit: int = APP_MAX_TEXT_CHARS) -> tuple[str, ...]:
    """One entry a line; blank lines skipped, the others kept exactly as typed."""
    return tuple(ln for ln in text(value, what, limit).splitlines() if ln.strip())


def _heads(inputs: dict[str, Any], scope: str, restricted: str) -> str | None:
    """The selection as HeadSet text when `scope` says so (checked against the model), else None."""
    if scope != restricted:
        return None
    return str(
        sel.selected_heads(inputs["selection"], STORE.get(str(inputs["model"])), f"set to {restricted}")
    )


def _instruction(inputs: dict[str, Any]) -> str:
    return text(inputs["instruction"], "instruction", 500, allow_empty=True)


def _job(
    title: str, cfg: ContrastiveRun | LofitTrain, result: Callable[[jobs.Reporter], Any], slot: str, ctx: Ctx
) -> dict[str, Any]:
    """`result(report)` as a job carrying `cfg`'s CLI command (run there on a Ray cluster): `raw` = its JSON."""
    spec = jobs.JobSpec(
        title, lambda report: result(report).to_json(), model=cfg.model.model, command=tuple(to_argv(cfg))
    )
    return {"raw": jobs.run(spec, request=ctx.request, slot=slot, progress=ctx.progress)}


def _evaluation(ev: Evaluation, raw: Any, name: str) -> dict[str, Any]:
    """What both sections draw: the conditions table, its legend, every continuation, the JSON download."""
    table, texts = views.conditions_table(ev), views.continuations(ev)
    return {"table": gr.update(value=table, visible=True), "legend": views.legend(ev),
            "texts": gr.update(value=texts, visible=True), "file": json_file(raw, name)}  # fmt: skip


def steer_config(inputs: dict[str, Any]) -> ContrastiveRun:
    """The tab's inputs as `steer contrastive`'s config (every value checked there)."""
    prompts = _lines(inputs["prompts"], "prompts", 4000)
    if not 1 <= len(prompts) <= APP_MAX_PROMPTS:
        raise InputError(f"prompts: give 1 to {APP_MAX_PROMPTS} prompts, one a line")
    held = choice(inputs["heldout"], "held-out texts", [*CONTRASTS, NO_SET])
    n_new = integer(inputs["new_tokens"], "new tokens", 1, APP_MAX_NEW_TOKENS)
    ev = EvalOptions(None if held == NO_SET else held, prompts, instruction=_instruction(inputs),
                     max_new_tokens=n_new, resamples=RESAMPLES)  # fmt: skip
    heads = _heads(inputs, choice(inputs["site"], "steer at", SITES), SITES[1])
    return ContrastiveRun(
        ModelOptions(str(inputs["model"])), ev, layer=None if heads else inputs["layer"], heads=heads,
        alpha=inputs["alpha"], position=choice(inputs["position"], "position", POSITIONS),
        pos_texts=_lines(inputs["positives"], "the positive list"),
        neg_texts=_lines(inputs["negatives"], "the negative list"),
    )  # fmt: skip


def steer_run(inputs: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    """Build the vector from the pasted texts and read it against prompting: `steer contrastive`'s JSON."""
    cfg = steer_config(inputs)
    handle = STORE.get(cfg.model.model or "")
    if cfg.layer is not None:
        integer(cfg.layer, "layer", 0, handle.facts.n_layers - 1)
    return _job(
        "contrastive steering", cfg, lambda r: contrastive_result(handle, cfg, r), "steering_run", ctx
    )


def steer_draw(inputs: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    """The views, from the job's JSON (also after a session import; nothing to draw before a run)."""
    if not inputs["raw"]:
        return {}
    res = Comparison.from_json(inputs["raw"])
    left, right = views.strips(res)
    return {"summary": views.steer_summary(res), "unsteered": left, "steered": right,
            **_evaluation(res.evaluation, inputs["raw"], "steering")}  # fmt: skip


def lofit_config(inputs: dict[str, Any]) -> LofitTrain:
    steps = integer(inputs["steps"], "steps", 1, APP_MAX_STEPS)
    return LofitTrain(
        ModelOptions(str(inputs["model"])), task=choice(inputs["task"], "task", sorted(TASKS)),
        heads=_heads(inputs, choice(inputs["scope"], "LoFiT on", LOFIT_SCOPES), LOFIT_SCOPES[1]),
        k=integer(inputs["k"], "K heads", 1, APP_MAX_K), scale_steps=steps, bias_steps=steps,
        seed=inputs["seed"], random_sets=integer(inputs["random_sets"], "random sets", 0, APP_MAX_RANDOM_SETS),
        eval_prompts=4, eval_tokens=8, resamples=RESAMPLES, instruction=_instruction(inputs),
    )  # fmt: skip


def lofit_run(inputs: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    """LoFiT on a built-in task, its held-out table and the permutation test: `steer lofit train`'s JSON."""
    cfg = lofit_config(inputs)
    handle = STORE.get(cfg.model.model or "")
    lcfg = cfg.lofit_config(None if cfg.heads is None else handle.head_set(cfg.heads))
    lcfg.resolve_k(handle.facts.n_layers, handle.facts.n_heads)  # K > the selection: refused before the job
    return _job(f"LoFiT on {cfg.task}", cfg, lambda r: lofit_result(handle, cfg, r), "steering_lofit", ctx)


def lofit_draw(inputs: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    if not inputs["raw"]:
        return {}
    res = LofitResult.from_json(inputs["raw"])
    chance = gr.update(value=views.chance_histogram(res), visible=res.chance is not None)
    grid = views.lofit_grid(res, sel.names(inputs["selection"]), str(inputs["model"]))
    return {"summary": views.lofit_summary(res), "chance": chance, "grid": grid,
            **_evaluation(res.evaluation.evaluation, inputs["raw"], f"lofit_{res.task}")}  # fmt: skip


def _instruction_of(inputs: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    """A built-in set's own instruction, to edit (the instruction stays when no set is picked)."""
    name = inputs["name"]
    if name in TASKS:
        return {"instruction": load_task(name).instruction or ""}
    return {"instruction": load_contrast(name).instruction} if name in CONTRASTS else {}  # none: keep it


# ---- layout ------------------------------------------------------------------------------------------------------
@contextmanager
def _section(
    ctx: AppContext, key: str, ins: dict[str, Any], run: Handler, draw: Handler
) -> Iterator[dict[str, Any]]:
    """A section below its inputs `ins`: the button and the job's status, the summary, the conditions table
    and its legend, the section's own views (the `with` body adds them), the continuations and the JSON
    collapsed; wired as one section (redrawn after a session import). A built-in set fills the instruction."""
    source, button, slot, api_name, what, result, session_key = SECTIONS[key]
    ins["selection"] = ctx.selection.state
    go = gr.Button(button, variant="primary")
    controls = jobs.JobControls.build(slot)
    out: dict[str, Any] = {"summary": gr.Markdown()}
    title = f"{what}: none / prompting / steering / steering + prompting (click a header to sort)"
    out["table"] = gr.Dataframe(label=title, interactive=False, visible=False, elem_id=f"hs-{key}-table")
    out["legend"] = gr.Markdown()
    yield out
    with gr.Accordion(f"{result}: every prompt's continuations, the result JSON", open=False):
        out["texts"] = gr.Dataframe(label="Continuations", interactive=False, visible=False, wrap=True)
        raw = RawResult(result)
        out["file"] = raw.file
    draw_in = {"raw": raw.json, "selection": ctx.selection.state, "model": ctx.model}
    section(go.click, run, draw, inputs=ins, outputs={"raw": raw.json}, views=dict(out), draw_inputs=draw_in,
            controls=controls, session=ctx.session, api_name=api_name)  # fmt: skip
    bind(ins[source].change, _instruction_of, inputs={"name": ins[source]},
         outputs={"instruction": ins["instruction"]}, **PRIVATE)  # fmt: skip
    session = {k: v for k, v in ins.items() if k not in ("model", "selection")}
    ctx.session.add(session_key, **session, result=raw.json)
    out["raw"] = raw.json  # for the caller (not a view: `section` has its own copy of the views)


def _build_contrastive(ctx: AppContext) -> None:
    gr.Markdown("### Contrastive vector: v = mean activation(positives) − mean activation(negatives)")
    ins: dict[str, Any] = {"model": ctx.model}
    with gr.Row():
        ins["positives"] = gr.Textbox("\n".join(_SET.positives), lines=4, label="Positive texts (one a line)",
                                      max_length=APP_MAX_TEXT_CHARS)  # fmt: skip
        ins["negatives"] = gr.Textbox("\n".join(_SET.negatives), lines=4, label="Negative texts (one a line)",
                                      max_length=APP_MAX_TEXT_CHARS)  # fmt: skip
    with gr.Row():
        ins["heldout"] = gr.Dropdown(
            [*CONTRASTS, NO_SET], value="sentiment", label="Held-out texts to measure on"
        )
        ins["site"] = gr.Radio(list(SITES), value=SITES[0], label="Steer at")
        ins["layer"] = gr.Number(default_layer(30), precision=0, minimum=0, label="Layer")
        ins["alpha"] = ranged_number(
            "α × the activation norm", -MAX_ALPHA, MAX_ALPHA, DEFAULT_ALPHA, step=0.05
        )
    with gr.Row():
        ins["prompts"] = gr.Textbox("\n".join(_SET.prompts[:2]), lines=2, label="Prompts (one a line)")
        ins["instruction"] = gr.Textbox(_SET.instruction, label="Prompting baseline: instruction (editable)")
        ins["position"] = gr.Radio(list(POSITIONS), value=DEFAULT_POSITION, label="Add at positions")
        ins["new_tokens"] = ranged_number("New tokens", 1, APP_MAX_NEW_TOKENS, 16, integer=True)
    with _section(ctx, "contrastive", ins, steer_run, steer_draw) as out, gr.Row():
        out["unsteered"] = TokenStrip(label="Unsteered", elem_id="hs-contrastive-unsteered")
        out["steered"] = TokenStrip(label="Steered", elem_id="hs-contrastive-steered")


def _build_lofit(ctx: AppContext) -> None:
    gr.Markdown(
        "### LoFiT: rank heads by a trained L1 scale, learn an offset per top head, test against chance"
    )
    ins: dict[str, Any] = {"model": ctx.model}
    with gr.Row():
        ins["task"] = gr.Dropdown(sorted(TASKS), value="antonyms", label="Task")
        ins["scope"] = gr.Radio(list(LOFIT_SCOPES), value=LOFIT_SCOPES[0], label="LoFiT on")
        ins["k"] = gr.Number(8, precision=0, minimum=1, maximum=APP_MAX_K, label="K heads")
        ins["steps"] = ranged_number("Steps per phase", 1, APP_MAX_STEPS, 30, integer=True)
        ins["random_sets"] = gr.Number(20, precision=0, minimum=0, maximum=APP_MAX_RANDOM_SETS,
                                       label="Random head sets (permutation test)")  # fmt: skip
        ins["seed"] = gr.Number(0, precision=0, minimum=0, label="Seed")
    ins["instruction"] = gr.Textbox(load_task("antonyms").instruction, label="Prompting baseline (editable)")
    with _section(ctx, "lofit", ins, lofit_run, lofit_draw) as out:
        with gr.Row():
            out["chance"] = Plot(label="LoFiT against random heads", visible=False)
            out["grid"] = HeadGrid(label="‖A‖ per head; the tuned heads marked", elem_id="hs-lofit-grid")
        add = gr.Button("Add the LoFiT-selected heads to the selection", size="sm")
    ctx.selection.connect_grid(out["grid"])
    ctx.selection.add_button(add, lambda r: LofitResult.from_json(_result(r)).heads, [out["raw"]])


def _result(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict) or not raw:
        raise InputError("train LoFiT first: its selected heads are added from the result")
    return raw


@register_tab("Steering", order=30)
def build(ctx: AppContext) -> None:
    examples.guide(
        "Steer the model and read it against baselines, as AxBench does: the same model unsteered (**none**), "
        "asked in words (**prompting**, the instruction below), **steering**, and both. A **contrastive vector** "
        "(mean activation of positive texts minus negative texts) is added to a layer's residual stream or to the "
        "selected heads' outputs; **LoFiT** learns offsets on a few heads and is tested against as many random "
        "heads trained the same way.",
        "The effect is measured on held-out texts that did not build the vector: how much more likely the "
        "positive ones become after the prompt (nats per text), with a 95 % bootstrap interval. The cost: how "
        "plausible the continuation is to the unsteered model (perplexity, × none) and how repetitive (distinct "
        "tokens). The defaults are the worked example: the sentiment set on the default model.",
        PAPERS,
    )
    _build_contrastive(ctx)
    _build_lofit(ctx)
