"""Decoding tab: strategies side by side on one prompt, token by token, against greedy."""

from __future__ import annotations

import html
from typing import Any

import gradio as gr
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from headscope.app.registry import AppContext, register_tab
from headscope.app.state import MODEL_CONCURRENCY_ID, STORE, user_errors
from headscope.decoding import GRAMMARS, STRATEGIES, DecodeConfig, compare
from headscope.decoding.compare import Comparison, parse_strategies
from headscope.decoding.prompts import render
from headscope.errors import InputError
from headscope.models import CATALOG, resolve

APP_MAX_NEW_TOKENS = 128
MAX_PROMPT_CHARS = 4000
MAX_REGEX_CHARS = 200
NONE = "(none)"
DEFAULT_PROMPT = (
    "Copy this sentence exactly: Krypton is a chemical element; it has symbol Kr and atomic number 36."
)
COLOURS = {"drafted": "#c8f7c5", "verifier": "#cfe3ff"}


def _check_inputs(prompt: str, max_new: float, regex: str, draft_model: str) -> None:
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError("the prompt is empty")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InputError(f"the prompt is too long ({len(prompt)} characters; limit {MAX_PROMPT_CHARS})")
    if not 1 <= int(max_new) <= APP_MAX_NEW_TOKENS:
        raise InputError(f"max new tokens must be in [1, {APP_MAX_NEW_TOKENS}] in the app")
    if len(regex or "") > MAX_REGEX_CHARS:
        raise InputError(f"the regex is too long (limit {MAX_REGEX_CHARS} characters)")
    if draft_model and draft_model != NONE and draft_model not in CATALOG:
        raise InputError(f"unknown draft model {draft_model!r}")


@user_errors
def decode_compare(
    model: str,
    prompt: str,
    chat: bool,
    strategies: list[str],
    max_new_tokens: float,
    temperature: float,
    seed: float,
    max_draft: float,
    window: float,
    draft_model: str,
    regex: str,
    grammar: str,
    method: str,
    progress: gr.Progress = gr.Progress(),  # noqa: B008
) -> tuple[str, go.Figure, dict[str, Any]]:
    """Run the chosen strategies (and greedy) on the prompt; token view, bar chart and the full JSON."""
    resolve(str(model), allow_external=False)
    _check_inputs(prompt, max_new_tokens, regex, draft_model)
    names = parse_strategies(list(strategies or []))
    use_grammar = grammar if grammar and grammar != NONE else None
    cfg = DecodeConfig(
        max_new_tokens=int(max_new_tokens), temperature=float(temperature), seed=int(seed),
        max_draft=int(max_draft), window=int(window), regex=(regex or None) if not use_grammar else None,
        grammar=use_grammar, constraint_method=str(method or "awrs"),
    )  # fmt: skip
    progress(0.05, desc=f"loading {model}")
    handle = STORE.get(str(model))
    draft = STORE.get(draft_model) if "speculative" in names and draft_model not in ("", NONE, None) else None
    ids = handle.tokenize(render(handle, prompt, chat=bool(chat)))[0].tolist()
    total = len(set(names) | {"greedy"})
    done = [0]

    def tick(name: str) -> None:
        progress(0.1 + 0.9 * done[0] / total, desc=f"decoding: {name}")
        done[0] += 1

    result = compare(handle, ids, names, cfg, draft=draft, progress=tick)
    return token_view(result, handle.str_tokens), bar_chart(result), result.to_json()


def token_view(result: Comparison, str_tokens) -> str:
    """One row per strategy: steps as boxes; green = drafted and accepted, blue = the verifier's own token;
    a red underline where the token differs from greedy's at that position."""
    legend = (
        f'<span style="background:{COLOURS["drafted"]}">drafted, accepted</span> '
        f'<span style="background:{COLOURS["verifier"]}">verifier token</span> '
        '<span style="border-bottom:3px solid #d33">differs from greedy</span>'
    )
    rows = [f"<div>{legend}</div>"]
    for r in result.results:
        pos, parts = 0, []
        for step in r.trace.steps:
            toks = []
            for j, tok in enumerate(step.accepted):
                kind = "drafted" if j < step.n_draft_accepted else "verifier"
                differs = pos < len(r.matches_greedy) and not r.matches_greedy[pos]
                style = f"background:{COLOURS[kind]};" + ("border-bottom:3px solid #d33;" if differs else "")
                toks.append(f'<span style="{style}">{html.escape(str_tokens([tok])[0])}</span>')
                pos += 1
            parts.append(
                f'<span style="border:1px solid #999;margin:1px;white-space:pre-wrap">{"".join(toks)}</span>'
            )
        head = f"<b>{html.escape(r.trace.strategy)}</b> ({'identical to greedy' if r.identical_to_greedy else f'diverges at {r.diverges_at}'})"
        rows.append(f'<div style="margin:6px 0">{head}<br>{"".join(parts)}</div>')
    return "\n".join(rows)


def bar_chart(result: Comparison) -> go.Figure:
    names = [r.trace.strategy for r in result.results]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("tokens per target forward", "tokens per second"))
    fig.add_trace(
        go.Bar(x=names, y=[r.trace.tokens_per_target_forward for r in result.results], name="tok/fwd"), 1, 1
    )
    fig.add_trace(go.Bar(x=names, y=[r.trace.tokens_per_second for r in result.results], name="tok/s"), 1, 2)
    fig.update_layout(showlegend=False, height=320, margin={"t": 40, "b": 30})
    return fig


@register_tab("Decoding", order=40)
def build(ctx: AppContext) -> None:
    gr.Markdown(
        "Compare decoding strategies token by token. Lossless strategies (speculative, layer_skip, ngram, jacobi) "
        "must reproduce greedy exactly at temperature 0; the view shows which tokens were drafted and accepted."
    )
    prompt = gr.Textbox(label="Prompt", lines=4, value=DEFAULT_PROMPT, max_length=MAX_PROMPT_CHARS)
    chat = gr.Checkbox(label="Wrap in the model's chat template", value=True)
    strategies = gr.CheckboxGroup(
        choices=list(STRATEGIES), value=["greedy", "ngram", "jacobi", "layer_skip"], label="Strategies"
    )
    with gr.Row():
        max_new = gr.Slider(1, APP_MAX_NEW_TOKENS, value=32, step=1, label="Max new tokens")
        temperature = gr.Slider(0.0, 2.0, value=0.0, step=0.05, label="Temperature (0 = greedy)")
        seed = gr.Number(value=0, precision=0, label="Seed")
    with gr.Row():
        max_draft = gr.Slider(1, 16, value=6, step=1, label="Max draft length")
        window = gr.Slider(1, 16, value=6, step=1, label="Jacobi window")
        draft_model = gr.Dropdown(choices=[NONE, *CATALOG], value=NONE, label="Draft model (speculative)")
    with gr.Row():
        regex = gr.Textbox(
            label="Constraint regex (constrained)", value=r"[0-9]{3}-[0-9]{4}", max_length=MAX_REGEX_CHARS
        )
        grammar = gr.Dropdown(choices=[NONE, *GRAMMARS], value=NONE, label="…or a grammar")
        method = gr.Radio(choices=["awrs", "mask"], value="awrs", label="Constraint method")
    run = gr.Button("Compare", variant="primary")
    view = gr.HTML()
    plot = gr.Plot()
    details = gr.JSON(label="Traces")
    run.click(
        decode_compare,
        inputs=[ctx.model, prompt, chat, strategies, max_new, temperature, seed, max_draft, window, draft_model,
                regex, grammar, method],
        outputs=[view, plot, details], api_name="decode_compare",
        concurrency_id=MODEL_CONCURRENCY_ID, concurrency_limit=1,
    )  # fmt: skip
