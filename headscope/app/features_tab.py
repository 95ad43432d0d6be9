"""Features tab: a model read through SAE features, Neuronpedia-style — the top features of every token of a text,
a feature's page (top contexts with the activating token, activation histogram, the tokens its decoder direction
promotes / suppresses), steering by a feature side by side with the unsteered model, and attribution of an output
token to features. Wiring only: the work is in `headscope.features`; SAEs are offered by catalog name only."""

from __future__ import annotations

import itertools
from typing import Any

import gradio as gr
import plotly.graph_objects as go

from headscope.app import examples, jobs
from headscope.app.figures import Plot, RawResult, fmt_num, table
from headscope.app.inputs import choice, integer, number, text
from headscope.app.state import JOB_EVENT, STORE, VIEW_EVENT, user_errors
from headscope.app.steering_views import cost_table, download_file
from headscope.app.tabs import AppContext, register_tab
from headscope.app.views import TokenStrip, strip_row, strip_value, visible_token
from headscope.errors import InputError
from headscope.features import attribution as attr
from headscope.features import catalog, views
from headscope.features import steer as fsteer
from headscope.features.saes import FeatureSAE
from headscope.models import ModelHandle
from headscope.steering import vectors
from headscope.steering.cost import Cost
from headscope.steering.direction import DEFAULT_ALPHA, MAX_ALPHA, SteeringVector
from headscope.steering.generate import GenConfig

APP_MAX_CHARS = 4_000
APP_MAX_TOKENS = 512
APP_MAX_PROMPT = 1_000
APP_MAX_NEW_TOKENS = 48
APP_MAX_K = 16
DEFAULT_SAE = "res15"
DEFAULT_TEXT = (
    "The Eiffel Tower is a wrought-iron lattice tower in Paris. It was built for the 1889 World's Fair."
)
PAPERS = (
    (
        "Towards Monosemanticity (Bricken et al. 2023)",
        "https://transformer-circuits.pub/2023/monosemantic-features",
    ),
    (
        "Scaling and evaluating sparse autoencoders (Gao et al. 2024, TopK)",
        "https://arxiv.org/abs/2406.04093",
    ),
    ("SAELens", "https://github.com/decoderesearch/SAELens"),
)
CARD_COLUMNS = [
    ("name", "SAE"), ("hook", "hook"), ("d_sae", "features"), ("architecture", "architecture"),
    ("explained_variance", "explained variance (test)"), ("ce_loss_score", "CE loss score"),
    ("ce_increase", "CE increase (fraction)"), ("l0", "L0 (active / token)"), ("dead_fraction", "dead fraction"),
    ("tokens_seen", "training tokens"), ("training_seconds", "training time (s)"),
]  # fmt: skip


# ---- inputs ------------------------------------------------------------------------------------------------------
def _sae(handle: ModelHandle, name: Any) -> FeatureSAE:
    if not isinstance(name, str) or not name:
        raise InputError(f"no SAE is picked (SAEs for {handle.identity.name}: see the SAE list)")
    return catalog.resolve(handle, name)  # catalog names only: never a path


def _text(handle: ModelHandle, value: Any) -> str:
    value = text(value, "text", APP_MAX_CHARS)
    handle.tokenize(value, max_tokens=min(APP_MAX_TOKENS, handle.max_tokens))  # refuse, never cut
    return value


def _steer_cfg(feature: Any, alpha: Any, mode: Any, position: Any) -> fsteer.FeatureSteerConfig:
    mode = choice(mode, "mode", fsteer.MODES)
    limit = MAX_ALPHA if mode == "add" else fsteer.MAX_CLAMP
    return fsteer.FeatureSteerConfig(integer(feature, "feature", 0, 10**7), number(alpha, "alpha", -limit, limit),
                                     mode, choice(position, "position", ("last", "all")))  # fmt: skip


# ---- SAE list ----------------------------------------------------------------------------------------------------
def sae_rows(model: str) -> list[dict[str, Any]]:
    return [e.to_json() for e in catalog.available(str(model))]


@user_errors
def list_saes(model: str) -> tuple[Any, dict[str, Any]]:
    rows = sae_rows(model)
    names = [r["name"] for r in rows]
    value = DEFAULT_SAE if DEFAULT_SAE in names else (names[0] if names else None)
    return gr.update(choices=names, value=value), table(rows, CARD_COLUMNS)


# ---- top features ------------------------------------------------------------------------------------------------
def _notes(top: list[list[dict[str, Any]]]) -> list[str]:
    return [
        ", ".join(f"#{t['feature']} {t['activation']:.2f}" for t in row[:4]) or "no active feature"
        for row in top
    ]


def top_strip(payload: dict[str, Any], sae: str) -> dict[str, Any]:
    top = payload["top"]
    first = [row[0]["activation"] if row else 0.0 for row in top]
    row = strip_row(payload["tokens"], payload["token_ids"], first, label="top feature", notes=_notes(top))
    return strip_value([row], label=f"activation of each token's most active feature ({sae})", unit="",
                       caption="Hover a token for its top features; click it to list them below.",
                       filename=f"top_features_{sae}")  # fmt: skip


def token_table(payload: dict[str, Any], position: int) -> dict[str, Any]:
    tokens, top = payload.get("tokens") or [], payload.get("top") or []
    if not 0 <= position < len(top):
        return table([], [("feature", "feature")])
    rows = [
        {"rank": r + 1, "feature": t["feature"], "activation": t["activation"]}
        for r, t in enumerate(top[position])
    ]
    cols = [("rank", f"rank at token {position} {visible_token(tokens[position])!r}"), ("feature", "feature"),
            ("activation", "activation")]  # fmt: skip
    return table(rows, cols)


def _busiest(payload: dict[str, Any]) -> int:
    """The position (≥ 1) whose top feature is the most active: the table opens there."""
    acts = [row[0]["activation"] if row else 0.0 for row in payload["top"]]
    return max(range(1, len(acts)), key=lambda i: acts[i]) if len(acts) > 1 else 0


@user_errors
def show_top(model: str, sae_name: str, text_in: str, k: Any) -> tuple[Any, ...]:
    handle = STORE.get(str(model))
    fsae = _sae(handle, sae_name)
    value = _text(handle, text_in)
    payload = views.top_features(handle, fsae, value, integer(k, "k", 1, APP_MAX_K)).to_json()
    rec = views.reconstruction(handle, fsae, value).to_json()
    summary = (
        f"**{fsae.name}** at `{fsae.hook}` ({fsae.d_sae} features) on {len(payload['tokens'])} tokens: explained "
        f"variance {fmt_num(payload['explained_variance'])} (positions ≥ 1); next-token loss "
        f"{fmt_num(rec['ce_loss_clean'])} nats clean, {fmt_num(rec['ce_loss_with_sae'])} with the SAE spliced in "
        f"(zero-ablated: {fmt_num(rec['ce_loss_ablated'])}); {fmt_num(rec['l0'], 1)} features active per token."
    )
    full = {**payload, "reconstruction": rec, "sae": fsae.name}
    return (summary, top_strip(payload, fsae.name), token_table(payload, _busiest(payload)), payload,
            *RawResult.values(full, f"features_top_{fsae.name}"))  # fmt: skip


def on_token(payload: Any, evt: gr.EventData) -> dict[str, Any]:
    position = integer((getattr(evt, "_data", None) or {}).get("position", -1), "token position", -1, 10**6)
    return token_table(payload if isinstance(payload, dict) else {}, position)


# ---- feature page ------------------------------------------------------------------------------------------------
def contexts_strip(page: views.FeaturePage) -> dict[str, Any]:
    rows = [strip_row(c.tokens, [0] * len(c.tokens), c.activations, label=f"{c.activation:.2f}",
                      marks=[i == c.focus for i in range(len(c.tokens))]) for c in page.contexts]  # fmt: skip
    for row in rows:
        row.pop("ids")  # dashboard contexts carry token text; ids would be noise in the hover
    return strip_value(rows, label=f"activation of feature {page.feature}", vmin=0.0, vmax=page.max_activation or 1.0,
                       title=f"top contexts of feature {page.feature} (validation split; marked: the activating token)",
                       filename=f"feature_{page.sae}_{page.feature}_contexts")  # fmt: skip


def histogram(page: views.FeaturePage) -> go.Figure:
    edges, counts = page.histogram
    mids = [(a + b) / 2 for a, b in itertools.pairwise(edges)]
    fig = go.Figure(
        go.Bar(x=mids, y=list(counts), hovertemplate="activation ≈ %{x:.2f}: %{y} tokens<extra></extra>")
    )
    fig.update_layout(title={"text": f"feature {page.feature}: non-zero activations ({page.sae})"}, height=300,
                      xaxis_title="activation", yaxis_title="tokens", margin={"t": 50})  # fmt: skip
    return fig


def lens_table(pairs: tuple[tuple[str, float], ...], what: str) -> dict[str, Any]:
    rows = [{"token": visible_token(t), "logit": v} for t, v in pairs]
    return table(rows, [("token", f"{what} token"), ("logit", "logit (decoder row · W_U)")])


@user_errors
def open_feature(model: str, sae_name: str, feature: Any, text_in: str) -> tuple[Any, ...]:
    handle = STORE.get(str(model))
    fsae = _sae(handle, sae_name)
    page = views.feature_page(handle, fsae, integer(feature, "feature", 0, 10**7))
    header = (
        f"**Feature {page.feature}** of {page.sae} (`{page.hook}`): active on {100 * page.frequency:.3g}% of "
        f"{page.indexed_positions:,} held-out tokens, largest activation {fmt_num(page.max_activation)}."
    )
    on_text: Any = None
    if isinstance(text_in, str) and text_in.strip():
        value = _text(handle, text_in)
        tokens, acts = views.feature_activations(handle, fsae, value, page.feature)
        ids = handle.tokenize(value)[0].tolist()
        on_text = strip_value([strip_row(tokens, ids, acts, label="your text")], label=f"feature {page.feature}",
                              vmin=0.0, filename=f"feature_{page.feature}_on_text")  # fmt: skip
    return (header, contexts_strip(page), histogram(page), lens_table(page.promoted, "promoted"),
            lens_table(page.suppressed, "suppressed"), on_text, *RawResult.values(page.to_json(), f"feature_{page.feature}"))  # fmt: skip


# ---- jobs: steering and attribution --------------------------------------------------------------------------------
def generations_strip(payload: dict[str, Any], tokens: dict[str, list[str]]) -> dict[str, Any]:
    rows = [
        strip_row(tokens[side], payload[side]["token_ids"], None, label=side)
        for side in ("unsteered", "steered")
    ]
    return strip_value(
        rows, label="continuations", title="unsteered vs steered (greedy)", filename="feature_steering"
    )


def effect_cost_table(effect: float | None, cost: Cost) -> dict[str, Any]:
    """Steering's effect-and-cost table with the feature's downstream effect as the first row."""
    out = cost_table(None, cost)
    if effect is not None:
        out["data"].insert(0, ["effect: Δ mean log p(promoted tokens), next token (nats)", 0.0,
                               round(effect, 4), "> 0 promotes them"])  # fmt: skip
    return out


@user_errors
def steer(model: str, sae_name: str, feature: Any, alpha: Any, mode: Any, position: Any, prompt: Any,
          n_new: Any, request: gr.Request, progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:  # noqa: B008  # fmt: skip
    cfg = _steer_cfg(feature, alpha, mode, position)
    gen = GenConfig(integer(n_new, "new tokens", 1, APP_MAX_NEW_TOKENS))
    prompt = text(prompt, "prompt", APP_MAX_PROMPT)
    handle = STORE.get(str(model))
    fsae = _sae(handle, sae_name)
    fsae.check_feature(cfg.feature)
    made: dict[str, fsteer.FeatureSteering] = {}

    def work(report: jobs.Reporter) -> dict[str, Any]:
        report(f"greedy generation, unsteered and steered ({gen.max_new_tokens} tokens each)", 0.05)
        made["result"] = res = fsteer.steer(handle, fsae, prompt, cfg, gen, progress=report.stages(0.05, 0.9))
        return res.to_json()

    # no command: the views need the steering vector object made in `work`, which a remote runner cannot return
    spec = jobs.JobSpec(f"steer by feature {cfg.feature}", work, model=handle.identity.name)
    payload = jobs.run(spec, request=request, slot="features_steer", progress=progress)
    res = made["result"]
    tokens = {side: handle.str_tokens(payload[side]["token_ids"]) for side in ("unsteered", "steered")}
    vector = None if res.steering_vector is None else _vector_file(handle, res.steering_vector, cfg)
    return ("steering done.", generations_strip(payload, tokens), effect_cost_table(res.effect, res.cost),
            vector, *RawResult.values(payload, f"features_steer_{cfg.feature}"))  # fmt: skip


def _vector_file(handle: ModelHandle, sv: SteeringVector, cfg: fsteer.FeatureSteerConfig) -> str:
    """The feature's vector as a steering vector file (the Steering tab's upload applies it)."""
    meta, tensors = fsteer.vector_file(handle, sv, cfg)
    return download_file(meta, vectors.to_bytes(meta, tensors))


@user_errors
def attribute(model: str, sae_name: str, prompt: Any, target: Any, contrast: Any, do_check: Any,
              request: gr.Request, progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:  # noqa: B008  # fmt: skip
    prompt = text(prompt, "prompt", APP_MAX_PROMPT)
    target = text(target, "target token", 100)
    contrast = text(contrast, "contrast token", 100, allow_empty=True) or None
    handle = STORE.get(str(model))
    fsae = _sae(handle, sae_name)
    metric = attr.metric_for(handle, target, contrast)

    def work(report: jobs.Reporter) -> dict[str, Any]:
        report("activation × gradient (one forward and backward pass)", 0.05)
        result = attr.attribute(handle, fsae, prompt, metric, 20)
        out = result.to_json()
        if do_check:
            report("real ablation of the top 20 features (one forward pass each)", 0.3)
            out["check"] = attr.check(handle, fsae, prompt, metric, result, 20).to_json()
        return out

    payload = jobs.run(jobs.JobSpec("attribution to features", work, model=handle.identity.name),
                       request=request, slot="features_attribute", progress=progress)  # fmt: skip
    real = dict(
        zip(
            payload.get("check", {}).get("features", []),
            payload.get("check", {}).get("ablated", []),
            strict=True,
        )
    )
    tokens = payload["tokens"]
    rows = [{"feature": f["feature"], "attribution": f["attribution"], "ablation": real.get(f["feature"]),
             "activation": f["activation"], "token": f"{f['top_position']} {visible_token(tokens[f['top_position']])}"}
            for f in payload["features"]]  # fmt: skip
    cols = [("feature", "feature"), ("attribution", f"expected drop of {payload['metric']}"),
            ("ablation", "real drop when ablated"), ("activation", "Σ activation"), ("token", "strongest at token")]  # fmt: skip
    check = payload.get("check")
    line = f"{payload['metric']} = {fmt_num(payload['value'])} on the clean run."
    if check:
        line += f" Estimates vs real ablations: sign agreement {fmt_num(check['sign_agreement'], 2)}, Spearman {fmt_num(check['spearman'], 2)}."
    return ("attribution done.", line, table(rows, cols), *RawResult.values(payload, "features_attribution"))


# ---- layout ------------------------------------------------------------------------------------------------------
@register_tab("Features", order=45)
def build(ctx: AppContext) -> None:
    examples.guide(
        "The model read through **sparse-autoencoder features** (SAELens format): which features fire on each "
        "token, what a feature means (its top contexts on held-out text and the tokens it promotes), and what "
        "happens when you push on it.",
        "Shading is the activation of a token's most active feature; hover a token for its top features, click it "
        "for the list. A feature page is precomputed (validation split). Steering adds the feature's decoder "
        "direction at α × the typical activation norm at the SAE's hook, as in the Steering tab (or clamps the "
        f"feature's activation). Texts up to {APP_MAX_TOKENS} tokens.",
        PAPERS,
    )
    example_slot = gr.Column()
    with gr.Row():
        names = [r["name"] for r in sae_rows(str(ctx.model.value))]
        first = DEFAULT_SAE if DEFAULT_SAE in names else (names[0] if names else None)
        # Choices follow the model picker; any typed value is checked against the catalog on the server.
        sae = gr.Dropdown(choices=names, value=first, label="SAE", scale=1, allow_custom_value=True)
        refresh = gr.Button("Refresh SAE list", size="sm", scale=0, min_width=160)
    cards = gr.Dataframe(value=table(sae_rows(str(ctx.model.value)), CARD_COLUMNS), interactive=False,
                         label="SAEs for this model (card figures on the test split; click a header to sort)")  # fmt: skip
    for trigger in (ctx.model.change, refresh.click):
        trigger(list_saes, [ctx.model], [sae, cards], api_visibility="private")

    gr.Markdown("### Top features of a text")
    text_in = gr.Textbox(label=f"Text (at most {APP_MAX_CHARS:,} characters)", value=DEFAULT_TEXT, lines=3)
    with gr.Row():
        k = gr.Slider(1, APP_MAX_K, value=5, step=1, label="features per token (k)")
        show = gr.Button("Show features", variant="primary", scale=0, min_width=160)
    summary = gr.Markdown()
    strip = TokenStrip(label="Tokens (shaded by their top feature)", elem_id="hs-features-strip")
    per_token = gr.Dataframe(label="Top features of the clicked token", interactive=False)
    top_state = gr.State({})
    raw = RawResult("top features")
    top_out = [summary, strip, per_token, top_state, *raw.outputs]
    show.click(show_top, [ctx.model, sae, text_in, k], top_out, api_name="features_top", **VIEW_EVENT)
    strip.token(on_token, [top_state], [per_token], api_visibility="private", **VIEW_EVENT)  # pyright: ignore[reportAttributeAccessIssue]
    ctx.selection.connect_tokens(strip)

    gr.Markdown("### Feature page")
    with gr.Row():
        feature = gr.Number(value=0, precision=0, minimum=0, label="Feature", scale=0, min_width=140)
        open_btn = gr.Button("Open feature", variant="primary", scale=0, min_width=160)
    header = gr.Markdown()
    contexts = TokenStrip(label="Top-activating contexts", elem_id="hs-feature-contexts")
    with gr.Row():
        hist = Plot(label="Activation histogram")
        with gr.Column():
            promoted = gr.Dataframe(
                label="Promoted tokens (logit lens of the decoder row)", interactive=False
            )
            suppressed = gr.Dataframe(label="Suppressed tokens", interactive=False)
    on_text = TokenStrip(label="This feature on the text above", elem_id="hs-feature-on-text")
    page_raw = RawResult("feature page")
    page_out = [header, contexts, hist, promoted, suppressed, on_text, *page_raw.outputs]
    open_btn.click(
        open_feature, [ctx.model, sae, feature, text_in], page_out, api_name="features_page", **VIEW_EVENT
    )

    gr.Markdown("### Steer by this feature")
    with gr.Row():
        alpha = gr.Number(value=DEFAULT_ALPHA, label=f"α (add: × the activation norm at the SAE's hook, |α| ≤ "
                          f"{MAX_ALPHA:g}, as in the Steering tab; clamp: the activation value)")  # fmt: skip
        mode = gr.Radio(list(fsteer.MODES), value="add", label="Mode")
        position = gr.Radio(["last", "all"], value="last", label="Positions")
        n_new = gr.Slider(1, APP_MAX_NEW_TOKENS, value=20, step=1, label="new tokens")
    prompt = gr.Textbox(label="Prompt", value="My favourite place to visit is", lines=1)
    go_steer = gr.Button("Steer", variant="primary")
    steer_ctl = jobs.JobControls.build("features_steer")
    gens = TokenStrip(label="Unsteered vs steered", elem_id="hs-feature-steer")
    steer_table = gr.Dataframe(label="Effect and cost", interactive=False)
    vector = gr.File(label="This feature as a steering vector file (Steering tab: upload)", interactive=False)
    steer_raw = RawResult("feature steering")
    go_steer.click(steer, [ctx.model, sae, feature, alpha, mode, position, prompt, n_new],
                   [steer_ctl.status, gens, steer_table, vector, *steer_raw.outputs], api_name="features_steer",
                   show_progress_on=[steer_ctl.status], **JOB_EVENT)  # fmt: skip

    gr.Markdown("### Which features drive an output token")
    with gr.Row():
        a_prompt = gr.Textbox(label="Prompt", value="The Eiffel Tower is in the city of", scale=3)
        target = gr.Textbox(label="Target token", value=" Paris", scale=1)
        contrast = gr.Textbox(label="Contrast token (optional: logit difference)", value=" London", scale=1)
        do_check = gr.Checkbox(value=True, label="check against real ablations")
    go_attr = gr.Button("Attribute", variant="primary")
    attr_ctl = jobs.JobControls.build("features_attribute")
    attr_line = gr.Markdown()
    attr_table = gr.Dataframe(label="Top features by attribution (click a header to sort)", interactive=False)
    attr_raw = RawResult("attribution")
    go_attr.click(attribute, [ctx.model, sae, a_prompt, target, contrast, do_check],
                  [attr_ctl.status, attr_line, attr_table, *attr_raw.outputs], api_name="features_attribute",
                  show_progress_on=[attr_ctl.status], **JOB_EVENT)  # fmt: skip

    with example_slot:
        examples.worked_example(
            [[DEFAULT_SAE, DEFAULT_TEXT, 5], ["res6", "def add(a, b):\n    return a + b\n", 5]],
            [sae, text_in, k], show_top, [ctx.model, sae, text_in, k], top_out,
            labels=["a Wikipedia sentence, layer 15", "a line of code, layer 6"], **VIEW_EVENT,
        )  # fmt: skip
    ctx.session.add(
        "features", sae=sae, text=text_in, k=k, summary=summary, strip=strip, per_token=per_token,
        result=raw.json, result_file=raw.file, feature=feature, header=header, contexts=contexts, histogram=hist,
        promoted=promoted, suppressed=suppressed, on_text=on_text, page=page_raw.json, alpha=alpha, mode=mode,
        position=position, new_tokens=n_new, prompt=prompt, generations=gens, steer_table=steer_table,
        steer=steer_raw.json, attr_prompt=a_prompt, target=target, contrast=contrast, attribution=attr_table,
        attribution_result=attr_raw.json,
    )  # fmt: skip
