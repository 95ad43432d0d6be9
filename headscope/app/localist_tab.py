"""Localist models tab: the shipped λ-sweep table and curves, and a shipped checkpoint's attention next to the
distributed (λ = 0) one on the same text. Wiring only: the work is `localist.compare_attention` (two 2-layer
models on ≤ 256 tokens: a view of about a second, not a job), the drawing `localist_views.py`."""

from __future__ import annotations

from typing import Any

import gradio as gr

from headscope.app import examples
from headscope.app import localist_views as lv
from headscope.app.figures import Plot, RawResult, json_file
from headscope.app.inputs import choice, layer_head, ranged_number, text
from headscope.app.state import STORE, VIEW_EVENT
from headscope.app.tabs import AppContext, register_tab
from headscope.app.views import AttentionView, HeadGrid
from headscope.app.wiring import Ctx, bind, section
from headscope.errors import HeadscopeError, InputError
from headscope.localist.train_inspect import (
    DISTRIBUTED_MODEL,
    SHIPPED_MODELS,
    AttentionComparison,
    compare_attention,
)
from headscope.localist.train_ship import load_table

APP_MAX_CHARS = 2_000
APP_MAX_TOKENS = 256
DEFAULT_TEXT = (
    "The river rises in the hills north of the town. It flows south through farmland. "
    "In the nineteenth century a mill was built on its bank."
)
PAPERS = (
    ("AILA (arXiv 2511.03559)", "https://arxiv.org/abs/2511.03559"),
    ("Progressive Localisation (arXiv 2511.18375)", "https://arxiv.org/abs/2511.18375"),
)


def _table() -> dict[str, Any] | None:
    try:
        return load_table()
    except HeadscopeError:
        return None


def sweep_table(inputs: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    """The shipped sweep table (rows, summary, paper numbers); no model is loaded."""
    t = _table()
    if t is None:
        raise InputError("no sweep table is shipped: run `headscope localist sweep --ship`")
    return {"table": {k: t[k] for k in ("rows", "summary", "paper", "machine")}}


def compare(inputs: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    """The chosen shipped model's attention (entropy per layer × head, one head's pattern) next to λ = 0's:
    `raw` = `localist.AttentionComparison` JSON."""
    name = choice(inputs["model"], "shipped localist model", SHIPPED_MODELS)
    layer, head = layer_head(inputs["layer"], inputs["head"], 2, 4)  # every shipped model: 2 layers × 4 heads
    text_ok = text(inputs["text"], "text", APP_MAX_CHARS)
    say = ctx.progress or (lambda *a, **k: None)
    say(0.1, desc="running the checkpoint and the distributed model")
    handles = [STORE.get(m) for m in dict.fromkeys((name, DISTRIBUTED_MODEL))]
    return {"raw": compare_attention(handles, text_ok, layer, head, max_tokens=APP_MAX_TOKENS).to_json()}


def draw(inputs: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    if not inputs["raw"]:
        return {}
    cmp = AttentionComparison.from_json(inputs["raw"])
    grid, grid0 = lv.grids(cmp)
    return {
        "summary": lv.summary(cmp), "grid": grid, "grid0": grid0, "attention": lv.attention(cmp),
        "file": json_file(inputs["raw"], f"localist_compare_{cmp.readings[0].model}"),
    }  # fmt: skip


@register_tab("Localist models", order=15)
def build(ctx: AppContext) -> None:
    t = _table()
    examples.guide(
        "Small 2-layer models trained **from scratch** with loss CE + λ·Ω (Ω: attention mass outside the query's "
        "own sentence), swept over λ, plus progressive layer schedules; the three shipped checkpoints are also in "
        "the model picker.",
        "Read the table by λ: entropy should fall and pointer fidelity rise as λ grows, at some cost in perplexity. "
        "Below, compare a checkpoint's attention with the distributed (λ = 0) model's on your text.",
        PAPERS,
    )
    example_slot = gr.Column()  # filled below, once the outputs exist
    gr.Dataframe(value=lv.rows_table(t), label="Sweep table (click a header to sort)", interactive=False)
    Plot(value=lv.sweep_figure(t), label="λ → entropy / perplexity / pointer fidelity")  # full width
    gr.Dataframe(value=lv.paper_table(t), label="Shipped runs vs the paper", interactive=False)
    with gr.Accordion("Sweep table: raw JSON", open=False):
        show = gr.Button("Load the sweep table as JSON", size="sm")
        table_json = gr.JSON(label="Sweep table")
    bind(show.click, sweep_table, inputs={}, outputs={"table": table_json}, api_name="localist_sweep_table",
         queue=False)  # fmt: skip
    with gr.Row():
        model = gr.Dropdown(
            choices=list(SHIPPED_MODELS), value="localist-2l-lambda1.0", label="Shipped model"
        )
        layer = ranged_number("Layer", 0, 1, 1, integer=True)
        head = ranged_number("Head", 0, 3, 0, integer=True)
    text_in = gr.Textbox(value=DEFAULT_TEXT, lines=3, label=f"Text (at most {APP_MAX_CHARS:,} characters)")
    run = gr.Button("Compare with the distributed model (λ = 0)", variant="primary")
    summary = gr.Markdown()
    with gr.Row():
        grid_a = HeadGrid(label="Chosen checkpoint", elem_id="hs-localist-grid")
        grid_b = HeadGrid(label="Distributed (λ = 0)", elem_id="hs-localist-grid0")
    att = AttentionView(label="Attention pattern", elem_id="hs-localist-attention")
    raw = RawResult("comparison")
    inputs = {"model": model, "text": text_in, "layer": layer, "head": head}
    views = {"summary": summary, "grid": grid_a, "grid0": grid_b, "attention": att, "file": raw.file}
    shape = {"inputs": inputs, "outputs": {"raw": raw.json}, "views": views, **VIEW_EVENT}
    section(run.click, compare, draw, api_name="localist_compare", **shape)
    with example_slot:
        ex = examples.worked_example(
            [["localist-2l-lambda1.0", DEFAULT_TEXT, 1, 0], ["localist-2l-lambda0.6", DEFAULT_TEXT, 0, 2]],
            list(inputs.values()), None, [], [], labels=["λ = 1.0, layer 1 head 0", "λ = 0.6, layer 0 head 2"],
        )  # fmt: skip
        section(ex.load_input_event.then, compare, draw, api_visibility="private", **shape)
    for g in (grid_a, grid_b):
        ctx.selection.connect_grid(g)
    ctx.session.add(
        "localist", model=model, layer=layer, head=head, text=text_in, summary=summary, grid=grid_a,
        grid_distributed=grid_b, attention=att, result=raw.json, result_file=raw.file,
    )  # fmt: skip
