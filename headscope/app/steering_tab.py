"""Steering tab: contrastive vectors (at a layer's residual stream or at the selected heads' outputs) and LoFiT head
offsets (optionally restricted to the selection), unsteered vs steered side by side, every effect beside its cost.

Wiring only: the work is in `headscope.steering`. No server paths: texts are pasted; vectors are made in this
session (downloadable, and kept as safetensors bytes in session state) or uploaded as bytes (size-limited,
model-checked), or taken from feature N of an SAE picked by catalog name (`features.steer.feature_vector`). Every input is re-checked on the server (API callers bypass the widgets' limits) and refused,
never cut. Generation, the α sweep and LoFiT training run as cancellable jobs with staged progress.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from headscope.app import examples, jobs
from headscope.app import selection_bar as sel
from headscope.app.figures import Plot, RawResult, curves, table
from headscope.app.inputs import choice, integer, text
from headscope.app.state import JOB_EVENT, STORE, user_errors
from headscope.app.steering_views import (
    COST_HEADERS,
    LOFIT_COLUMNS,
    SWEEP_COLUMNS,
    cost_table,
    download_file,
    lofit_grid,
    lofit_table,
    strips,
    summary,
    summary_cost,
)
from headscope.app.tabs import AppContext, register_tab
from headscope.app.views import HeadGrid, TokenStrip
from headscope.errors import InputError
from headscope.models import ModelHandle
from headscope.selection import HeadSet
from headscope.steering import vectors
from headscope.steering.comparison import SideBySideConfig
from headscope.steering.contrastive import (
    POOLINGS,
    ContrastiveConfig,
    alpha_sweep,
    compare,
    contrastive_vector,
    default_layer,
)
from headscope.steering.direction import DEFAULT_ALPHA, DEFAULT_POSITION, SteerConfig
from headscope.steering.generate import GenConfig
from headscope.steering.hooks import POSITIONS
from headscope.steering.lofit import LofitConfig, LofitResult, apply_offsets, lofit
from headscope.steering.tasks import TASKS, load_contrast, load_task

APP_MAX_TEXT_CHARS = 20_000  # each pasted list
APP_MAX_PROMPT_CHARS = 2_000
APP_MAX_TOKEN_CHARS = 50
APP_MAX_NEW_TOKENS = 48
APP_MAX_STEPS = 200
APP_MAX_K = 64
APP_MAX_SWEEP = 11
ALPHA_SLIDER = 2.0  # the slider's range; the library accepts |α| ≤ 10 (API callers)
SITES = ("a layer's residual stream", "the selected heads' outputs")
LOFIT_SCOPES = ("all heads", "the selected heads only")
PAPERS = (
    ("GLOV (Mirza et al. 2024)", "https://arxiv.org/abs/2410.06154"),
    ("CAA (Rimsky et al. 2024)", "https://arxiv.org/abs/2312.06681"),
    ("LoFiT (Yin, Ye & Durrett 2024)", "https://arxiv.org/abs/2406.01563"),
)
_EXAMPLE = load_contrast("sentiment")
EXAMPLE_POS, EXAMPLE_NEG = "\n".join(_EXAMPLE.positives), "\n".join(_EXAMPLE.negatives)
EXAMPLE_PROMPT = _EXAMPLE.prompts[0]
DEFAULT_LAYER = default_layer(30)  # the library's default for the default model (30 layers)


# ---- inputs ------------------------------------------------------------------------------------------------------
def _lines(value: Any, side: str) -> list[str]:
    """One example a line; blank lines are skipped, the others kept exactly as typed."""
    return [ln for ln in text(value, f"the {side} list", APP_MAX_TEXT_CHARS).splitlines() if ln.strip()]


def _gen(max_new_tokens: Any) -> GenConfig:
    return GenConfig(integer(max_new_tokens, "new tokens", 1, APP_MAX_NEW_TOKENS))


def _token(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise InputError(f"{name} is empty")
    return text(value, name, APP_MAX_TOKEN_CHARS, allow_empty=True)


def _alphas(value: Any) -> list[float]:
    parts = [p for p in text(value, "α values", 400).replace(";", ",").split(",") if p.strip()]
    if not 1 <= len(parts) <= APP_MAX_SWEEP:
        raise InputError(f"α values: give between 1 and {APP_MAX_SWEEP} comma-separated numbers")
    return [SteerConfig(p.strip()).alpha for p in parts]  # type: ignore[arg-type]  (checked there)


def _selected(selection: Any, handle: ModelHandle, what: str) -> HeadSet:
    heads = sel.head_set(selection, handle)
    if not heads:
        raise InputError(f"{what} is set to the selected heads, but no head is selected (use the bar above)")
    return heads


def _contrastive_cfg(
    handle: ModelHandle, site: Any, layer: Any, pooling: Any, selection: Any
) -> ContrastiveConfig:
    pool = choice(pooling, "pooling", POOLINGS)
    if choice(site, "steer at", SITES) == SITES[1]:
        return ContrastiveConfig(None, pool, _selected(selection, handle, "steering"))  # type: ignore[arg-type]
    return ContrastiveConfig(integer(layer, "layer", 0, handle.facts.n_layers - 1), pool)  # type: ignore[arg-type]


# ---- events ------------------------------------------------------------------------------------------------------
@user_errors
def steer_contrastive(
    model: str, positives: str, negatives: str, site: str, layer: float, alpha: float, position: str,
    pooling: str, prompt: str, max_new_tokens: float, selection: Any, request: gr.Request = None,  # type: ignore[assignment]
    progress: gr.Progress = gr.Progress(),  # noqa: B008
) -> tuple[Any, ...]:  # fmt: skip
    """A contrastive vector from pasted texts; unsteered vs steered generation, the effect and its cost."""
    pos, neg = _lines(positives, "positive"), _lines(negatives, "negative")
    steer = SteerConfig(alpha, choice(position, "position", POSITIONS))  # type: ignore[arg-type]
    gen, prompt_ok = _gen(max_new_tokens), text(prompt, "prompt", APP_MAX_PROMPT_CHARS)
    handle = STORE.get(str(model))
    cfg = _contrastive_cfg(handle, site, layer, pooling, selection)
    made: dict[str, Any] = {}

    def work(report: jobs.Reporter) -> dict[str, Any]:
        sv = contrastive_vector(handle, pos, neg, cfg, progress=report.stages(0.0, 0.25))
        made["result"] = res = compare(
            handle, sv, prompt_ok, pos, neg, steer, gen, progress=report.stages(0.25, 1.0)
        )
        made["blob"] = vectors.to_bytes(*vectors.vector_meta(handle, sv, steer))
        return {"model": handle.identity.name, **res.to_json()}

    payload = jobs.run(jobs.JobSpec("contrastive steering", work, model=handle.identity.name), request=request,
                       slot="steering_run", progress=progress)  # fmt: skip
    res, blob = made["result"], made["blob"]
    left, right = strips(res.unsteered, res.steered, res.cost)
    return (
        "", summary(payload, res.cost), left, right, cost_table(res.effect, res.cost),
        download_file(vectors.from_bytes(blob)[0], blob), *RawResult.values(payload, f"steer_{handle.identity.name}"),
    )  # fmt: skip


def _apply(
    handle: ModelHandle, sv: Any, steer: SteerConfig, gen: GenConfig, prompt: str, what: str,
    request: gr.Request, progress: gr.Progress,
) -> tuple[Any, dict[str, Any]]:  # fmt: skip
    """Generate with a ready vector, unsteered vs steered with the cost (no effect: no texts): the apply path."""
    made: dict[str, Any] = {}

    def work(report: jobs.Reporter) -> dict[str, Any]:
        made["result"] = res = compare(handle, sv, prompt, None, None, steer, gen, progress=report.stages())
        return {"model": handle.identity.name, **res.to_json()}

    payload = jobs.run(jobs.JobSpec(f"steering with {what}", work, model=handle.identity.name),
                       request=request, slot="steering_run", progress=progress)  # fmt: skip
    return made["result"], payload


@user_errors
def steer_uploaded(
    model: str, upload: bytes | None, alpha: float, position: str, prompt: str, max_new_tokens: float,
    request: gr.Request = None, progress: gr.Progress = gr.Progress(),  # type: ignore[assignment]  # noqa: B008
) -> tuple[Any, ...]:  # fmt: skip
    """Apply an uploaded vector file (contrastive, or another capability's, e.g. an SAE feature) at this α."""
    if not isinstance(upload, bytes) or not upload:
        raise InputError("upload a steering vector file (.safetensors) first")
    steer = SteerConfig(alpha, choice(position, "position", POSITIONS))  # type: ignore[arg-type]
    gen, prompt_ok = _gen(max_new_tokens), text(prompt, "prompt", APP_MAX_PROMPT_CHARS)
    meta, tensors = vectors.from_bytes(upload)  # size-limited
    handle = STORE.get(str(model))
    sv, _saved = vectors.to_vector(meta, tensors, handle)  # refuses another model, or LoFiT offsets
    res, payload = _apply(handle, sv, steer, gen, prompt_ok, "an uploaded vector", request, progress)
    left, right = strips(res.unsteered, res.steered, res.cost)
    return (
        "", f"Uploaded {meta.method} vector. " + summary(payload, res.cost), left, right, cost_table(None, res.cost),
        download_file(meta, upload), *RawResult.values(payload, f"steer_{handle.identity.name}"),
    )  # fmt: skip


def _sae_choices(model: str) -> list[str]:
    """The SAE catalog's names for this model (catalog names only, never paths)."""
    from headscope.features import catalog

    return [e.name for e in catalog.available(str(model))]


def sae_names(model: str) -> Any:
    names = _sae_choices(model)
    return gr.update(choices=names, value=names[0] if names else None)


@user_errors
def steer_feature(
    model: str, sae: Any, feature: Any, alpha: float, position: str, prompt: str, max_new_tokens: float,
    request: gr.Request = None, progress: gr.Progress = gr.Progress(),  # type: ignore[assignment]  # noqa: B008
) -> tuple[Any, ...]:  # fmt: skip
    """Feature N of SAE S as the vector (its decoder row at the SAE's hook, α as above), via the apply path."""
    from headscope.features import catalog
    from headscope.features.steer import feature_vector  # imports sae-lens: only when used

    steer = SteerConfig(alpha, choice(position, "position", POSITIONS))  # type: ignore[arg-type]
    gen, prompt_ok = _gen(max_new_tokens), text(prompt, "prompt", APP_MAX_PROMPT_CHARS)
    number = integer(feature, "feature", 0, 10**7)
    if not isinstance(sae, str) or not sae:
        raise InputError("pick an SAE (the Features tab lists this model's SAEs)")
    handle = STORE.get(str(model))
    fsae = catalog.resolve(handle, sae)  # a catalog name: never a path
    sv = feature_vector(handle, fsae, fsae.check_feature(number))
    res, payload = _apply(
        handle, sv, steer, gen, prompt_ok, f"feature {number} of {fsae.name}", request, progress
    )
    blob = vectors.to_bytes(*vectors.vector_meta(handle, sv, steer))
    left, right = strips(res.unsteered, res.steered, res.cost)
    return (
        "", f"Feature {number} of SAE {fsae.name}. " + summary(payload, res.cost), left, right,
        cost_table(None, res.cost), download_file(vectors.from_bytes(blob)[0], blob),
        *RawResult.values(payload, f"steer_{handle.identity.name}"),
    )  # fmt: skip


@user_errors
def steer_sweep(
    model: str, positives: str, negatives: str, site: str, layer: float, position: str, pooling: str,
    prompt: str, alphas: str, token_a: str, token_b: str, max_new_tokens: float, selection: Any,
    request: gr.Request = None, progress: gr.Progress = gr.Progress(),  # type: ignore[assignment]  # noqa: B008
) -> tuple[Any, ...]:  # fmt: skip
    """α sweep: change of logit[A] − logit[B] at the prompt's last position, and each generation's cost."""
    pos, neg = _lines(positives, "positive"), _lines(negatives, "negative")
    values, prompt_ok, gen = (
        _alphas(alphas),
        text(prompt, "prompt", APP_MAX_PROMPT_CHARS),
        _gen(max_new_tokens),
    )
    pair, where = (
        (_token(token_a, "token A"), _token(token_b, "token B")),
        choice(position, "position", POSITIONS),
    )
    handle = STORE.get(str(model))
    cfg = _contrastive_cfg(handle, site, layer, pooling, selection)

    def work(report: jobs.Reporter) -> dict[str, Any]:
        sv = contrastive_vector(handle, pos, neg, cfg, progress=report.stages(0.0, 0.2))
        rows = alpha_sweep(handle, sv, prompt_ok, values, pair, where, gen, progress=report.stages(0.2, 1.0))  # type: ignore[arg-type]
        return {"model": handle.identity.name, "vector": sv.to_json(), "token_pair": list(pair),
                "rows": [r.to_json() for r in rows]}  # fmt: skip

    payload = jobs.run(jobs.JobSpec("α sweep", work, model=handle.identity.name), request=request,
                       slot="steering_sweep", progress=progress)  # fmt: skip
    rows = payload["rows"]
    fig = curves(
        [r["alpha"] for r in rows],
        [(f"Δ logit[{pair[0]!r}] − logit[{pair[1]!r}]", "change (logits)", [r["change"] for r in rows]),
         ("cost: perplexity ratio", "steered / unsteered perplexity", [r["perplexity_ratio"] for r in rows]),
         ("cost: distinct-token ratio", "distinct / generated tokens", [r["distinct_steered"] for r in rows])],
        x_label="α (× activation norm)", title="α sweep: effect and cost",
    )  # fmt: skip
    return (
        "",
        fig,
        table(rows, SWEEP_COLUMNS),
        *RawResult.values(payload, f"steer_sweep_{handle.identity.name}"),
    )


@user_errors
def steer_lofit_train(
    model: str, task: str, k: float, steps: float, seed: float, scope: str, selection: Any,
    request: gr.Request = None, progress: gr.Progress = gr.Progress(),  # type: ignore[assignment]  # noqa: B008
) -> tuple[Any, ...]:  # fmt: skip
    """Train LoFiT head offsets on a built-in task (on every head or only the selected ones), as a job."""
    name = choice(task, "task", sorted(TASKS))
    n = integer(steps, "steps", 1, APP_MAX_STEPS)
    handle = STORE.get(str(model))
    restrict = (
        _selected(selection, handle, "LoFiT")
        if choice(scope, "LoFiT on", LOFIT_SCOPES) == LOFIT_SCOPES[1]
        else None
    )
    cfg = LofitConfig(k=integer(k, "K heads", 1, APP_MAX_K), scale_steps=n, bias_steps=n,
                      seed=integer(seed, "seed", 0, 2**31), heads=restrict)  # fmt: skip
    cfg.resolve_k(handle.facts.n_layers, handle.facts.n_heads)  # refuse K > selection before starting
    made: dict[str, Any] = {}

    def work(report: jobs.Reporter) -> dict[str, Any]:
        made["result"] = res = lofit(handle, load_task(name), cfg, report)
        return res.to_json()

    payload = jobs.run(jobs.JobSpec(f"LoFiT on {name}", work, model=handle.identity.name), request=request,
                       slot="steering_lofit", progress=progress)  # fmt: skip
    res: LofitResult = made["result"]
    meta, tensors = vectors.lofit_meta(handle, res.trained_offsets, res.data_hash, restrict)
    blob = vectors.to_bytes(meta, tensors)
    b, a = payload["heldout_before"], payload["heldout_after"]
    line = (f"Held-out accuracy {b['accuracy']:.2f} → **{a['accuracy']:.2f}** with heads **{payload['heads']}**"
            + f" ({payload['verdict']})"
            + f"; {payload['trainable_parameters']:,} trained parameters vs {payload['full_finetune_parameters']:,}"
            " for a full fine-tune.")  # fmt: skip
    return (
        "", line, lofit_grid(res, selection, handle), lofit_table(payload), blob, download_file(meta, blob),
        *RawResult.values(payload, f"lofit_{name}_{handle.identity.name}"),
    )  # fmt: skip


@user_errors
def steer_lofit_apply(
    model: str, trained: bytes | None, upload: bytes | None, prompt: str, max_new_tokens: float,
    request: gr.Request = None, progress: gr.Progress = gr.Progress(),  # type: ignore[assignment]  # noqa: B008
) -> tuple[Any, ...]:  # fmt: skip
    """Generate with LoFiT offsets (an uploaded file wins over the ones trained in this session), with the cost."""
    gen, prompt_ok = _gen(max_new_tokens), text(prompt, "prompt", APP_MAX_PROMPT_CHARS)
    blob = upload or trained
    if not blob:
        raise InputError("train head offsets first, or upload a LoFiT vector file")
    if not isinstance(blob, bytes):
        raise InputError("upload the vector file as a .safetensors file")
    meta, tensors = vectors.from_bytes(blob)  # size-limited
    handle = STORE.get(str(model))
    offsets = vectors.to_offsets(meta, tensors, handle)  # refuses another model
    made: dict[str, Any] = {}

    def work(report: jobs.Reporter) -> dict[str, Any]:
        made["result"] = res = apply_offsets(handle, offsets, [prompt_ok], SideBySideConfig(gen),
                                             progress=report.stages())  # fmt: skip
        return {"model": handle.identity.name, **res.to_json()}

    payload = jobs.run(jobs.JobSpec("LoFiT generation", work, model=handle.identity.name), request=request,
                       slot="steering_lofit_apply", progress=progress)  # fmt: skip
    res = made["result"]
    left, right = strips(res.unsteered, res.steered, res.cost)
    line = f"Offsets on heads **{payload['heads']}**. " + summary_cost(res.cost)
    return "", line, left, right, cost_table(None, res.cost), *RawResult.values(payload, "lofit_apply")


# ---- layout ------------------------------------------------------------------------------------------------------
def _side_by_side(prefix: str) -> tuple[gr.HTML, gr.HTML]:
    with gr.Row():
        left = TokenStrip(label="Unsteered", elem_id=f"hs-{prefix}-unsteered")
        right = TokenStrip(label="Steered", elem_id=f"hs-{prefix}-steered")
    return left, right


def _build_contrastive(ctx: AppContext, example_slot: gr.Column) -> None:
    gr.Markdown("### Contrastive vector: v = mean activation(positives) − mean activation(negatives)")
    with gr.Row():
        pos = gr.Textbox(
            EXAMPLE_POS, lines=5, label="Positive texts (one a line)", max_length=APP_MAX_TEXT_CHARS
        )
        neg = gr.Textbox(
            EXAMPLE_NEG, lines=5, label="Negative texts (one a line)", max_length=APP_MAX_TEXT_CHARS
        )
    with gr.Row():
        site = gr.Radio(list(SITES), value=SITES[0], label="Steer at")
        layer = gr.Number(DEFAULT_LAYER, precision=0, minimum=0, label="Layer")
        alpha = gr.Slider(-ALPHA_SLIDER, ALPHA_SLIDER, value=DEFAULT_ALPHA, step=0.05,
                          label="α (× the activation norm at the site)")  # fmt: skip
    with gr.Row():
        position = gr.Radio(list(POSITIONS), value=DEFAULT_POSITION, label="Add at positions (last: GLOV)")
        pooling = gr.Radio(list(POOLINGS), value="mean", label="Pool each text by")
        max_new = gr.Slider(1, APP_MAX_NEW_TOKENS, value=24, step=1, label="New tokens")
    prompt = gr.Textbox(EXAMPLE_PROMPT, label="Prompt", max_length=APP_MAX_PROMPT_CHARS)
    run = gr.Button("Steer", variant="primary")
    controls = jobs.JobControls.build("steering_run")
    line = gr.Markdown()
    plain, steered = _side_by_side("contrastive")
    costs = gr.Dataframe(label="Effect and cost", headers=list(COST_HEADERS), interactive=False)
    download = gr.File(label="This vector (.safetensors; its sidecar is in the header)", interactive=False)
    raw = RawResult("steering result")
    inputs = [
        ctx.model,
        pos,
        neg,
        site,
        layer,
        alpha,
        position,
        pooling,
        prompt,
        max_new,
        ctx.selection.state,
    ]
    outputs = [controls.status, line, plain, steered, costs, download, *raw.outputs]
    event = {"show_progress_on": [controls.status], **JOB_EVENT}
    run.click(steer_contrastive, inputs, outputs, api_name="steer_contrastive", **event)
    with example_slot:
        examples.worked_example(
            [[EXAMPLE_POS, EXAMPLE_NEG, SITES[0], DEFAULT_LAYER, DEFAULT_ALPHA, p, 24] for p in _EXAMPLE.prompts[:3]],
            [pos, neg, site, layer, alpha, prompt, max_new], steer_contrastive, inputs, outputs,
            labels=[f"sentiment, “{p} …”" for p in _EXAMPLE.prompts[:3]], **event,
        )  # fmt: skip

    with gr.Row(equal_height=True):
        upload = gr.File(type="binary", file_types=[".safetensors"], label="…or a saved vector file", scale=3)
        apply_file = gr.Button("Steer with the uploaded vector (α, positions and prompt from above)", scale=2)
    apply_file.click(
        steer_uploaded, [ctx.model, upload, alpha, position, prompt, max_new], outputs,
        api_name="steer_uploaded", **event,
    )  # fmt: skip
    with gr.Row(equal_height=True):
        saes = gr.Dropdown(
            choices=[], value=None, label="…or an SAE feature: SAE", scale=2, allow_custom_value=True
        )
        feature = gr.Number(0, precision=0, minimum=0, label="feature", scale=1)
        apply_feature = gr.Button("Steer by this feature (α, positions and prompt from above)", scale=2)
    ctx.model.change(sae_names, [ctx.model], [saes], api_visibility="private")
    apply_feature.click(
        steer_feature, [ctx.model, saes, feature, alpha, position, prompt, max_new], outputs,
        api_name="steer_feature", **event,
    )  # fmt: skip

    gr.Markdown("#### α sweep: the effect and the cost as α grows")
    with gr.Row():
        alphas = gr.Textbox("0, 0.1, 0.2, 0.4, 0.8", label="α values (comma-separated)", max_length=400)
        tok_a = gr.Textbox(" great", label="Token A (logit difference A − B)", max_length=APP_MAX_TOKEN_CHARS)
        tok_b = gr.Textbox(" terrible", label="Token B", max_length=APP_MAX_TOKEN_CHARS)
    sweep = gr.Button("Run the α sweep")
    sweep_controls = jobs.JobControls.build("steering_sweep")
    fig = Plot(label="α sweep")
    sweep_rows = gr.Dataframe(
        label="α sweep (click a header to sort)", headers=[h for _, h in SWEEP_COLUMNS], interactive=False
    )
    sweep_raw = RawResult("α sweep")
    sweep.click(
        steer_sweep,
        [ctx.model, pos, neg, site, layer, position, pooling, prompt, alphas, tok_a, tok_b, max_new, ctx.selection.state],
        [sweep_controls.status, fig, sweep_rows, *sweep_raw.outputs], api_name="steer_sweep",
        show_progress_on=[sweep_controls.status], **JOB_EVENT,
    )  # fmt: skip
    ctx.session.add(
        "steering", positives=pos, negatives=neg, site=site, layer=layer, alpha=alpha, position=position,
        pooling=pooling, new_tokens=max_new, prompt=prompt, summary=line, unsteered=plain, steered=steered,
        costs=costs, vector_file=download, result=raw.json, result_file=raw.file, alphas=alphas, token_a=tok_a,
        token_b=tok_b, sweep_plot=fig, sweep_rows=sweep_rows, sweep=sweep_raw.json, sweep_file=sweep_raw.file,
    )  # fmt: skip


def _build_lofit(ctx: AppContext) -> None:
    gr.Markdown("### LoFiT: rank heads by a trained L1 scale, then learn one offset vector per top head")
    with gr.Row():
        task = gr.Dropdown(sorted(TASKS), value="antonyms", label="Task")
        scope = gr.Radio(list(LOFIT_SCOPES), value=LOFIT_SCOPES[0], label="LoFiT on")
        k = gr.Number(
            8, precision=0, minimum=1, maximum=APP_MAX_K, label="K heads (3 % of SmolLM2's 270 = 8)"
        )
        steps = gr.Slider(1, APP_MAX_STEPS, value=30, step=1, label="Steps per phase")
        seed = gr.Number(0, precision=0, minimum=0, label="Seed")
    train = gr.Button("Train", variant="primary")
    controls = jobs.JobControls.build("steering_lofit")
    line = gr.Markdown()
    grid = HeadGrid(label="‖A‖ per head; the tuned heads marked", elem_id="hs-lofit-grid")
    add = gr.Button("Add the LoFiT-selected heads to the selection", size="sm")
    scores = gr.Dataframe(label="Held-out accuracy", headers=[h for _, h in LOFIT_COLUMNS], interactive=False)
    trained = gr.State(None)
    download = gr.File(
        label="Trained head offsets (.safetensors; its sidecar is in the header)", interactive=False
    )
    raw = RawResult("LoFiT result")
    train.click(
        steer_lofit_train, [ctx.model, task, k, steps, seed, scope, ctx.selection.state],
        [controls.status, line, grid, scores, trained, download, *raw.outputs], api_name="steer_lofit_train",
        show_progress_on=[controls.status], **JOB_EVENT,
    )  # fmt: skip
    ctx.selection.connect_grid(grid)
    ctx.selection.add_button(add, _lofit_heads, [raw.json])

    gr.Markdown("#### Generate with the offsets")
    upload = gr.File(type="binary", file_types=[".safetensors"], label="…or upload a LoFiT vector file")
    with gr.Row():
        prompt = gr.Textbox("hot ->", label="Prompt", max_length=APP_MAX_PROMPT_CHARS)
        max_new = gr.Slider(1, APP_MAX_NEW_TOKENS, value=8, step=1, label="New tokens (LoFiT)")
    apply = gr.Button("Generate with the offsets")
    apply_controls = jobs.JobControls.build("steering_lofit_apply")
    apply_line = gr.Markdown()
    plain, steered = _side_by_side("lofit")
    apply_costs = gr.Dataframe(label="Cost", headers=list(COST_HEADERS), interactive=False)
    apply_raw = RawResult("LoFiT generation")
    apply.click(
        steer_lofit_apply, [ctx.model, trained, upload, prompt, max_new],
        [apply_controls.status, apply_line, plain, steered, apply_costs, *apply_raw.outputs],
        api_name="steer_lofit_apply", show_progress_on=[apply_controls.status], **JOB_EVENT,
    )  # fmt: skip
    ctx.session.add(
        "lofit", task=task, scope=scope, k=k, steps=steps, seed=seed, summary=line, grid=grid, scores=scores,
        offsets=trained, offsets_file=download, result=raw.json, result_file=raw.file, prompt=prompt,
        new_tokens=max_new, apply_summary=apply_line, unsteered=plain, steered=steered, costs=apply_costs,
        applied=apply_raw.json, applied_file=apply_raw.file,
    )  # fmt: skip


def _lofit_heads(result: Any) -> str:
    if not isinstance(result, dict) or not isinstance(result.get("heads"), str):
        raise InputError("train LoFiT first: its selected heads are added from the result")
    return result["heads"]


@register_tab("Steering", order=30)
def build(ctx: AppContext) -> None:
    examples.guide(
        "Steer the model and read it against the unsteered model, side by side: a **contrastive vector** (mean "
        "activation of positive texts minus negative texts) added to a layer's residual stream or to the selected "
        "heads' outputs, or **LoFiT** offsets learned on a few heads.",
        "α is a fraction of the typical activation norm where the vector is added. Every effect is shown with its "
        "cost — how plausible the steered text is to the unsteered model (perplexity ratio, ≤ 2 is fluent) and how "
        "repetitive it is (distinct-token ratio, ≥ 0.5) — and the steered text is shaded by how much more (red) or "
        "less (blue) likely steering made each token.",
        PAPERS,
    )
    example_slot = gr.Column()  # filled once the outputs exist: the worked examples open the tab
    _build_contrastive(ctx, example_slot)
    _build_lofit(ctx)
