"""Attention & locality tab: entropy per layer × head under a locality dial (on all heads or on the selection), its
change against λ = 0, per-token entropy, a table of head metrics, attention patterns with token labels, and a λ
sweep run as a cancellable job. Wiring only: the work is `headscope.probes` (`entropy_view`, `pattern_view`,
`sweep_locality`), the drawing `locality_views.py` from their typed results."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import gradio as gr

from headscope.app import examples, jobs
from headscope.app import locality_views as lv
from headscope.app import selection_bar as sel
from headscope.app.figures import Plot, RawResult, json_file
from headscope.app.inputs import choice, integer, number, ranged_number, text
from headscope.app.state import STORE, VIEW_EVENT
from headscope.app.tabs import AppContext, register_tab
from headscope.app.views import MAX_VIEW_HEADS, AttentionView, HeadGrid, TokenStrip
from headscope.app.wiring import Ctx, bind, section
from headscope.attention import MODES, LocalityDial
from headscope.cli.probes import to_argv
from headscope.errors import InputError
from headscope.models import ModelHandle
from headscope.probes import MAX_PATTERN_TOKENS, SweepConfig, SweepResult, eval_tokens, sweep_locality
from headscope.probes.view import EntropyView, PatternView, ViewConfig, entropy_view, pattern_view
from headscope.selection import HeadSet

APP_MAX_TOKENS = 1024  # one user's analysis must not hold the shared model for long
APP_MAX_CHARS = 20_000
SWEEP_TOKENS = 256
SWEEP_LAMBDAS = tuple(round(k / 10, 1) for k in range(11))
APP_SCHEDULES = ("uniform", "progressive")
SCOPES = ("all heads", "selected heads only")
DEFAULT_TEXT = (
    "The cat sat on the mat. It was warm, and the sun was shining. "
    "Later that day the cat went inside, because the rain had started."
)
INDUCTION_TEXT = (
    "Mr Dursley was the director of a firm called Grunnings. Mr Dursley was the director of a firm"
)
PAPERS = (
    ("Localist LLMs (Diederich 2025, arXiv 2510.09338)", "https://arxiv.org/abs/2510.09338"),
    ("AILA (arXiv 2511.03559)", "https://arxiv.org/abs/2511.03559"),
    ("Progressive Localisation (arXiv 2511.18375)", "https://arxiv.org/abs/2511.18375"),
)


# ---- inputs ------------------------------------------------------------------------------------------------------
def _prepared(inputs: dict[str, Any], lam: Any = None) -> tuple[str, ModelHandle, LocalityDial]:
    """The text, the model and the dial of an event (λ from `lam` when given: the sweep sets its own), every
    field checked before the model is touched; the dial acts on every head, or on the selected heads (refused
    when nothing is selected)."""
    dial = LocalityDial(
        lam=number(inputs["lam"] if lam is None else lam, "lambda", 0.0, 1.0),
        mode=choice(inputs["mode"], "mode", list(MODES)),
        schedule=choice(inputs["schedule"], "schedule", APP_SCHEDULES),
        beta=number(inputs["beta"], "beta", 1.0, 20.0),
    )
    on_selection = choice(inputs["scope"], "dial scope", SCOPES) == SCOPES[1]
    text_ok = text(inputs["text"], "text", APP_MAX_CHARS)
    handle = STORE.get(str(inputs["model"]))
    if on_selection:
        why = "the dial is set to act on the selected heads"
        dial = replace(dial, heads=str(sel.selected_heads(inputs["selection"], handle, why)))
    return text_ok, handle, dial


def _selected_here(selection: Any, handle: ModelHandle) -> HeadSet | None:
    """The selection if it holds heads of this model's shape (views highlight it); else None."""
    try:
        heads = sel.head_set(selection, handle)
    except InputError:
        return None
    return heads or None


def _shown_heads(inputs: dict[str, Any], handle: ModelHandle) -> list[tuple[int, int]]:
    """The pattern viewer's heads: the field in the L.H grammar, or the selection when the field is empty."""
    raw = text(inputs["heads"], "heads to show", 200, allow_empty=True).strip()
    n_l, n_h = handle.facts.n_layers, handle.facts.n_heads
    heads = HeadSet.parse(raw, n_l, n_h) if raw else sel.head_set(inputs["selection"], handle)
    if not heads:
        raise InputError("no head to show: type heads (e.g. 9.4) or select cells of the entropy grid")
    if len(heads) > MAX_VIEW_HEADS:
        raise InputError(f"{len(heads)} heads to show; the viewer shows at most {MAX_VIEW_HEADS} at once")
    return list(heads)


# ---- events ------------------------------------------------------------------------------------------------------
def analyse(inputs: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    """Entropy per layer × head under the dial, its change against λ = 0, per-token entropy, head metrics:
    `raw` = `probes.EntropyView` JSON. Long texts take seconds, so it runs as a (cancellable) job carrying its
    CLI command (`headscope locality view`); a visitor may run several at once."""
    text_ok, handle, dial = _prepared(inputs)
    shown = _selected_here(inputs["selection"], handle)
    limit = min(APP_MAX_TOKENS, handle.max_tokens)
    handle.tokenize(text_ok, max_tokens=limit)  # refused (too long) before the job starts

    def work(report: jobs.Reporter) -> dict[str, Any]:
        view = entropy_view(handle, text_ok, dial, max_tokens=limit, shown=shown, progress=report)
        return view.to_json()

    cfg = ViewConfig(dial, str(shown) if shown else None, limit)
    command = tuple(to_argv(cfg, model=handle.identity.name, text=text_ok))  # a cluster runs the same view
    spec = jobs.JobSpec("entropy view", work, model=handle.identity.name, command=command)
    payload = jobs.run(
        spec, request=ctx.request, slot="locality_analyse", progress=ctx.progress, single=False
    )
    return {"raw": payload}


def draw_entropy(inputs: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    """The entropy views from `raw` (an `EntropyView` JSON: a run, a session file or a cluster job alike)."""
    if not inputs["raw"]:
        return {}
    view = EntropyView.from_json(inputs["raw"])
    selection = sel._clean(inputs["selection"])
    names = list(sel.names(selection)) if selection.model in (None, view.probes.model) else []
    return {
        "summary": lv.summary(view), "grid": lv.entropy_grid(view, names), "delta": lv.delta_grid(view, names),
        "strip": lv.token_strip(view, selection.positions), "heads": lv.head_table(view, set(names)),
        "file": json_file(inputs["raw"], lv.file_name(view)),
    }  # fmt: skip


def pattern(inputs: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    """Attention patterns under the dial of the heads typed (or, with the field empty, of the selected heads)."""
    text_ok, handle, dial = _prepared(inputs)
    view = pattern_view(
        handle, text_ok, _shown_heads(inputs, handle), dial=dial, max_tokens=MAX_PATTERN_TOKENS
    )
    return {"attention": lv.pattern(PatternView.from_json(view.to_json()))}


def sweep(inputs: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    """An 11-point λ sweep on the text (its first SWEEP_TOKENS tokens), run as a cancellable job that carries its
    CLI command (`headscope locality sweep`): on a Ray cluster it runs there. `raw` = `SweepResult` JSON."""
    text_ok, handle, dial = _prepared(inputs, 0.0)
    cfg = SweepConfig(lambdas=SWEEP_LAMBDAS, dial=dial)
    max_tokens = min(SWEEP_TOKENS, handle.max_tokens)
    tokens, cut = eval_tokens(handle, text_ok, max_tokens=max_tokens)
    name = handle.identity.name

    def work(report: jobs.Reporter) -> dict[str, Any]:
        report(f"{len(SWEEP_LAMBDAS)} dialed forwards", 0.0)
        return sweep_locality(handle, tokens, cfg, progress=report, truncated_from=cut).to_json()

    command = tuple(to_argv(cfg, model=name, text=text_ok, max_tokens=max_tokens))
    spec = jobs.JobSpec(f"λ sweep on {name}", work, model=name, command=command)
    return {"raw": jobs.run(spec, request=ctx.request, slot="locality_sweep", progress=ctx.progress)}


def draw_sweep(inputs: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    if not inputs["raw"]:
        return {}
    result = SweepResult.from_json(inputs["raw"])
    return {
        "status": f"λ sweep done: {lv.sweep_note(result)}.", "curves": lv.sweep_figure(result),
        "table": lv.sweep_table(result), "file": json_file(inputs["raw"], f"locality_sweep_{result.model}"),
    }  # fmt: skip


def _ranked(raw: Any, k: Any, by: str) -> list[tuple[int, int]]:
    """The k heads of the shown entropy result ranked `by` entropy or by the dial's change (none before a run)."""
    k_ok = integer(k, "k", 1, 64)
    return EntropyView.from_json(raw).rank_heads(k_ok, by=by) if raw else []


# ---- layout ------------------------------------------------------------------------------------------------------
@register_tab("Attention & locality", order=10)
def build(ctx: AppContext) -> None:
    examples.guide(
        "Attention entropy per layer × head — how spread out each head's attention is, in bits — under an "
        "inference-time **locality dial** that penalises attending far away (λ = 0: the model as is).",
        "Low entropy (dark) = focused heads; compare λ > 0 against λ = 0 in the change grid (same colour scale at "
        f"every λ). Click grid cells to select heads. Texts up to {APP_MAX_TOKENS} tokens ({APP_MAX_CHARS:,} "
        f"characters); patterns up to {MAX_PATTERN_TOKENS} tokens; the sweep uses the first {SWEEP_TOKENS}.",
        PAPERS,
    )
    example_slot = gr.Column()  # filled below, once the outputs exist: examples open the tab
    text_in = gr.Textbox(label=f"Text (at most {APP_MAX_CHARS:,} characters)", value=DEFAULT_TEXT, lines=4)
    with gr.Row():
        lam = ranged_number("λ (locality)", 0, 1, 0.0, step=0.05, elem_id="hs-lambda")
        mode = gr.Dropdown(list(MODES), value="distance", label="Mode")
        schedule = gr.Dropdown(list(APP_SCHEDULES), value="uniform", label="Layer schedule")
        beta = ranged_number("β (progressive)", 1, 20, 3.0)
    scope = gr.Radio(list(SCOPES), value=SCOPES[0], label="The dial acts on")
    dial_in = {"lam": lam, "mode": mode, "schedule": schedule, "beta": beta, "scope": scope}
    common = {"model": ctx.model, "text": text_in, **dial_in, "selection": ctx.selection.state}
    run = gr.Button("Analyse", variant="primary")
    controls = jobs.JobControls.build("locality_analyse")  # texts of ~1000 tokens take seconds: cancellable
    summary = gr.Markdown()
    with gr.Row():
        grid = HeadGrid(label="Entropy per layer × head (bits)", elem_id="hs-entropy-grid")
        delta = HeadGrid(label="Change against λ = 0 (bits)", elem_id="hs-entropy-delta")
    strip = TokenStrip(label="Per-token entropy", elem_id="hs-token-entropy")
    with gr.Row():
        k = ranged_number("k", 1, 64, 5, integer=True, scale=0, min_width=100)
        add_low = gr.Button("Select the k lowest-entropy heads", size="sm")
        add_moved = gr.Button("Select the k heads the dial changes most", size="sm")
    heads_table = gr.Dataframe(label="Heads (click a header to sort)", interactive=False, max_height=360)
    raw = RawResult("entropy result")
    views = {"summary": summary, "grid": grid, "delta": delta, "strip": strip, "heads": heads_table,
             "file": raw.file}  # fmt: skip
    draw_in = {"raw": raw.json, "selection": ctx.selection.state}
    entropy = {"inputs": common, "outputs": {"raw": raw.json}, "views": views, "draw_inputs": draw_in,
               "controls": controls, "view": True}  # fmt: skip
    section(run.click, analyse, draw_entropy, api_name="locality_analyse", **entropy)
    with example_slot:
        ex = examples.worked_example(
            [
                [DEFAULT_TEXT, 0.0, "distance", "uniform", 3.0],
                [DEFAULT_TEXT, 0.6, "distance", "uniform", 3.0],
                [INDUCTION_TEXT, 0.0, "distance", "uniform", 3.0],
            ],
            [text_in, lam, mode, schedule, beta],
            labels=["the model as is (λ = 0)", "distance dial at λ = 0.6", "a repeated phrase (induction heads)"],
        )  # fmt: skip
        section(ex.load_input_event.then, analyse, draw_entropy, api_visibility="private", **entropy)
    for view in (grid, delta):
        ctx.selection.connect_grid(view)
    ctx.selection.connect_tokens(strip)
    ctx.selection.add_button(add_low, lambda r, kk: _ranked(r, kk, "entropy"), [raw.json, k])
    ctx.selection.add_button(add_moved, lambda r, kk: _ranked(r, kk, "delta"), [raw.json, k])

    gr.Markdown("### Attention pattern")
    with gr.Row():
        shown = gr.Textbox(
            value="", label=f"Heads to show (L.H, up to {MAX_VIEW_HEADS}; empty: the selected heads)",
            placeholder="e.g. 9.4, 12.1 — empty: the selected heads", scale=3,
        )  # fmt: skip
        show = gr.Button("Show pattern", variant="primary", scale=0, min_width=160)
    att = AttentionView(label="Attention pattern", elem_id="hs-attention")
    bind(show.click, pattern, inputs={**common, "heads": shown}, outputs={"attention": att},
         api_name="locality_pattern", **VIEW_EVENT)  # fmt: skip

    gr.Markdown(f"### λ sweep (11 points, the text's first {SWEEP_TOKENS} tokens)")
    go_sweep = gr.Button("Sweep λ from 0 to 1")
    sweep_ctl = jobs.JobControls.build("locality_sweep")
    curves = Plot(label="λ sweep")
    sweep_rows = gr.Dataframe(label="λ sweep (click a header to sort)", interactive=False)
    sweep_raw = RawResult("λ sweep")
    sweep_in = {k_: v for k_, v in common.items() if k_ != "lam"}
    swept = {"status": sweep_ctl.status, "curves": curves, "table": sweep_rows, "file": sweep_raw.file}
    section(go_sweep.click, sweep, draw_sweep, inputs=sweep_in, outputs={"raw": sweep_raw.json}, views=swept,
            controls=sweep_ctl, api_name="locality_sweep")  # fmt: skip
    drawn = {k_: v for k_, v in views.items() if k_ != "file"}  # summary, grid, delta, strip, heads
    ctx.session.add(
        "locality", text=text_in, **dial_in, **drawn, result=raw.json, result_file=raw.file, shown_heads=shown,
        attention=att, sweep_status=sweep_ctl.status, sweep_curves=curves, sweep_rows=sweep_rows,
        sweep=sweep_raw.json, sweep_file=sweep_raw.file,
    )  # fmt: skip
