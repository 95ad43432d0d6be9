"""Attention & locality tab: entropy per layer × head under a locality dial (on all heads or on the selection), its
change against λ = 0, per-token entropy, a table of head metrics, attention patterns with token labels, and a λ
sweep run as a cancellable job. Wiring only: the work is in `headscope.probes` and `headscope.attention`."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import gradio as gr

from headscope.app import examples, jobs
from headscope.app import locality_views as lv
from headscope.app import selection_bar as sel
from headscope.app.figures import Plot, RawResult
from headscope.app.inputs import choice, integer, layer_head, number, text
from headscope.app.state import JOB_EVENT, STORE, VIEW_EVENT, user_errors
from headscope.app.tabs import AppContext, register_tab
from headscope.app.views import MAX_VIEW_HEADS, AttentionView, HeadGrid, TokenStrip, attention_value
from headscope.attention import MODES, LocalityDial
from headscope.cli.probes import to_argv
from headscope.errors import InputError
from headscope.models import ModelHandle
from headscope.probes import (
    MAX_PATTERN_TOKENS,
    AttentionProbes,
    ProbeConfig,
    SweepConfig,
    eval_tokens,
    head_patterns,
    model_induction_scores,
    probe_attention,
    sweep_locality,
)
from headscope.selection import HeadSet

APP_MAX_TOKENS = 1024  # one user's analysis must not hold the shared model for long
APP_MAX_CHARS = 20_000
SWEEP_TOKENS = 256
SWEEP_LAMBDAS = tuple(round(k / 10, 1) for k in range(11))
APP_SCHEDULES = ("uniform", "progressive")
SCOPES = ("all heads", "selected heads only")
PATTERN_SOURCES = ("the layer and head above", f"the selected heads (up to {MAX_VIEW_HEADS})")
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
def _dial(lam: Any, mode: Any, schedule: Any, beta: Any) -> LocalityDial:
    return LocalityDial(
        lam=number(lam, "lambda", 0.0, 1.0), mode=choice(mode, "mode", list(MODES)),
        schedule=choice(schedule, "schedule", APP_SCHEDULES), beta=number(beta, "beta", 1.0, 20.0),
    )  # fmt: skip


def _tokens(handle: ModelHandle, value: Any) -> Any:
    return handle.tokenize(
        text(value, "text", APP_MAX_CHARS), max_tokens=min(APP_MAX_TOKENS, handle.max_tokens)
    )


def _scope_heads(scope: Any, selection: Any, handle: ModelHandle) -> HeadSet | None:
    """None: the dial acts on every head; else the selected heads (refused when nothing is selected)."""
    if choice(scope, "dial scope", SCOPES) == SCOPES[0]:
        return None
    heads = sel.head_set(selection, handle)
    if not heads:
        raise InputError("the dial is set to act on the selected heads, but no head is selected")
    return heads


def _selected_here(selection: Any, handle: ModelHandle) -> HeadSet | None:
    """The selection if it holds heads of this model's shape (views highlight it); else None."""
    try:
        heads = sel.head_set(selection, handle)
    except InputError:
        return None
    return heads or None


def _scope_words(heads: HeadSet | None) -> str:
    return "all heads" if heads is None else f"heads {heads}"


def restricted(dial: LocalityDial, heads: HeadSet | None) -> LocalityDial:
    """`dial` acting on `heads` only (every head when None)."""
    return dial if heads is None else replace(dial, heads=str(heads))


def _probe(
    handle: ModelHandle, tokens: Any, dial: LocalityDial, heads: HeadSet | None, induction: bool
) -> AttentionProbes:
    cfg = ProbeConfig(target="block" if dial.mode == "block" else "local", induction=False)
    probes = probe_attention(handle, tokens, cfg=cfg, dial=restricted(dial, heads))
    return replace(probes, induction=model_induction_scores(handle)) if induction else probes


# ---- events ------------------------------------------------------------------------------------------------------
@user_errors
def analyse(
    model: str, text_in: str, lam: float, mode: str, schedule: str, beta: float, scope: str, selection: Any,
    request: gr.Request, progress: gr.Progress = gr.Progress(),  # noqa: B008
) -> tuple[Any, ...]:  # fmt: skip
    """Entropy per layer × head under the dial, its change against λ = 0, per-token entropy, head metrics.
    Long texts take seconds, so it runs as a (cancellable) job; a visitor may run several at once."""
    dial = _dial(lam, mode, schedule, beta)
    progress(0.02, desc="loading model")
    handle = STORE.get(str(model))
    tokens = _tokens(handle, text_in)
    heads = _scope_heads(scope, selection, handle)

    def work(report: jobs.Reporter) -> tuple[AttentionProbes, AttentionProbes | None]:
        report(f"{tokens.shape[1]} tokens at λ = {dial.lam:g}", 0.1)
        probes = _probe(handle, tokens, dial, heads, induction=True)
        if dial.lam == 0:
            return probes, None
        report("the same text at λ = 0 (the baseline)", 0.6)
        return probes, _probe(handle, tokens, dial.with_lambda(0.0), None, induction=False)

    spec = jobs.JobSpec("entropy view", work, model=handle.identity.name)
    probes, base = jobs.run(spec, request=request, slot="locality_analyse", progress=progress, single=False)
    chosen = _selected_here(selection, handle)
    names = chosen.names() if chosen else []
    dial_json, words = dial.to_json(), _scope_words(heads)
    payload = _payload(probes, base, dial_json, heads)
    return (
        lv.summary(probes, base, dial_json, words),
        lv.entropy_grid(probes, base, dial_json, words, names),
        lv.delta_grid(probes, base, dial_json, words, names),
        lv.token_strip(probes, chosen, sel._clean(selection).positions),
        lv.head_table(probes, base, set(names)),
        *RawResult.values(payload, f"entropy_{handle.identity.name}_lambda{dial.lam:g}"),
    )


def _payload(
    probes: AttentionProbes, base: AttentionProbes | None, dial: dict[str, Any], heads: HeadSet | None
) -> dict[str, Any]:
    """The CLI's entropy JSON (`headscope entropy --json`) plus the dial, its scope and the λ = 0 baseline."""
    out = probes.to_json()
    out.update(
        backend="eager", uniform_ceiling_bits=round(lv.ceiling_bits(len(probes.token_ids)), 6), dial=dial,
        dial_heads=None if heads is None else str(heads),
    )  # fmt: skip
    if base is not None:
        out["baseline_lambda0"] = {
            k: v for k, v in base.to_json().items() if k not in ("token_ids", "str_tokens")
        }
    return out


@user_errors
def pattern(
    model: str, text_in: str, lam: float, mode: str, schedule: str, beta: float, scope: str, selection: Any,
    layer: Any, head: Any, source: str,
) -> dict[str, Any]:  # fmt: skip
    """Attention patterns under the dial of one head (the fields) or of the selected heads, for the viewer."""
    dial = _dial(lam, mode, schedule, beta)
    handle = STORE.get(str(model))
    tokens = _tokens(handle, text_in)
    if tokens.shape[1] > MAX_PATTERN_TOKENS:
        raise InputError(
            f"the pattern viewer takes at most {MAX_PATTERN_TOKENS} tokens, got {tokens.shape[1]}"
        )
    shown = _pattern_heads(handle, selection, layer, head, source)
    heads = _scope_heads(scope, selection, handle)
    got = head_patterns(handle, tokens, shown, dial=restricted(dial, heads))
    pats = {f"L{li} H{hi}": p for (li, hi), p in got.items()}
    ids = [int(i) for i in tokens[0].tolist()]
    words = lv.dial_words(dial.to_json(), _scope_words(heads))
    return attention_value(
        handle.str_tokens(ids), ids, pats, title=f"attention of {', '.join(pats)} at {words}",
        caption=f"{handle.identity.name}, {len(ids)} tokens. Weights are softmax probabilities (each row sums to 1).",
        filename=f"attention_lambda{dial.lam:g}",
    )  # fmt: skip


def _pattern_heads(
    handle: ModelHandle, selection: Any, layer: Any, head: Any, source: str
) -> list[tuple[int, int]]:
    if choice(source, "show", PATTERN_SOURCES) == PATTERN_SOURCES[0]:
        return [layer_head(layer, head, handle.facts.n_layers, handle.facts.n_heads)]
    heads = sel.head_set(selection, handle)
    if not heads:
        raise InputError(
            "no head is selected: click cells of the entropy grid, or show the layer and head above"
        )
    if len(heads) > MAX_VIEW_HEADS:
        raise InputError(
            f"{len(heads)} heads are selected; the viewer shows at most {MAX_VIEW_HEADS} at once"
        )
    return list(heads)


@user_errors
def sweep(
    model: str, text_in: str, mode: str, schedule: str, beta: float, scope: str, selection: Any,
    request: gr.Request, progress: gr.Progress = gr.Progress(),  # noqa: B008
) -> tuple[Any, ...]:  # fmt: skip
    """An 11-point λ sweep on the text (its first SWEEP_TOKENS tokens), run as a cancellable job."""
    dial = _dial(0.0, mode, schedule, beta)
    handle = STORE.get(str(model))
    heads = _scope_heads(scope, selection, handle)
    text_ok = text(text_in, "text", APP_MAX_CHARS)
    cfg = SweepConfig(lambdas=SWEEP_LAMBDAS, dial=restricted(dial, heads))
    tokens, cut = eval_tokens(handle, text_ok, max_tokens=min(SWEEP_TOKENS, handle.max_tokens))

    def work(report: jobs.Reporter) -> dict[str, Any]:
        report(f"{len(SWEEP_LAMBDAS)} dialed forwards of {tokens.shape[1]} tokens", 0.0)
        result = sweep_locality(handle, tokens, cfg, progress=report, truncated_from=cut)
        return result.to_json()

    command = tuple(
        to_argv(
            cfg, model=handle.identity.name, text=text_ok, max_tokens=min(SWEEP_TOKENS, handle.max_tokens)
        )
    )
    spec = jobs.JobSpec(
        f"λ sweep on {handle.identity.name}", work, model=handle.identity.name, command=command
    )
    payload = jobs.run(spec, request=request, slot="locality_sweep", progress=progress)
    note = f"{payload['n_tokens']} tokens" + (
        f" (the text's first {payload['n_tokens']} of {cut})" if cut else ""
    )
    note += f", {dial.mode} mode, {dial.schedule} schedule, {_scope_words(heads)}"
    rows = payload["rows"]
    return (
        f"λ sweep done: {note}.",
        lv.sweep_figure(rows, note),
        lv.sweep_table(rows),
        *RawResult.values(payload, f"locality_sweep_{handle.identity.name}"),
    )


def _k(value: Any) -> int:
    return integer(value, "k", 1, 64)


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
        lam = gr.Slider(0.0, 1.0, value=0.0, step=0.05, label="λ (locality, 0 … 1)")
        mode = gr.Dropdown(list(MODES), value="distance", label="Mode")
        schedule = gr.Dropdown(list(APP_SCHEDULES), value="uniform", label="Layer schedule")
        beta = gr.Number(value=3.0, minimum=1.0, maximum=20.0, label="β (progressive, 1 … 20)")
    scope = gr.Radio(list(SCOPES), value=SCOPES[0], label="The dial acts on")
    dial_in = [lam, mode, schedule, beta, scope, ctx.selection.state]
    run = gr.Button("Analyse", variant="primary")
    jobs.JobControls.build("locality_analyse")  # texts of ~1000 tokens take seconds: they can be cancelled
    summary = gr.Markdown()
    with gr.Row():
        grid = HeadGrid(label="Entropy per layer × head (bits)", elem_id="hs-entropy-grid")
        delta = HeadGrid(label="Change against λ = 0 (bits)", elem_id="hs-entropy-delta")
    strip = TokenStrip(label="Per-token entropy", elem_id="hs-token-entropy")
    with gr.Row():
        k = gr.Number(value=5, precision=0, minimum=1, maximum=64, label="k", scale=0, min_width=80)
        add_low = gr.Button("Select the k lowest-entropy heads", size="sm")
        add_moved = gr.Button("Select the k heads the dial changes most", size="sm")
    heads_table = gr.Dataframe(label="Heads (click a header to sort)", interactive=False, max_height=360)
    raw = RawResult("entropy result")
    outputs = [summary, grid, delta, strip, heads_table, *raw.outputs]
    run.click(analyse, [ctx.model, text_in, *dial_in], outputs, api_name="locality_analyse", **VIEW_EVENT)
    with example_slot:
        examples.worked_example(
            [
                [DEFAULT_TEXT, 0.0, "distance", "uniform", 3.0],
                [DEFAULT_TEXT, 0.6, "distance", "uniform", 3.0],
                [INDUCTION_TEXT, 0.0, "distance", "uniform", 3.0],
            ],
            [text_in, lam, mode, schedule, beta],
            analyse,
            [ctx.model, text_in, *dial_in],
            outputs,
            labels=[
                "the model as is (λ = 0)",
                "distance dial at λ = 0.6",
                "a repeated phrase (induction heads)",
            ],
            **VIEW_EVENT,
        )
    for view in (grid, delta):
        ctx.selection.connect_grid(view)
    ctx.selection.connect_tokens(strip)
    ctx.selection.add_button(add_low, lambda g, kk: lv.rank_heads(g, _k(kk), lowest=True), [grid, k])
    ctx.selection.add_button(
        add_moved, lambda g, kk: lv.rank_heads(g, _k(kk), lowest=False, absolute=True), [delta, k]
    )

    gr.Markdown("### Attention pattern")
    with gr.Row():
        layer = gr.Number(value=0, precision=0, minimum=0, label="Layer")
        head = gr.Number(value=0, precision=0, minimum=0, label="Head")
        source = gr.Radio(list(PATTERN_SOURCES), value=PATTERN_SOURCES[0], label="Show")
        show = gr.Button("Show pattern", variant="primary", scale=0, min_width=160)
    att = AttentionView(label="Attention pattern", elem_id="hs-attention")
    show.click(
        pattern,
        [ctx.model, text_in, *dial_in, layer, head, source],
        [att],
        api_name="locality_pattern",
        **VIEW_EVENT,
    )

    gr.Markdown(f"### λ sweep (11 points, the text's first {SWEEP_TOKENS} tokens)")
    go_sweep = gr.Button("Sweep λ from 0 to 1")
    controls = jobs.JobControls.build("locality_sweep")
    curves = Plot(label="λ sweep")
    sweep_rows = gr.Dataframe(label="λ sweep (click a header to sort)", interactive=False)
    sweep_raw = RawResult("λ sweep")
    go_sweep.click(
        sweep, [ctx.model, text_in, mode, schedule, beta, scope, ctx.selection.state],
        [controls.status, curves, sweep_rows, *sweep_raw.outputs], api_name="locality_sweep",
        show_progress_on=[controls.status], **JOB_EVENT,
    )  # fmt: skip
    ctx.session.add(
        "locality", text=text_in, lam=lam, mode=mode, schedule=schedule, beta=beta, scope=scope, summary=summary,
        grid=grid, delta=delta, strip=strip, heads=heads_table, result=raw.json, result_file=raw.file, layer=layer,
        head=head, source=source, attention=att, sweep_status=controls.status, sweep_curves=curves,
        sweep_rows=sweep_rows, sweep=sweep_raw.json, sweep_file=sweep_raw.file,
    )  # fmt: skip
