"""Decoding tab: strategies side by side on one prompt, token by token, against greedy — with what the attention
did at every step (per-head entropy) and, optionally, a head set ablated or dialled while decoding."""

from __future__ import annotations

import html
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from headscope.app.inputs import integer, number
from headscope.app.registry import AppContext, register_tab
from headscope.app.state import MODEL_CONCURRENCY_ID, STORE, user_errors
from headscope.decoding import GRAMMARS, STRATEGIES, DecodeConfig, compare
from headscope.decoding.compare import Comparison, StrategyResult, parse_strategies
from headscope.decoding.prompts import render
from headscope.errors import InputError
from headscope.models import CATALOG, resolve

APP_MAX_NEW_TOKENS = 128
MAX_PROMPT_CHARS = 4000
MAX_REGEX_CHARS = 200
MAX_HEADS_CHARS = 200
NONE = "(none)"
DEFAULT_PROMPT = (
    "Copy this sentence exactly: Krypton is a chemical element; it has symbol Kr and atomic number 36."
)
COLOURS = {"drafted": "#c8f7c5", "verifier": "#cfe3ff"}
PAPERS = (
    "SWIFT (arXiv 2410.06916), lookahead decoding (arXiv 2402.02057), AWRS (arXiv 2504.05410), "
    "speculative sampling (Leviathan et al. 2023)"
)


def _check_text(prompt: str, regex: str, heads: str, draft_model: str) -> None:
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError("the prompt is empty")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InputError(f"the prompt is too long ({len(prompt)} characters; limit {MAX_PROMPT_CHARS})")
    if len(regex or "") > MAX_REGEX_CHARS:
        raise InputError(f"the regex is too long (limit {MAX_REGEX_CHARS} characters)")
    if len(heads or "") > MAX_HEADS_CHARS:
        raise InputError(f"the head selection is too long (limit {MAX_HEADS_CHARS} characters)")
    if draft_model and draft_model != NONE and draft_model not in CATALOG:
        raise InputError(f"unknown draft model {draft_model!r}")


def make_config(
    max_new_tokens: Any, temperature: Any, seed: Any, max_draft: Any, window: Any, regex: str, grammar: str,
    method: str, particles: Any, entropy: bool, heads: str, action: str, lam: Any,
) -> DecodeConfig:  # fmt: skip
    """The run's config from raw event values: every number checked server-side (never int()/float())."""
    use_grammar = grammar if grammar and grammar != NONE else None
    return DecodeConfig(
        max_new_tokens=integer(max_new_tokens, "max new tokens", 1, APP_MAX_NEW_TOKENS),
        temperature=number(temperature, "temperature", 0.0, 2.0),
        seed=integer(seed, "seed", 0, 2**31 - 1),
        max_draft=integer(max_draft, "max draft length", 1, 16),
        window=integer(window, "window", 1, 16),
        regex=(regex or None) if not use_grammar else None,
        grammar=use_grammar,
        constraint_method=str(method or "awrs"),
        particles=integer(particles, "SMC particles", 1, 8),
        attention_entropy=bool(entropy),
        heads=(heads or "").strip() or None,
        heads_action=str(action or "ablate"),
        dial_lambda=number(lam, "λ", 0.0, 1.0),
    )


@user_errors
def decode_compare(
    model: str, prompt: str, chat: bool, strategies: list[str], max_new_tokens: Any, temperature: Any, seed: Any,
    max_draft: Any, window: Any, draft_model: str, regex: str, grammar: str, method: str, particles: Any = 1,
    entropy: bool = True, heads: str = "", action: str = "ablate", lam: Any = 1.0,
    progress: gr.Progress = gr.Progress(),  # noqa: B008
) -> tuple[str, go.Figure, go.Figure, dict[str, Any], str]:  # fmt: skip
    """Run the chosen strategies (and greedy) on the prompt: token strips, entropy heatmap, bars, JSON, file."""
    resolve(str(model), allow_external=False)
    _check_text(prompt, regex, heads, draft_model)
    names = parse_strategies(list(strategies or []))
    cfg = make_config(max_new_tokens, temperature, seed, max_draft, window, regex, grammar, method, particles,
                      entropy, heads, action, lam)  # fmt: skip
    progress(0.05, desc=f"loading {model}")
    handle = STORE.get(str(model))
    draft = STORE.get(draft_model) if "speculative" in names and draft_model not in ("", NONE, None) else None
    ids = handle.tokenize(render(handle, prompt, chat=bool(chat)))[0].tolist()
    total = 1 + sum(1 for n in names if n != "greedy" or cfg.intervenes)
    done = [0]

    def tick(name: str) -> None:
        progress(0.1 + 0.9 * done[0] / total, desc=f"decoding: {name}")
        done[0] += 1

    result = compare(handle, ids, names, cfg, draft=draft, progress=tick)
    payload = result.to_json()
    path = Path(tempfile.mkdtemp(prefix="headscope-decode-")) / "decode_compare.json"
    path.write_text(json.dumps(payload))
    return (
        token_view(result, handle.str_tokens),
        entropy_heatmap(result, handle.str_tokens),
        bar_chart(result),
        payload,
        str(path),
    )


# -- views -----------------------------------------------------------------------------------------------------
def visible(text: str) -> str:
    """A token's text with its whitespace made visible (· space, ⏎ newline, → tab)."""
    return text.replace(" ", "·").replace("\n", "⏎").replace("\t", "→") or "∅"


def _legend() -> str:
    return (
        '<div style="margin-bottom:6px">shading: '
        f'<span style="background:{COLOURS["drafted"]};padding:0 4px">drafted, accepted by the verifier</span> '
        f'<span style="background:{COLOURS["verifier"]};padding:0 4px">produced by the verifier itself</span> '
        '<span style="border-bottom:3px solid #d33;padding:0 4px">differs from greedy</span> '
        '<span style="color:#d33">▼</span> first departure (hover: the heads\' entropy in the step before). '
        "Boxes are verifier steps. Hover a token for its id, position and probability.</div>"
    )


def _divergence_note(r: StrategyResult, str_tokens: Callable) -> str:
    d = r.divergence
    if d is None:
        return ""
    tok = "(stopped)" if d.token is None else visible(str_tokens([d.token])[0])
    ref = "(stopped)" if d.greedy_token is None else visible(str_tokens([d.greedy_token])[0])
    note = f"departs from greedy at token {d.position}: {tok!r} where greedy has {ref!r}"
    if d.entropy_bits is not None and d.greedy_entropy_bits is not None:
        diff = (d.entropy_bits - d.greedy_entropy_bits).abs()
        flat = diff.flatten().topk(min(3, diff.numel()))
        n_heads = diff.shape[1]
        heads = ", ".join(
            f"{i // n_heads}.{i % n_heads}: {float(d.greedy_entropy_bits.flatten()[i]):.2f}→"
            f"{float(d.entropy_bits.flatten()[i]):.2f} bits"
            for i in flat.indices.tolist()
        )
        note += f"; in the step before, the heads whose entropy differs most: {heads}"
    return note


def _strip(r: StrategyResult, str_tokens: Callable, reference: bool) -> str:
    pos, parts = 0, []
    for step in r.trace.steps:
        toks = []
        for j, tok in enumerate(step.accepted):
            kind = "drafted" if j < step.n_draft_accepted else "verifier"
            differs = not reference and pos < len(r.matches_greedy) and not r.matches_greedy[pos]
            style = f"background:{COLOURS[kind]};" + ("border-bottom:3px solid #d33;" if differs else "")
            title = f"id {tok} · position {pos} · p {step.verifier_probs[j]:.3f} · {kind}"
            mark = ""
            if not reference and r.diverges_at == pos:
                mark = f'<span style="color:#d33" title="{html.escape(_divergence_note(r, str_tokens))}">▼</span>'
            text = html.escape(visible(str_tokens([tok])[0]))
            toks.append(f'{mark}<span style="{style}" title="{html.escape(title)}">{text}</span>')
            pos += 1
        parts.append(f'<span style="border:1px solid #999;margin:1px;white-space:pre">{"".join(toks)}</span>')
    return "".join(parts)


def _row_label(r: StrategyResult, reference: bool) -> str:
    name = f"<b>{html.escape(r.trace.strategy)}</b>"
    mat = f"{r.trace.tokens_per_target_forward:.2f} tokens per target forward"
    if reference:
        return f"{name} — the reference ({mat})"
    same = (
        "same tokens as greedy" if r.identical_to_greedy else f"departs from greedy at token {r.diverges_at}"
    )
    return f"{name} ({same}; {mat})"


def token_view(result: Comparison, str_tokens: Callable) -> str:
    """One strip per strategy, greedy's own as the reference; tokens as text, ids only on hover."""
    iv = next((r.trace.intervention for r in result.results if r.trace.intervention), None)
    rows = [_legend()]
    if iv:
        rows.append(
            f"<div><b>intervention</b>: {html.escape(iv)} (greedy reference: the unchanged model)</div>"
        )
    for r in result.results:
        reference = r.trace.strategy == "greedy" and not r.trace.intervention
        note = _divergence_note(r, str_tokens) if not reference else ""
        rows.append(
            f'<div style="margin:6px 0">{_row_label(r, reference)}<br>{_strip(r, str_tokens, reference)}'
            + (f'<div style="color:#a33;font-size:90%">{html.escape(note)}</div>' if note else "")
            + "</div>"
        )
    return "\n".join(rows)


def entropy_heatmap(result: Comparison, str_tokens: Callable) -> go.Figure:
    """Token × head attention entropy (bits) of the greedy reference and of the first other run that has it."""
    runs = [("greedy (reference)", result.greedy)]
    runs += [(r.trace.strategy, r.trace) for r in result.results if r.trace is not result.greedy][:1]
    runs = [(name, t) for name, t in runs if t.attention_entropy is not None]
    fig = go.Figure()
    if not runs:
        fig.update_layout(title="attention entropy: tick “record attention entropy” to see it", height=200)
        return fig
    fig = make_subplots(rows=1, cols=len(runs), subplot_titles=[n for n, _ in runs], horizontal_spacing=0.12)
    for col, (_, t) in enumerate(runs, start=1):
        ent = t.attention_entropy
        assert ent is not None
        n_tok, n_layers, n_heads = ent.shape
        heads = [f"{layer}.{h}" for layer in range(n_layers) for h in range(n_heads)]
        labels = [f"{i} {visible(s)}" for i, s in enumerate(str_tokens(list(t.token_ids)))]
        hover = [[f"token {labels[i]!r} (id {t.token_ids[i]}, position {i})<br>head {heads[j]}" for j in
                  range(len(heads))] for i in range(n_tok)]  # fmt: skip
        fig.add_trace(
            go.Heatmap(
                z=ent.reshape(n_tok, -1).tolist(), x=heads, y=labels, text=hover, coloraxis="coloraxis",
                hovertemplate="%{text}<br>entropy %{z:.2f} bits<extra></extra>",
            ),
            1, col,
        )  # fmt: skip
        fig.update_yaxes(autorange="reversed", title_text="generated token", row=1, col=col)
        fig.update_xaxes(title_text="head (layer.head)", row=1, col=col)
    fig.update_layout(
        coloraxis={"colorscale": "Viridis", "colorbar": {"title": "bits"}, "cmin": 0},
        height=max(320, 14 * len(runs[0][1].token_ids) + 120),
        margin={"t": 40, "b": 40},
    )
    return fig


def bar_chart(result: Comparison) -> go.Figure:
    names = [r.trace.strategy for r in result.results]
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=("accepted tokens per target forward", "tokens per second (wall)")
    )
    fig.add_trace(go.Bar(x=names, y=[r.trace.tokens_per_target_forward for r in result.results]), 1, 1)
    fig.add_trace(go.Bar(x=names, y=[r.trace.tokens_per_second for r in result.results]), 1, 2)
    fig.update_yaxes(title_text="tokens / forward", row=1, col=1)
    fig.update_yaxes(title_text="tokens / s", row=1, col=2)
    fig.update_layout(showlegend=False, height=320, margin={"t": 40, "b": 30})
    return fig


@register_tab("Decoding", order=40)
def build(ctx: AppContext) -> None:
    gr.Markdown(
        "Compare decoding strategies token by token. Lossless strategies (speculative, layer_skip, ngram, "
        "jacobi, lookahead) must reproduce greedy exactly at temperature 0; the strips show which tokens were "
        "drafted and accepted, and the heatmap what every attention head did (entropy, bits) for each generated "
        "token. Give heads (`9.4, 12.*`) to ablate or dial them while decoding and see where the output departs "
        f"from greedy. Methods: {PAPERS}; see `reference/papers.md` §6 and §9."
    )
    prompt = gr.Textbox(label="Prompt", lines=4, value=DEFAULT_PROMPT, max_length=MAX_PROMPT_CHARS)
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
        heads = gr.Textbox(
            label="Heads to intervene on (L.H, L.*, *.H; empty = none)", max_length=MAX_HEADS_CHARS
        )
        action = gr.Radio(
            choices=["ablate", "dial"], value="ablate", label="Heads action (ablate = mean ablation)"
        )
        lam = gr.Slider(0.0, 1.0, value=1.0, step=0.05, label="Dial λ (distance mode)")
    with gr.Accordion("Draft, constraint and SMC settings", open=False), gr.Row():
        max_draft = gr.Slider(1, 16, value=6, step=1, label="Max draft length")
        window = gr.Slider(1, 16, value=6, step=1, label="Jacobi / lookahead window")
        draft_model = gr.Dropdown(choices=[NONE, *CATALOG], value=NONE, label="Draft model (speculative)")
        regex = gr.Textbox(
            label="Constraint regex (constrained)", value=r"[0-9]{3}-[0-9]{4}", max_length=MAX_REGEX_CHARS
        )
        grammar = gr.Dropdown(choices=[NONE, *GRAMMARS], value=NONE, label="…or a grammar")
        method = gr.Radio(choices=["awrs", "mask"], value="awrs", label="Constraint method")
        particles = gr.Slider(1, 8, value=1, step=1, label="SMC particles (constrained)")
    run = gr.Button("Compare", variant="primary")
    view = gr.HTML()
    heatmap = gr.Plot(label="Attention entropy per generated token and head")
    plot = gr.Plot(label="Speed")
    with gr.Accordion("Traces (JSON)", open=False):
        details = gr.JSON(label="Traces")
    download = gr.File(label="Download the comparison (JSON, as the CLI prints it)")
    run.click(
        decode_compare,
        inputs=[ctx.model, prompt, chat, strategies, max_new, temperature, seed, max_draft, window, draft_model,
                regex, grammar, method, particles, entropy, heads, action, lam],
        outputs=[view, heatmap, plot, details, download], api_name="decode_compare",
        concurrency_id=MODEL_CONCURRENCY_ID, concurrency_limit=1,
    )  # fmt: skip
