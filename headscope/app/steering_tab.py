"""Steering tab: contrastive (GLOV / CAA) vectors and LoFiT head offsets, unsteered vs steered side by side.

No server paths: positives/negatives are pasted text; vectors are trained in this session (kept as safetensors
bytes in session state) or uploaded as bytes (size-limited, model-checked). Every input is re-checked here,
because API callers bypass the widgets' limits.
"""

from __future__ import annotations

from typing import Any

import gradio as gr
import numpy as np
import plotly.graph_objects as go

from headscope.app.inputs import integer
from headscope.app.registry import AppContext, register_tab
from headscope.app.state import MODEL_CONCURRENCY_ID, STORE, user_errors
from headscope.errors import InputError
from headscope.steering import vectors
from headscope.steering.contrastive import (
    MAX_ALPHA,
    ContrastiveConfig,
    SteerConfig,
    alpha_sweep,
    compare,
    contrastive_vector,
)
from headscope.steering.generate import GenConfig, Generation, generate
from headscope.steering.lofit import LofitConfig, lofit
from headscope.steering.tasks import TASKS, load_task

APP_MAX_TEXT_CHARS = 20_000  # each pasted list
APP_MAX_PROMPT_CHARS = 2_000
APP_MAX_NEW_TOKENS = 48
APP_MAX_STEPS = 200
APP_MAX_K = 64
APP_MAX_SWEEP = 11
EXAMPLE_POS = "I love this, it is wonderful.\nWhat a great, happy day!\nThis is excellent and delightful."
EXAMPLE_NEG = "I hate this, it is awful.\nWhat a terrible, sad day!\nThis is horrible and depressing."


# ---- input checks ----------------------------------------------------------------------------------------------
def _lines(text: Any, side: str) -> list[str]:
    if not isinstance(text, str):
        raise InputError(f"the {side} list must be text, one example a line")
    if len(text) > APP_MAX_TEXT_CHARS:
        raise InputError(f"the {side} list is longer than {APP_MAX_TEXT_CHARS} characters")
    return [ln.strip() for ln in text.splitlines() if ln.strip()]


def _prompt(text: Any) -> str:
    if not isinstance(text, str) or not text.strip():
        raise InputError("prompt is empty")
    if len(text) > APP_MAX_PROMPT_CHARS:
        raise InputError(f"prompt is longer than {APP_MAX_PROMPT_CHARS} characters")
    return text


def _alpha(value: Any) -> float:
    try:
        return SteerConfig(float(value)).alpha
    except (TypeError, ValueError) as e:
        if isinstance(e, InputError):
            raise
        raise InputError(f"alpha must be a number; got {value!r}") from None


def _alphas(text: Any) -> list[float]:
    if not isinstance(text, str) or len(text) > 400:
        raise InputError("alphas: a comma-separated list of numbers")
    parts = [p for p in text.replace(";", ",").split(",") if p.strip()]
    if not 1 <= len(parts) <= APP_MAX_SWEEP:
        raise InputError(f"alphas: give between 1 and {APP_MAX_SWEEP} values")
    return [_alpha(p) for p in parts]


# ---- views -----------------------------------------------------------------------------------------------------
def shaded(gen: Generation) -> list[tuple[str, float]]:
    """Tokens with their probability for HighlightedText's intensity shading."""
    return [(tok, round(p, 3)) for tok, p in zip(gen.tokens, gen.probs, strict=True)]


def head_grid(
    ranking: list[dict[str, Any]], selected: list[dict[str, Any]], n_layers: int, n_heads: int
) -> go.Figure:
    """The layer × head grid (as in the Circuits tab): ‖A‖ per head, the selected heads ringed."""
    z = np.zeros((n_layers, n_heads))
    for r in ranking:
        z[r["layer"], r["head"]] = r["importance"]
    fig = go.Figure(go.Heatmap(z=z, colorscale="Viridis", colorbar={"title": "‖A‖"}))
    fig.add_trace(go.Scatter(
        x=[s["head"] for s in selected], y=[s["layer"] for s in selected], mode="markers", name="selected",
        marker={"symbol": "circle-open", "size": 16, "color": "red", "line": {"width": 3}},
    ))  # fmt: skip
    fig.update_layout(xaxis_title="head", yaxis_title="layer", height=520, margin={"t": 30})
    return fig


def sweep_figure(rows: list[dict[str, Any]], tokens: tuple[str, str]) -> go.Figure:
    fig = go.Figure(
        go.Scatter(x=[r["alpha"] for r in rows], y=[r["change"] for r in rows], mode="lines+markers")
    )
    fig.update_layout(
        xaxis_title="α", yaxis_title=f"Δ logit[{tokens[0]!r}] − logit[{tokens[1]!r}]", height=380
    )
    return fig


# ---- events ----------------------------------------------------------------------------------------------------
@user_errors
def steer_contrastive(
    model: str, positives: str, negatives: str, layer: float, alpha: float, position: str, pooling: str,
    prompt: str, max_new_tokens: float, progress: gr.Progress = gr.Progress(),  # noqa: B008
) -> tuple[list, list, str, dict[str, Any]]:  # fmt: skip
    """Contrastive vector from pasted texts; unsteered vs steered generation and the effect."""
    pos, neg = _lines(positives, "positive"), _lines(negatives, "negative")
    steer = SteerConfig(_alpha(alpha), position)  # type: ignore[arg-type]
    gen = GenConfig(integer(max_new_tokens, "max new tokens", 1, APP_MAX_NEW_TOKENS))
    text = _prompt(prompt)
    handle = STORE.get(str(model))
    progress(0.1, desc="mean activations")
    cv = contrastive_vector(handle, pos, neg, ContrastiveConfig(integer(layer, "layer", 0, 10_000), pooling))  # type: ignore[arg-type]
    progress(0.4, desc="generating")
    result = compare(handle, cv, text, pos, neg, steer, gen)
    summary = (f"layer {cv.layer}, α = {steer.alpha:g}, ‖v‖ = {float(cv.vector.norm()):.2f}; effect on "
               f"[log p(positives) − log p(negatives)] as continuations: **{result.effect:+.3f}** nats")  # fmt: skip
    return shaded(result.unsteered), shaded(result.steered), summary, result.to_json()


@user_errors
def steer_sweep(
    model: str, positives: str, negatives: str, layer: float, position: str, pooling: str, prompt: str,
    alphas: str, token_a: str, token_b: str, max_new_tokens: float,
) -> tuple[go.Figure, list[list[Any]]]:  # fmt: skip
    """α sweep: change of logit[token A] − logit[token B] at the prompt's last position, and generations."""
    pos, neg = _lines(positives, "positive"), _lines(negatives, "negative")
    values, text = _alphas(alphas), _prompt(prompt)
    gen = GenConfig(integer(max_new_tokens, "max new tokens", 1, APP_MAX_NEW_TOKENS))
    pair = (str(token_a)[:50], str(token_b)[:50])
    handle = STORE.get(str(model))
    cv = contrastive_vector(handle, pos, neg, ContrastiveConfig(integer(layer, "layer", 0, 10_000), pooling))  # type: ignore[arg-type]
    rows = [r.to_json() for r in alpha_sweep(handle, cv, text, values, pair, position, gen)]  # type: ignore[arg-type]
    return sweep_figure(rows, pair), [[r["alpha"], r["logit_diff"], r["change"], r["text"]] for r in rows]


@user_errors
def steer_lofit_train(
    model: str, task: str, k: float, steps: float, seed: float, progress: gr.Progress = gr.Progress(),  # noqa: B008
) -> tuple[go.Figure, str, dict[str, Any], bytes]:  # fmt: skip
    """Train LoFiT head offsets on a built-in task; the selected heads on the layer × head grid."""
    if task not in TASKS:
        raise InputError(f"unknown task {task!r}; built-in tasks: {', '.join(sorted(TASKS))}")
    n = integer(steps, "steps", 1, APP_MAX_STEPS)
    cfg = LofitConfig(
        k=integer(k, "K heads", 1, APP_MAX_K),
        scale_steps=n,
        bias_steps=n,
        seed=integer(seed, "seed", 0, 2**31),
    )
    handle = STORE.get(str(model))
    phases = {"scales": 0, "biases": 1, "random heads": 2}

    def on_step(phase: str, step: int, total: int, loss: float) -> None:
        progress((phases[phase] + step / total) / 3, desc=f"{phase} {step}/{total} loss {loss:.3f}")

    result = lofit(handle, load_task(task), cfg, on_step)
    js = result.to_json()
    f = handle.facts
    ranking = [{"layer": h[0], "head": h[1], "importance": s} for h, s in result.head_ranking]
    b, a, r = js["heldout_before"], js["heldout_after"], js["heldout_random_heads"]
    summary = (f"held-out accuracy {b['accuracy']:.2f} → **{a['accuracy']:.2f}** with the selected heads "
               f"({r['accuracy']:.2f} with {len(result.offsets.heads)} random heads); target log-prob "
               f"{b['mean_target_logprob']:.2f} → {a['mean_target_logprob']:.2f}; {js['trainable_parameters']:,} "
               f"trainable parameters vs {js['full_finetune_parameters']:,} for a full fine-tune.")  # fmt: skip
    blob = vectors.to_bytes(*vectors.lofit_meta(handle, result.offsets, result.data_hash))
    return head_grid(ranking, js["selected_heads"], f.n_layers, f.n_heads), summary, js, blob


@user_errors
def steer_lofit_apply(
    model: str, trained: bytes | None, upload: bytes | None, prompt: str, max_new_tokens: float
) -> tuple[list, list, dict[str, Any]]:
    """Generate with LoFiT offsets (an uploaded file wins over the ones trained in this session)."""
    gen = GenConfig(integer(max_new_tokens, "max new tokens", 1, APP_MAX_NEW_TOKENS))
    text = _prompt(prompt)
    blob = upload or trained
    if not blob:
        raise InputError("train head offsets first, or upload a LoFiT vector file")
    if not isinstance(blob, bytes):
        raise InputError("upload the vector file as a .safetensors file")
    meta, tensors = vectors.from_bytes(blob)  # size-limited
    handle = STORE.get(str(model))
    offsets = vectors.to_offsets(meta, tensors, handle)  # refuses another model
    ids = handle.tokenize(text)
    plain = generate(handle, ids, gen)
    steered = generate(handle, ids, gen, lambda _s: offsets.hooks(handle.facts.n_heads))
    info = {
        "heads": [list(h) for h in offsets.heads],
        "unsteered": plain.to_json(),
        "steered": steered.to_json(),
    }
    return shaded(plain), shaded(steered), info


def _side_by_side() -> tuple[gr.HighlightedText, gr.HighlightedText]:
    with gr.Row():
        plain = gr.HighlightedText(label="Unsteered (shade = token probability)", show_legend=True)
        steered = gr.HighlightedText(label="Steered (shade = token probability)", show_legend=True)
    return plain, steered


def _build_contrastive(ctx: AppContext) -> None:
    gr.Markdown(
        "### Contrastive vector (GLOV / CAA): v = mean act(positives) − mean act(negatives) at `resid_post`"
    )
    with gr.Row():
        pos = gr.Textbox(
            EXAMPLE_POS, lines=5, label="Positive texts (one a line)", max_length=APP_MAX_TEXT_CHARS
        )
        neg = gr.Textbox(
            EXAMPLE_NEG, lines=5, label="Negative texts (one a line)", max_length=APP_MAX_TEXT_CHARS
        )
    with gr.Row():
        layer = gr.Number(15, precision=0, label="Layer")
        alpha = gr.Slider(-MAX_ALPHA / 5, MAX_ALPHA / 5, value=4, step=0.5, label="α")
        position = gr.Radio(["last", "all"], value="last", label="Add at positions")
        pooling = gr.Radio(["mean", "last"], value="mean", label="Pool texts by")
        max_new = gr.Slider(1, APP_MAX_NEW_TOKENS, value=20, step=1, label="New tokens")
    prompt = gr.Textbox("I think this movie is", label="Prompt", max_length=APP_MAX_PROMPT_CHARS)
    run = gr.Button("Steer", variant="primary")
    plain, steered = _side_by_side()
    summary, result = gr.Markdown(), gr.JSON(label="Result")
    run.click(
        steer_contrastive, inputs=[ctx.model, pos, neg, layer, alpha, position, pooling, prompt, max_new],
        outputs=[plain, steered, summary, result], api_name="steer_contrastive",
        concurrency_id=MODEL_CONCURRENCY_ID, concurrency_limit=1,
    )  # fmt: skip
    with gr.Row():
        alphas = gr.Textbox("0, 2, 4, 8", label="α sweep values", max_length=400)
        tok_a = gr.Textbox(" great", label="Token A (logit difference A − B)", max_length=50)
        tok_b = gr.Textbox(" terrible", label="Token B", max_length=50)
    sweep = gr.Button("α sweep")
    fig = gr.Plot(label="Change in logit difference")
    table = gr.Dataframe(headers=["alpha", "logit diff", "change", "generation"], label="Sweep")
    sweep.click(
        steer_sweep, inputs=[ctx.model, pos, neg, layer, position, pooling, prompt, alphas, tok_a, tok_b, max_new],
        outputs=[fig, table], api_name="steer_sweep", concurrency_id=MODEL_CONCURRENCY_ID, concurrency_limit=1,
    )  # fmt: skip


def _build_lofit(ctx: AppContext) -> None:
    gr.Markdown("### LoFiT: select heads by a trained L1 scale, then learn one bias vector per selected head")
    with gr.Row():
        task = gr.Dropdown(sorted(TASKS), value="antonyms", label="Task")
        k = gr.Number(8, precision=0, label="K heads (3 % of SmolLM2's 270 = 8)")
        steps = gr.Slider(1, APP_MAX_STEPS, value=30, step=1, label="Steps per phase")
        seed = gr.Number(0, precision=0, label="Seed")
    train = gr.Button("Train", variant="primary")
    summary = gr.Markdown()
    grid = gr.Plot(label="Layer × head: ‖A‖ and the selected heads")
    result, trained = gr.JSON(label="Result"), gr.State(None)
    train.click(
        steer_lofit_train, inputs=[ctx.model, task, k, steps, seed], outputs=[grid, summary, result, trained],
        api_name="steer_lofit_train", concurrency_id=MODEL_CONCURRENCY_ID, concurrency_limit=1,
    )  # fmt: skip
    upload = gr.File(type="binary", file_types=[".safetensors"], label="…or upload a LoFiT vector file")
    with gr.Row():
        prompt = gr.Textbox("hot ->", label="Prompt", max_length=APP_MAX_PROMPT_CHARS)
        max_new = gr.Slider(1, APP_MAX_NEW_TOKENS, value=8, step=1, label="New tokens")
    apply = gr.Button("Generate with the offsets")
    plain, steered = _side_by_side()
    info = gr.JSON(label="Applied")
    apply.click(
        steer_lofit_apply, inputs=[ctx.model, trained, upload, prompt, max_new], outputs=[plain, steered, info],
        api_name="steer_lofit_apply", concurrency_id=MODEL_CONCURRENCY_ID, concurrency_limit=1,
    )  # fmt: skip


@register_tab("Steering", order=30)
def build(ctx: AppContext) -> None:
    gr.Markdown(
        "Steer the model and compare with the unsteered model side by side. Contrastive vectors (GLOV / CAA) add "
        "α·v to the residual stream; LoFiT learns small offsets on a few attention heads (Yin et al. 2024)."
    )
    _build_contrastive(ctx)
    _build_lofit(ctx)
