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
    ContrastiveConfig,
    alpha_sweep,
    compare,
    contrastive_vector,
    token_strip,
)
from headscope.steering.cost import Cost, steering_cost
from headscope.steering.direction import DEFAULT_ALPHA, SteerConfig
from headscope.steering.generate import GenConfig, Generation, generate
from headscope.steering.lofit import LofitConfig, lofit
from headscope.steering.tasks import TASKS, load_contrast, load_task

APP_MAX_TEXT_CHARS = 20_000  # each pasted list
APP_MAX_PROMPT_CHARS = 2_000
APP_MAX_NEW_TOKENS = 48
APP_MAX_STEPS = 200
APP_MAX_K = 64
APP_MAX_SWEEP = 11
APP_MAX_TOKEN_CHARS = 50
_EXAMPLE = load_contrast("sentiment")
EXAMPLE_POS, EXAMPLE_NEG = "\n".join(_EXAMPLE.positives), "\n".join(_EXAMPLE.negatives)
EXAMPLE_PROMPT = _EXAMPLE.prompts[0]


# ---- input checks ----------------------------------------------------------------------------------------------
def _lines(text: Any, side: str) -> list[str]:
    if not isinstance(text, str):
        raise InputError(f"the {side} list must be text, one example a line")
    if len(text) > APP_MAX_TEXT_CHARS:
        raise InputError(f"the {side} list is longer than {APP_MAX_TEXT_CHARS} characters")
    return [ln for ln in text.splitlines() if ln.strip()]  # blank lines skipped, the others kept as typed


def _prompt(text: Any) -> str:
    if not isinstance(text, str) or not text.strip():
        raise InputError("prompt is empty")
    if len(text) > APP_MAX_PROMPT_CHARS:
        raise InputError(f"prompt is longer than {APP_MAX_PROMPT_CHARS} characters")
    return text


def _alpha(value: Any) -> float:
    return SteerConfig(value).alpha


def _token(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise InputError(f"{name} is empty")
    if len(value) > APP_MAX_TOKEN_CHARS:
        raise InputError(f"{name} is {len(value)} characters; the limit is {APP_MAX_TOKEN_CHARS}")
    return value


def _alphas(text: Any) -> list[float]:
    if not isinstance(text, str) or len(text) > 400:
        raise InputError("alphas: a comma-separated list of numbers")
    parts = [p for p in text.replace(";", ",").split(",") if p.strip()]
    if not 1 <= len(parts) <= APP_MAX_SWEEP:
        raise InputError(f"alphas: give between 1 and {APP_MAX_SWEEP} values")
    return [_alpha(p) for p in parts]


# ---- views -----------------------------------------------------------------------------------------------------
def visible(token: str) -> str:
    return token.replace(" ", "·").replace("\n", "↵")


def plain_tokens(gen: Generation) -> list[tuple[str, None]]:
    """The unsteered continuation's tokens as text (visible whitespace), unshaded."""
    return [(visible(tok), None) for tok in gen.tokens]


def shaded(gen: Generation, cost: Cost) -> list[tuple[str, float]]:
    """Steered tokens shaded by p(steered) − p(unsteered) ∈ [−1, 1] (HighlightedText's legend runs −1…+1)."""
    return [(visible(t["token"]), round(t["change"], 3)) for t in token_strip(gen, cost)]


def cost_line(cost: Cost) -> str:
    c = cost.to_json()
    verdict = "fluent" if cost.fluent else "**degenerate** (over the bounds: ratio ≤ 2, distinct ≥ 0.5)"
    return (f"cost: perplexity under the unsteered model {c['perplexity_unsteered']:.2f} → "
            f"{c['perplexity_steered']:.2f} (×{c['perplexity_ratio']:.2f}); distinct tokens "
            f"{c['distinct_unsteered']:.2f} → {c['distinct_steered']:.2f}; {verdict}")  # fmt: skip


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
) -> tuple[list, list, str, dict[str, Any], str]:  # fmt: skip
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
    js = result.to_json()
    summary = (f"layer {cv.layer}, α = {steer.alpha:g} × the residual norm {js['ref_norm']:.1f} "
               f"(the raw difference would be α = {js['natural_alpha']:.3f}); effect on [log p(positives) − "
               f"log p(negatives)] as continuations: **{result.effect:+.3f}** nats per text; {cost_line(result.cost)}")  # fmt: skip
    blob = vectors.to_bytes(*vectors.vector_meta(handle, cv, steer))
    download = _download(vectors.from_bytes(blob)[0], blob)
    return plain_tokens(result.unsteered), shaded(result.steered, result.cost), summary, js, download


@user_errors
def steer_sweep(
    model: str, positives: str, negatives: str, layer: float, position: str, pooling: str, prompt: str,
    alphas: str, token_a: str, token_b: str, max_new_tokens: float,
) -> tuple[go.Figure, list[list[Any]]]:  # fmt: skip
    """α sweep: change of logit[token A] − logit[token B] at the prompt's last position, and generations."""
    pos, neg = _lines(positives, "positive"), _lines(negatives, "negative")
    values, text = _alphas(alphas), _prompt(prompt)
    gen = GenConfig(integer(max_new_tokens, "max new tokens", 1, APP_MAX_NEW_TOKENS))
    pair = (_token(token_a, "token A"), _token(token_b, "token B"))
    handle = STORE.get(str(model))
    cv = contrastive_vector(handle, pos, neg, ContrastiveConfig(integer(layer, "layer", 0, 10_000), pooling))  # type: ignore[arg-type]
    rows = [r.to_json() for r in alpha_sweep(handle, cv, text, values, pair, position, gen)]  # type: ignore[arg-type]
    table = [[r["alpha"], r["logit_diff"], r["change"], r["perplexity_ratio"], r["distinct_steered"], r["text"]]
             for r in rows]  # fmt: skip
    return sweep_figure(rows, pair), table


@user_errors
def steer_lofit_train(
    model: str, task: str, k: float, steps: float, seed: float, progress: gr.Progress = gr.Progress(),  # noqa: B008
) -> tuple[go.Figure, str, dict[str, Any], bytes, str]:  # fmt: skip
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
    meta, tensors = vectors.lofit_meta(handle, result.offsets, result.data_hash)
    blob = vectors.to_bytes(meta, tensors)
    return (
        head_grid(ranking, js["selected_heads"], f.n_layers, f.n_heads),
        summary,
        js,
        blob,
        _download(meta, blob),
    )


def _download(meta: vectors.VectorMeta, blob: bytes) -> str:
    """A temp file for gr.File (the name carries no user text)."""
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp(prefix="headscope-vectors-"))
    path = folder / vectors.file_name(meta)
    path.write_bytes(blob)
    return str(path)


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
    hooks = offsets.hooks(handle.facts.n_heads)
    plain = generate(handle, ids, gen)
    steered = generate(handle, ids, gen, lambda _s: hooks)
    cost = steering_cost(handle, ids, plain.token_ids, steered.token_ids, hooks)
    info = {
        "heads": [list(h) for h in offsets.heads],
        "unsteered": plain.to_json(),
        "steered": steered.to_json(),
        "cost": cost.to_json(),
    }
    return plain_tokens(plain), shaded(steered, cost), info


def _side_by_side() -> tuple[gr.HighlightedText, gr.HighlightedText]:
    with gr.Row():
        plain = gr.HighlightedText(label="Unsteered", show_legend=False)
        steered = gr.HighlightedText(
            label="Steered (shade = p(token | steered) − p(token | unsteered), −1…+1)", show_legend=True
        )
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
        layer = gr.Number(9, precision=0, label="Layer")
        alpha = gr.Slider(-2, 2, value=DEFAULT_ALPHA, step=0.05, label="α (× the residual norm at the layer)")
        position = gr.Radio(["last", "all"], value="last", label="Add at positions")
        pooling = gr.Radio(["mean", "last"], value="mean", label="Pool texts by")
        max_new = gr.Slider(1, APP_MAX_NEW_TOKENS, value=20, step=1, label="New tokens")
    prompt = gr.Textbox(EXAMPLE_PROMPT, label="Prompt", max_length=APP_MAX_PROMPT_CHARS)
    run = gr.Button("Steer", variant="primary")
    plain, steered = _side_by_side()
    summary, result = gr.Markdown(), gr.JSON(label="Result")
    download = gr.File(label="This vector (.safetensors, with the sidecar in its header)")
    run.click(
        steer_contrastive, inputs=[ctx.model, pos, neg, layer, alpha, position, pooling, prompt, max_new],
        outputs=[plain, steered, summary, result, download], api_name="steer_contrastive",
        concurrency_id=MODEL_CONCURRENCY_ID, concurrency_limit=1,
    )  # fmt: skip
    with gr.Row():
        alphas = gr.Textbox("0, 0.15, 0.3, 0.6", label="α sweep values", max_length=400)
        tok_a = gr.Textbox(" great", label="Token A (logit difference A − B)", max_length=50)
        tok_b = gr.Textbox(" terrible", label="Token B", max_length=50)
    sweep = gr.Button("α sweep")
    fig = gr.Plot(label="Change in logit difference")
    table = gr.Dataframe(
        headers=["alpha", "logit diff", "change", "perplexity ratio", "distinct", "generation"], label="Sweep"
    )
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
    download = gr.File(label="Trained head offsets (.safetensors, with the sidecar in its header)")
    train.click(
        steer_lofit_train, inputs=[ctx.model, task, k, steps, seed], outputs=[grid, summary, result, trained, download],
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
