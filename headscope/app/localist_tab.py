"""Localist models tab: the shipped λ-sweep table and curves, and a shipped checkpoint's attention next to the
distributed (λ = 0) one on the same text. Wiring only: the work is in `headscope.localist.train_*`."""

from __future__ import annotations

from typing import Any

import gradio as gr

from headscope.app import examples
from headscope.app.figures import Plot, RawResult, curves, fmt_num, table
from headscope.app.inputs import choice, layer_head, text
from headscope.app.locality_views import ceiling_bits
from headscope.app.state import STORE, VIEW_EVENT, user_errors
from headscope.app.tabs import AppContext, register_tab
from headscope.app.views import AttentionView, HeadGrid, attention_value, grid_value
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
TABLE_COLUMNS = (
    ("run", "run"), ("lambda", "λ"), ("schedule", "schedule"), ("beta", "β"), ("perplexity", "test perplexity"),
    ("accuracy", "next-token accuracy (share)"), ("mean_entropy_bits", "mean entropy (bits)"),
    ("pointer_fidelity", "pointer fidelity (mass)"), ("pointer_hit_rate", "pointer hit rate (share)"),
    ("seconds", "training time (s)"),
)  # fmt: skip
PAPERS = (
    ("AILA (arXiv 2511.03559)", "https://arxiv.org/abs/2511.03559"),
    ("Progressive Localisation (arXiv 2511.18375)", "https://arxiv.org/abs/2511.18375"),
)


def _table() -> dict[str, Any] | None:
    try:
        return load_table()
    except HeadscopeError:
        return None


@user_errors
def sweep_table() -> dict[str, Any]:
    """The shipped sweep table (rows, summary, paper numbers); no model is loaded."""
    t = _table()
    if t is None:
        raise InputError("no sweep table is shipped: run `headscope localist sweep --ship`")
    return {k: t[k] for k in ("rows", "summary", "paper", "machine")}


def rows_table(t: dict[str, Any] | None) -> dict[str, Any]:
    return table((t or {}).get("rows", []), TABLE_COLUMNS)


def paper_table(t: dict[str, Any] | None) -> dict[str, Any]:
    """Ours next to the paper's numbers, where both exist (the shipped runs are far smaller than the paper's)."""
    s, p = (t or {}).get("summary", {}), (t or {}).get("paper", {})
    rows = [
        {"what": "mean entropy at λ = 0 (bits)", "ours": s.get("entropy_bits_lambda0"), "paper": p.get("entropy_bits_lambda0")},
        {"what": "mean entropy at λ = 1 (bits)", "ours": s.get("entropy_bits_lambda1"), "paper": p.get("entropy_bits_lambda1")},
        {"what": "best trade-off λ", "ours": s.get("best_tradeoff_lambda"), "paper": p.get("best_lambda")},
        {"what": "entropy falls as λ rises", "ours": _yes(s.get("entropy_falls_like_paper")), "paper": "yes"},
        {"what": "pointer fidelity rises with λ", "ours": _yes(s.get("pointer_fidelity_rises")), "paper": "yes"},
    ]  # fmt: skip
    return table(rows, [("what", "quantity"), ("ours", "shipped runs"), ("paper", "paper (abstract)")])


def _yes(v: Any) -> str:
    return "n/a" if v is None else ("yes" if v else "no")


def sweep_figure(t: dict[str, Any] | None) -> Any:
    aila = sorted((t or {}).get("aila", []), key=lambda r: r["lambda"])
    return curves(
        [r["lambda"] for r in aila],
        [
            ("mean attention entropy", "entropy (bits)", [r["mean_entropy_bits"] for r in aila]),
            ("test perplexity", "perplexity", [r["perplexity"] for r in aila]),
            ("pointer fidelity", "attention mass on target (0–1)", [r["pointer_fidelity"] for r in aila]),
        ],
        x_label="training λ", title="shipped 2-layer localist models: λ → entropy, perplexity, pointer fidelity",
    )  # fmt: skip


def _checked(name: Any, text_in: Any, layer: Any, head: Any) -> tuple[str, str, int, int]:
    name = choice(name, "shipped localist model", SHIPPED_MODELS)
    li, hi = layer_head(layer, head, 2, 4)  # every shipped model is 2 layers × 4 heads
    return name, text(text_in, "text", APP_MAX_CHARS), li, hi


def _label(reading: AttentionReading) -> str:
    return reading.model.removeprefix("localist-2l-").replace("lambda", "λ = ")


def _views(readings: list[AttentionReading], ids: list[int], layer: int, head: int) -> tuple[Any, Any, Any]:
    n = len(readings[0].str_tokens)
    grids = [
        grid_value(
            r.entropy_bits,
            title=f"{_label(r)}: attention entropy per head",
            unit="bits",
            zmin=0.0,
            zmax=ceiling_bits(n),
            model=r.model,
            marks={f"{layer}.{head}": "◆"},
            mark_names={"◆": "head shown below"},
            caption=f"0 … {ceiling_bits(n):.2f} bits (this text's uniform ceiling), the same scale for both models.",
            filename=f"{r.model}_entropy",
        )
        for r in readings
    ]
    same = all(r.str_tokens == readings[0].str_tokens for r in readings)
    if not same:  # never expected (the shipped models share a tokenizer); show the first model only
        readings = readings[:1]
    pats = {f"{_label(r)} · L{layer} H{head}": r.patterns[layer, head] for r in readings}
    att = attention_value(
        list(readings[0].str_tokens), ids, pats, title=f"layer {layer}, head {head}: localist vs distributed",
        caption="The localist model's head (left) keeps its attention near the diagonal; the distributed one spreads.",
        filename=f"localist_L{layer}H{head}",
    )  # fmt: skip
    return grids[0], grids[-1], att


@user_errors
def compare_attention(
    name: str,
    text_in: str,
    layer: Any,
    head: Any,
    progress: gr.Progress = gr.Progress(),  # noqa: B008
) -> tuple[Any, ...]:
    """The chosen shipped model's attention (entropy per layer × head, one head's pattern) next to λ = 0's."""
    name, text_ok, li, hi = _checked(name, text_in, layer, head)
    readings = []
    for i, model in enumerate(dict.fromkeys((name, DISTRIBUTED_MODEL))):
        progress(0.1 + 0.4 * i, desc=f"running {model}")
        readings.append(read_attention(STORE.get(model), text_ok, max_tokens=APP_MAX_TOKENS))
    payload = {"readings": [r.to_json() for r in readings], "layer": li, "head": hi}
    line = " · ".join(f"{_label(r)}: {fmt_num(r.mean_entropy_bits, 2)} bits" for r in readings)
    n = len(readings[0].str_tokens)
    summary = f"Mean attention entropy on {n} tokens — {line} (uniform ceiling {ceiling_bits(n):.2f} bits)."
    ids = [int(i) for i in STORE.get(name).tokenize(text_ok, max_tokens=APP_MAX_TOKENS)[0].tolist()]
    return (summary, *_views(readings, ids, li, hi), *RawResult.values(payload, f"localist_compare_{name}"))


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
    gr.Dataframe(value=rows_table(t), label="Sweep table (click a header to sort)", interactive=False)
    with gr.Row():
        Plot(value=sweep_figure(t), label="λ → entropy / perplexity / pointer fidelity")
        gr.Dataframe(value=paper_table(t), label="Shipped runs vs the paper", interactive=False)
    with gr.Accordion("Sweep table: raw JSON", open=False):
        show = gr.Button("Load the sweep table as JSON", size="sm")
        table_json = gr.JSON(label="Sweep table")
    show.click(sweep_table, outputs=[table_json], api_name="localist_sweep_table", queue=False)
    with gr.Row():
        model = gr.Dropdown(
            choices=list(SHIPPED_MODELS), value="localist-2l-lambda1.0", label="Shipped model"
        )
        layer = gr.Number(value=1, precision=0, minimum=0, maximum=1, label="Layer (0 … 1)")
        head = gr.Number(value=0, precision=0, minimum=0, maximum=3, label="Head (0 … 3)")
    text_in = gr.Textbox(value=DEFAULT_TEXT, lines=3, label=f"Text (at most {APP_MAX_CHARS:,} characters)")
    run = gr.Button("Compare with the distributed model (λ = 0)", variant="primary")
    summary = gr.Markdown()
    with gr.Row():
        grid_a = HeadGrid(label="Chosen checkpoint", elem_id="hs-localist-grid")
        grid_b = HeadGrid(label="Distributed (λ = 0)", elem_id="hs-localist-grid0")
    att = AttentionView(label="Attention pattern", elem_id="hs-localist-attention")
    raw = RawResult("comparison")
    inputs, outputs = [model, text_in, layer, head], [summary, grid_a, grid_b, att, *raw.outputs]
    run.click(compare_attention, inputs, outputs, api_name="localist_compare", **VIEW_EVENT)
    with example_slot:
        examples.worked_example(
            [["localist-2l-lambda1.0", DEFAULT_TEXT, 1, 0], ["localist-2l-lambda0.6", DEFAULT_TEXT, 0, 2]],
            inputs,
            compare_attention,
            inputs,
            outputs,
            labels=["λ = 1.0, layer 1 head 0", "λ = 0.6, layer 0 head 2"],
            **VIEW_EVENT,
        )
    for g in (grid_a, grid_b):
        ctx.selection.connect_grid(g)
    ctx.session.add(
        "localist", model=model, layer=layer, head=head, text=text_in, summary=summary, grid=grid_a,
        grid_distributed=grid_b, attention=att, result=raw.json, result_file=raw.file,
    )  # fmt: skip
