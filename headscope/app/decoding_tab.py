"""Decoding tab: strategies side by side on one prompt, token by token, against greedy — with what the attention
did at every step (per-head entropy) and, optionally, the shared head selection ablated or dialled while decoding.

Wiring only: the comparison is `headscope.decoding.compare` run as a cancellable job; every view is drawn from
its JSON (the CLI's), so a result reloaded from a session file redraws the same way."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import gradio as gr
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from headscope.app import examples, jobs
from headscope.app import selection_bar as sel
from headscope.app.figures import Plot, RawResult, fmt_prob
from headscope.app.inputs import choice, integer, number, text
from headscope.app.state import JOB_EVENT, STORE, user_errors
from headscope.app.tabs import AppContext, register_tab
from headscope.app.views import HeadGrid, TokenStrip, grid_value, strip_row, strip_value, visible_token
from headscope.attention import LocalityDial
from headscope.cli.decoding import CompareCommand, to_argv
from headscope.decoding import GRAMMARS, STRATEGIES, DecodeConfig, compare
from headscope.decoding.compare import parse_strategies
from headscope.decoding.prompts import render
from headscope.errors import InputError
from headscope.models import CATALOG, ModelHandle, resolve

APP_MAX_NEW_TOKENS = 128
MAX_PROMPT_CHARS = 4000
MAX_REGEX_CHARS = 200
NONE = "(none)"
ACTIONS = ("none", "ablate", "dial")
SLOT = "decode_compare"
DEFAULT_PROMPT = (
    "Copy this sentence exactly: Krypton is a chemical element; it has symbol Kr and atomic number 36."
)
SUMMARY_PROMPT = (
    "Summarize the following text.\n\nThe Beatles were an English rock band formed in Liverpool in 1960. The band "
    "comprised John Lennon, Paul McCartney, George Harrison and Ringo Starr. They are regarded as the most "
    "influential band of all time and were integral to the development of 1960s counterculture."
)
KINDS = {"drafted": "#c8f7c5", "verifier": "#cfe3ff"}  # drafted and accepted / the verifier's own token
PAPERS = (
    ("SWIFT", "https://arxiv.org/abs/2410.06916"),
    ("lookahead decoding", "https://arxiv.org/abs/2402.02057"),
    ("AWRS", "https://arxiv.org/abs/2504.05410"),
    ("speculative sampling", "https://arxiv.org/abs/2211.17192"),
)


def make_config(
    max_new_tokens: Any, temperature: Any, seed: Any, max_draft: Any, window: Any, regex: Any, grammar: Any,
    method: Any, particles: Any, entropy: Any, heads: str | None, action: str, lam: Any,
) -> DecodeConfig:  # fmt: skip
    """The run's config from raw event values: every number checked server-side (never int()/float())."""
    use_grammar = grammar if grammar and grammar != NONE else None
    lam = number(lam, "λ", 0.0, 1.0)
    dial = LocalityDial(lam=lam, heads=heads) if action == "dial" and heads else None
    return DecodeConfig(
        max_new_tokens=integer(max_new_tokens, "max new tokens", 1, APP_MAX_NEW_TOKENS),
        temperature=number(temperature, "temperature", 0.0, 2.0),
        seed=integer(seed, "seed", 0, 2**31 - 1),
        max_draft=integer(max_draft, "max draft length", 1, 16),
        window=integer(window, "window", 1, 16),
        regex=None if use_grammar else (text(regex, "regex", MAX_REGEX_CHARS, allow_empty=True) or None),
        grammar=use_grammar,
        constraint_method=choice(method or "awrs", "constraint method", ("awrs", "mask")),
        particles=integer(particles, "SMC particles", 1, 8),
        attention_entropy=bool(entropy),
        ablate_heads=heads if action == "ablate" else None,
        dial=dial,
    )


def _heads(action: Any, selection: Any, handle: ModelHandle) -> str | None:
    act = choice(action or "none", "heads action", ACTIONS)
    if act == "none":
        return None
    hs = sel.head_set(selection, handle)
    if not hs:
        raise InputError(
            f"nothing to {act}: select heads first (click grid cells on another tab, or type them)"
        )
    return str(hs)


@user_errors
def decode_compare(
    model: str, prompt: str, chat: bool, strategies: list[str], max_new_tokens: Any, temperature: Any, seed: Any,
    max_draft: Any, window: Any, draft_model: str, regex: str, grammar: str, method: str, particles: Any = 1,
    entropy: bool = True, action: str = "none", lam: Any = 1.0, selection: Any = None,
    request: gr.Request = None,  # pyright: ignore[reportArgumentType]
    progress: gr.Progress = gr.Progress(),  # noqa: B008
) -> tuple[Any, ...]:  # fmt: skip
    """Run the chosen strategies (and greedy) on the prompt as a job; the views and the CLI's JSON."""
    resolve(str(model), allow_external=False)
    prompt = text(prompt, "the prompt", MAX_PROMPT_CHARS)
    names = parse_strategies(list(strategies or []))
    if draft_model and draft_model != NONE and draft_model not in CATALOG:
        raise InputError(f"unknown draft model {draft_model!r}")
    draft_name = draft_model if "speculative" in names and draft_model not in ("", NONE, None) else None
    if "speculative" in names and draft_name is None:
        raise InputError("speculative needs a draft model (one sharing the target's tokenizer): pick one")
    handle = STORE.get(str(model))
    heads = _heads(action, selection, handle)
    cfg = make_config(max_new_tokens, temperature, seed, max_draft, window, regex, grammar, method, particles,
                      entropy, heads, action, lam)  # fmt: skip
    cfg = replace(cfg, draft_model=draft_name)  # as the CLI's config records it
    draft = STORE.get(draft_name) if draft_name else None
    ids = handle.tokenize(render(handle, prompt, chat=bool(chat)))[0].tolist()
    runs = ["greedy", *(n for n in names if n != "greedy" or cfg.intervenes)]

    def work(report: jobs.Reporter) -> dict[str, Any]:
        progress = lambda stage, fraction: report(f"decoding: {stage}", fraction)  # noqa: E731
        return compare(handle, ids, names, cfg, draft=draft, progress=progress).to_json()

    spec = jobs.JobSpec(
        f"decoding {len(runs)} runs on {handle.identity.name}",
        work,
        model=handle.identity.name,
        command=cli_command(prompt, bool(chat), names, cfg),
    )
    payload = jobs.run(spec, request=request, slot=SLOT, progress=progress)
    return (
        f"done: {len(runs)} runs of up to {cfg.max_new_tokens} tokens",
        *views(payload, handle, selection),
    )


def cli_command(prompt: str, chat: bool, names: list[str], cfg: DecodeConfig) -> tuple[str, ...]:
    """The same comparison as a `headscope decode compare` command line (what a remote runner executes; its JSON
    is the payload the views are drawn from)."""
    return tuple(to_argv(CompareCommand(prompt=prompt, strategies=tuple(names), chat=chat, config=cfg)))


# -- views, all drawn from the comparison's JSON ---------------------------------------------------------------
def views(payload: dict[str, Any], handle: ModelHandle, selection: Any = None) -> tuple[Any, ...]:
    tokens = handle.str_tokens
    grid, note = divergence_grid(payload, tokens, handle.identity.name, selection)
    return (
        token_strips(payload, tokens),
        note,
        grid,
        entropy_heatmap(payload, tokens),
        bar_chart(payload),
        *RawResult.values(payload, f"decode_compare_{payload['model']}"),
    )


def _reference_row(payload: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Greedy's own trace, and whether it is one of the rows."""
    if payload.get("reference"):
        return payload["reference"], False
    return next(s for s in payload["strategies"] if s["name"] == "greedy"), True


def _kinds_and_notes(row: dict[str, Any]) -> tuple[list[str], list[str]]:
    kinds, notes = [], []
    for step in row["steps"]:
        for j, p in enumerate(step["verifier_probs"]):
            kinds.append(
                "drafted and accepted" if j < step["n_draft_accepted"] else "produced by the verifier"
            )
            notes.append(f"step {step['index']} · verifier p {fmt_prob(p)}")
    return kinds, notes


def _strip(row: dict[str, Any], tokens: Any, label: str, reference: bool) -> dict[str, Any]:
    ids = row["token_ids"]
    kinds, notes = _kinds_and_notes(row)
    marks = [False] * len(ids) if reference else [not m for m in row.get("matches_greedy", [True] * len(ids))]
    at = row.get("diverges_at")
    if not reference and at is not None and at < len(notes):
        notes[at] += " · first departure from greedy"
    return strip_row(
        tokens(ids), ids, cats=kinds[: len(ids)], notes=notes[: len(ids)], marks=marks, label=label
    )


def token_strips(payload: dict[str, Any], tokens: Any) -> dict[str, Any]:
    """One strip per run, greedy's own first (the reference); tokens as text, ids only on hover; shading = how
    each token was produced; outlined = differs from greedy at that position."""
    ref, shown = _reference_row(payload)
    rows = [_strip(ref, tokens, "greedy (reference)", True)]
    for s in payload["strategies"]:
        if shown and s is ref:
            continue
        same = "same as greedy" if s["identical_to_greedy"] else f"departs at token {s['diverges_at']}"
        label = f"{s['name']} ({same}, {s['tokens_per_target_forward']:.2f} tok/fwd)"
        rows.append(_strip(s, tokens, label, False))
    iv = payload.get("intervention")
    title = f"intervention: {iv} — the reference is greedy on the unchanged model" if iv else None
    categories = {"drafted and accepted": KINDS["drafted"], "produced by the verifier": KINDS["verifier"]}
    caption = "outlined: differs from greedy · hover: position, id, step, probability"
    return strip_value(rows, label="token", categories=categories, title=title, caption=caption)


def _entropy(row: dict[str, Any]) -> np.ndarray | None:
    per_token = [t for step in row["steps"] for t in step.get("attention_entropy_bits") or []]
    return np.asarray(per_token, dtype=np.float64) if per_token else None


def divergence_grid(payload: dict[str, Any], tokens: Any, model: str, selection: Any) -> tuple[Any, str]:
    """Where the first run departs from greedy: a note, and a layer × head grid of each head's entropy change
    (run − greedy) in the row that produced the differing tokens — click cells to select those heads."""
    row = next((s for s in payload["strategies"] if s.get("divergence")), None)
    if row is None:
        return grid_value(
            [[0.0]], title="no run departs from greedy", unit="bits"
        ), "Every run matches greedy."
    d = row["divergence"]
    show = lambda t: "(stopped)" if t is None else visible_token(tokens([t])[0])  # noqa: E731
    note = f"**{row['name']}** departs from greedy at token {d['position']}: “{show(d['token'])}” where greedy has "
    note += f"“{show(d['greedy_token'])}”."
    if d["entropy_bits"] is None or d["greedy_entropy_bits"] is None:
        empty = grid_value([[0.0]], title="record attention entropy to see the heads", unit="bits")
        return empty, note + " Tick “record attention entropy” to see which heads changed."
    delta = np.asarray(d["entropy_bits"]) - np.asarray(d["greedy_entropy_bits"])
    top = np.argsort(-np.abs(delta), axis=None)[:3]
    n_heads = delta.shape[1]
    note += " In the step before, the heads whose entropy changed most: " + ", ".join(
        f"{i // n_heads}.{i % n_heads} ({delta.flat[i]:+.2f} bits)" for i in top
    )
    picked = sel.names(selection) if sel.heads_of(selection) is not None else []
    value = grid_value(
        delta, title=f"entropy change at the departure ({row['name']} − greedy)", unit="bits", scale="diverging",
        model=model, selected=picked, extra=[{"label": "greedy", "unit": "bits", "z": d["greedy_entropy_bits"]}],
    )  # fmt: skip
    return value, note


def entropy_heatmap(payload: dict[str, Any], tokens: Any) -> go.Figure:
    """Token × head attention entropy (bits): greedy's reference and the first other run; one colour scale."""
    ref, _ = _reference_row(payload)
    runs = [("greedy (reference)", ref)]
    runs += [(s["name"], s) for s in payload["strategies"] if s is not ref][:1]
    runs = [(name, r, e) for name, r in runs if (e := _entropy(r)) is not None]
    if not runs:
        fig = go.Figure()
        fig.update_layout(title="attention entropy: tick “record attention entropy”", height=160)
        return fig
    fig = make_subplots(
        rows=1, cols=len(runs), subplot_titles=[n for n, _, _ in runs], horizontal_spacing=0.14
    )
    hi = max(float(e.max()) for _, _, e in runs)
    for col, (_, r, ent) in enumerate(runs, start=1):
        n_tok, n_layers, n_heads = ent.shape
        heads = [f"{layer}.{h}" for layer in range(n_layers) for h in range(n_heads)]
        labels = [f"{i} {visible_token(t)}" for i, t in enumerate(tokens(r["token_ids"][:n_tok]))]
        hover = [[f"token “{labels[i]}” (position {i}, id {r['token_ids'][i]})<br>head {h}" for h in heads]
                 for i in range(n_tok)]  # fmt: skip
        fig.add_trace(go.Heatmap(
            z=ent.reshape(n_tok, -1), x=heads, y=labels, text=hover, coloraxis="coloraxis",
            hovertemplate="%{text}: %{z:.2f} bits<extra></extra>"), 1, col)  # fmt: skip
        fig.update_yaxes(autorange="reversed", title_text="generated token", row=1, col=col)
        fig.update_xaxes(
            title_text="head (layer.head)", showticklabels=n_layers * n_heads <= 64, row=1, col=col
        )
    fig.update_layout(
        coloraxis={"colorscale": "Viridis", "cmin": 0, "cmax": hi, "colorbar": {"title": {"text": "bits"}}},
        height=max(320, 16 * len(runs[0][1]["token_ids"]) + 140), margin={"t": 50, "b": 50},
        title={"text": "attention entropy of the row that produced each token (bits)"},
    )  # fmt: skip
    return fig


def bar_chart(payload: dict[str, Any]) -> go.Figure:
    rows = payload["strategies"]
    names = [r["name"] for r in rows]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("accepted tokens per target forward", "wall speed"))
    fig.add_trace(go.Bar(x=names, y=[r["tokens_per_target_forward"] for r in rows]), 1, 1)
    fig.add_trace(go.Bar(x=names, y=[r["tokens_per_second"] for r in rows]), 1, 2)
    fig.update_yaxes(title_text="tokens / forward", row=1, col=1)
    fig.update_yaxes(title_text="tokens / s", row=1, col=2)
    fig.update_layout(showlegend=False, height=320, margin={"t": 40, "b": 30})
    return fig


@register_tab("Decoding", order=40)
def build(ctx: AppContext) -> None:
    examples.guide(
        "Decoding strategies compared token by token against greedy, with what every attention head did for each "
        "generated token (entropy of its attention row, bits) and, optionally, the selected heads ablated (mean "
        "over the prompt) or dialled while decoding.",
        "Lossless strategies (speculative, layer_skip, ngram, jacobi, lookahead) must reproduce greedy exactly at "
        "temperature 0; green tokens were drafted and accepted, blue ones produced by the verifier; an outlined "
        "token differs from greedy, and the grid shows which heads changed in the step before the first departure.",
        PAPERS,
    )
    example_slot = gr.Column()
    prompt = gr.Textbox(
        label=f"Prompt (at most {MAX_PROMPT_CHARS:,} characters)", lines=4, value=DEFAULT_PROMPT
    )
    chat = gr.Checkbox(label="Wrap in the model's chat template", value=True)
    strategies = gr.CheckboxGroup(
        choices=list(STRATEGIES), value=["greedy", "ngram", "lookahead", "layer_skip"], label="Strategies"
    )
    with gr.Row():
        max_new = gr.Slider(1, APP_MAX_NEW_TOKENS, value=32, step=1, label="Max new tokens")
        temperature = gr.Slider(0.0, 2.0, value=0.0, step=0.05, label="Temperature (0 = greedy)")
        seed = gr.Number(value=0, precision=0, label="Seed")
        entropy = gr.Checkbox(label="Record attention entropy (per head, per token)", value=True)
    with gr.Row():
        action = gr.Radio(list(ACTIONS), value="none", label="The selected heads while decoding")
        lam = gr.Slider(0.0, 1.0, value=1.0, step=0.05, label="Dial λ (distance mode)")
    with gr.Accordion("Draft, constraint and SMC settings", open=False), gr.Row():
        max_draft = gr.Slider(1, 16, value=6, step=1, label="Max draft length")
        window = gr.Slider(1, 16, value=6, step=1, label="Jacobi / lookahead window")
        draft_model = gr.Dropdown(choices=[NONE, *CATALOG], value=NONE, label="Draft model (speculative)")
        regex = gr.Textbox(label="Constraint regex", value=r"[0-9]{3}-[0-9]{4}", max_length=MAX_REGEX_CHARS)
        grammar = gr.Dropdown(choices=[NONE, *GRAMMARS], value=NONE, label="…or a grammar")
        method = gr.Radio(choices=["awrs", "mask"], value="awrs", label="Constraint method")
        particles = gr.Slider(1, 8, value=1, step=1, label="SMC particles (constrained)")
    run = gr.Button("Compare", variant="primary")
    controls = jobs.JobControls.build(SLOT)
    strip = TokenStrip(label="Tokens by strategy", elem_id="hs-decoding-strip")
    note = gr.Markdown()
    grid = HeadGrid(label="Entropy change at the first departure (bits)", elem_id="hs-decoding-grid")
    heatmap = Plot(label="Attention entropy per generated token and head")
    bars = Plot(label="Speed")
    raw = RawResult("comparison")
    inputs = [ctx.model, prompt, chat, strategies, max_new, temperature, seed, max_draft, window, draft_model,
              regex, grammar, method, particles, entropy, action, lam, ctx.selection.state]  # fmt: skip
    outputs = [controls.status, strip, note, grid, heatmap, bars, *raw.outputs]
    event = {"show_progress_on": [controls.status], **JOB_EVENT}
    run.click(decode_compare, inputs, outputs, api_name="decode_compare", **event)
    with example_slot:
        examples.worked_example(
            [[DEFAULT_PROMPT, ["greedy", "ngram", "lookahead", "layer_skip"], 32],
             [SUMMARY_PROMPT, ["greedy", "ngram", "lookahead"], 48],
             ["Make up a phone number for a pizza shop, written like 555-1234.", ["greedy", "constrained"], 12]],
            [prompt, strategies, max_new], decode_compare, inputs, outputs,
            labels=["copying: drafts from the prompt", "summarising a passage", "AWRS: a phone-number regex"],
            **event,
        )  # fmt: skip
    ctx.selection.connect_grid(grid)
    ctx.session.add(
        "decoding", prompt=prompt, chat=chat, strategies=strategies, max_new_tokens=max_new, temperature=temperature,
        seed=seed, entropy=entropy, action=action, lam=lam, max_draft=max_draft, window=window, regex=regex,
        grammar=grammar, method=method, particles=particles, status=controls.status, strip=strip, note=note,
        grid=grid, heatmap=heatmap, bars=bars, result=raw.json, result_file=raw.file,
    )  # fmt: skip
