"""Features tab: a model read through SAE features, Neuronpedia-style — the top features of every token of a text,
a feature's page, the SAE judged on held-out text (`features eval`), steering by a feature and attribution of an
output token to features. Each endpoint returns the capability's JSON (`raw`) and a private follow-up draws the
views from it (features_views.py); the jobs carry their CLI command (Ray-ready). SAEs are offered by catalog name
only (never a path). One status line (and Cancel) serves every event of the tab."""

from __future__ import annotations

from typing import Any

import gradio as gr

from headscope.app import examples, jobs
from headscope.app import features_views as fv
from headscope.app import steering_views as sv
from headscope.app.figures import Plot, json_file, table
from headscope.app.inputs import choice, integer, number, ranged_number, text
from headscope.app.state import PRIVATE, STORE, VIEW_EVENT
from headscope.app.tabs import AppContext, register_tab
from headscope.app.views import TokenStrip
from headscope.app.wiring import Ctx, bind, handler, pick, section
from headscope.cli.features import attribute_argv, to_argv
from headscope.errors import InputError
from headscope.features import attribution as attr
from headscope.features import catalog, summary
from headscope.features import steer as fsteer
from headscope.features.evaluate import EvalConfig, SaeEval
from headscope.features.heldout import SETS
from headscope.features.saes import FeatureSAE
from headscope.features.views import TopFeatures
from headscope.models import ModelHandle
from headscope.steering import vectors
from headscope.steering.direction import DEFAULT_ALPHA, MAX_ALPHA
from headscope.steering.generate import GenConfig

APP_MAX_CHARS = 4_000
APP_MAX_TOKENS = 512
APP_MAX_PROMPT = 1_000
APP_MAX_NEW_TOKENS = 48
APP_MAX_K = 16
APP_MAX_EVAL_TOKENS = 25_600  # the whole wiki-test set the cards are measured on
THE_TEXT = "the text above"
EVAL_SOURCES = (*SETS, THE_TEXT)
SLOT = "features"  # one job at a time per visitor in this tab: one status line, one Cancel
DEFAULT_SAE = "res15"
DEFAULT_TEXT = (
    "The Eiffel Tower is a wrought-iron lattice tower in Paris. It was built for the 1889 World's Fair."
)
PAPERS = (
    ("Towards Monosemanticity (Bricken et al. 2023)", "https://transformer-circuits.pub/2023/monosemantic-features"),
    ("Scaling and evaluating sparse autoencoders (Gao et al. 2024, TopK)", "https://arxiv.org/abs/2406.04093"),
    ("SAELens", "https://github.com/decoderesearch/SAELens"),
)  # fmt: skip


# ---- inputs --------------------------------------------------------------------------------------------------------
def _text(handle: ModelHandle, value: Any) -> str:
    value = text(value, "text", APP_MAX_CHARS)
    handle.tokenize(value, max_tokens=min(APP_MAX_TOKENS, handle.max_tokens))  # refuse, never cut
    return value


def _model_sae(inputs: dict[str, Any]) -> tuple[ModelHandle, FeatureSAE]:
    handle, name = STORE.get(str(inputs["model"])), inputs["sae"]
    if not isinstance(name, str) or not name:
        raise InputError(f"no SAE is picked (SAEs for {handle.identity.name}: see the SAE list)")
    return handle, catalog.resolve(handle, name)  # catalog names only: never a path


def sae_rows(model: str) -> list[dict[str, Any]]:
    return [e.to_json() for e in catalog.available(str(model))]


def list_saes(inputs: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    """The model's SAEs: the picker's choices (DEFAULT_SAE when there, else the first) and the cards table."""
    rows = sae_rows(str(inputs["model"]))
    names = [r["name"] for r in rows]
    value = DEFAULT_SAE if DEFAULT_SAE in names else (names[0] if names else None)
    return {"sae": gr.update(choices=names, value=value), "cards": table(rows, fv.CARD_COLUMNS)}


def _job(ctx: Ctx, title: str, handle: ModelHandle, work: Any, command: list[str]) -> dict[str, Any]:
    """Run a job in the tab's one slot (one status line, one Cancel)."""
    spec = jobs.JobSpec(title, work, handle.identity.name, tuple(command))
    return jobs.run(spec, request=ctx.request, slot=SLOT, progress=ctx.progress)


# ---- views: top features, feature page (about a second each) ---------------------------------------------------------
def top(inputs: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    """The top features of each token of `text` and the SAE's reconstruction figures on it (JSON)."""
    handle, fsae = _model_sae(inputs)
    value = _text(handle, inputs["text"])
    k = integer(inputs["k"], "k", 1, APP_MAX_K)
    return {"top_raw": summary.text_report(handle, fsae, value, k).to_json()}


def draw_top(inputs: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    raw = inputs["top_raw"]
    if not raw:
        return {}
    r = summary.TextReport.from_json(raw)
    return {"summary": fv.top_summary(r), "strip": fv.top_strip(r.top, r.sae),
            "per_token": fv.token_table(r.top, fv.busiest(r.top)),
            "top_file": json_file(raw, f"features_top_{r.sae}")}  # fmt: skip


def on_token(raw: Any, evt: gr.EventData) -> dict[str, Any]:
    position = integer((getattr(evt, "_data", None) or {}).get("position", -1), "token position", -1, 10**6)
    if not isinstance(raw, dict) or "top" not in raw:
        return table([], fv.TOKEN_COLUMNS)
    return fv.token_table(TopFeatures.from_json(raw["top"]), position)


def pick_feature(value: Any, evt: gr.SelectData) -> Any:
    """A click on a row of a features table: that row's feature id (then its page opens)."""
    row = evt.index[0] if isinstance(evt.index, list | tuple) else evt.index
    feature = fv.feature_of_row(value, int(row))
    return gr.skip() if feature is None else feature


def page(inputs: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    """A feature's page (precomputed dashboards) and, when the text box has a text, the feature on it (JSON)."""
    handle, fsae = _model_sae(inputs)
    feature = integer(inputs["feature"], "feature", 0, 10**7)
    has_text = isinstance(inputs["text"], str) and inputs["text"].strip()
    value = _text(handle, inputs["text"]) if has_text else None
    return {"page_raw": summary.page_report(handle, fsae, feature, value).to_json()}


def draw_page(inputs: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    raw = inputs["page_raw"]
    if not raw:
        return {}
    r = summary.PageReport.from_json(raw)
    p, on_text = r.page, r.on_text and fv.on_text_strip(r.page.feature, r.on_text)
    return {"header": fv.page_header(p), "contexts": fv.contexts_strip(p), "hist": fv.histogram(p),
            "promoted": fv.lens_table(p.promoted, "promoted"), "suppressed": fv.lens_table(p.suppressed, "suppressed"),
            "on_text": on_text, "page_file": json_file(raw, f"feature_{p.sae}_{p.feature}"),
            "page_acc": gr.Accordion(open=True)}  # fmt: skip


# ---- jobs: eval, steer, attribute ------------------------------------------------------------------------------------
def run_eval(inputs: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    """`features eval` on a held-out set or the text above: EV, CE score (or why not), KL, L0, dead/dense."""
    source = choice(inputs["source"], "held-out set", EVAL_SOURCES)
    cfg = EvalConfig(max_tokens=integer(inputs["tokens"], "tokens", 256, APP_MAX_EVAL_TOKENS))
    handle, fsae = _model_sae(inputs)
    value = _text(handle, inputs["text"]) if source == THE_TEXT else None

    def work(report: jobs.Reporter) -> dict[str, Any]:
        on = ("text", [value]) if value is not None else (source, None)
        return summary.evaluate_on(handle, fsae, *on, cfg=cfg, progress=report).to_json()

    command = to_argv(cfg, sae=fsae.name, model=handle.identity.name, text=value,
                      heldout=None if value is not None else source)  # fmt: skip
    return {"eval_raw": _job(ctx, f"features eval ({fsae.name}, {source})", handle, work, command)}


def draw_eval(inputs: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    raw = inputs["eval_raw"]
    if not raw:
        return {}
    ev = SaeEval.from_json(raw)
    return {"eval_caption": fv.eval_caption(ev), "eval_table": fv.eval_table(ev),
            "eval_file": json_file(raw, f"features_eval_{ev.sae}_{ev.source}")}  # fmt: skip


def _steer_cfg(inputs: dict[str, Any]) -> fsteer.FeatureSteerConfig:
    mode = choice(inputs["mode"], "mode", fsteer.MODES)
    limit = MAX_ALPHA if mode == "add" else fsteer.MAX_CLAMP
    return fsteer.FeatureSteerConfig(integer(inputs["feature"], "feature", 0, 10**7),
                                     number(inputs["alpha"], "alpha", -limit, limit), mode,
                                     choice(inputs["position"], "position", ("last", "all")))  # fmt: skip


def run_steer(inputs: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    """Greedy continuations unsteered and steered by the feature, its effect and the cost (`features steer`)."""
    cfg = _steer_cfg(inputs)
    gen = GenConfig(integer(inputs["new_tokens"], "new tokens", 1, APP_MAX_NEW_TOKENS))
    prompt = text(inputs["prompt"], "prompt", APP_MAX_PROMPT)
    handle, fsae = _model_sae(inputs)
    fsae.check_feature(cfg.feature)

    def work(report: jobs.Reporter) -> dict[str, Any]:
        report(f"greedy generation, unsteered and steered ({gen.max_new_tokens} tokens each)", 0.05)
        return fsteer.steer(handle, fsae, prompt, cfg, gen, progress=report.stages(0.05, 1.0)).to_json()

    command = to_argv(
        cfg, sae=fsae.name, text=prompt, max_new_tokens=gen.max_new_tokens, model=handle.identity.name
    )
    return {"steer_raw": _job(ctx, f"steer by feature {cfg.feature}", handle, work, command)}


def draw_steer(inputs: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    raw = inputs["steer_raw"]
    if not raw:
        return {}
    plain, steered = sv.strips(fsteer.FeatureSteering.from_json(raw))  # shaded as in the Steering tab
    return {"steer_line": fv.steer_line(raw), "plain": plain, "steered": steered, "steer_table": fv.steer_table(raw),
            "steer_file": json_file(raw, f"features_steer_{raw['feature']}")}  # fmt: skip


def steer_vector(inputs: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    """The feature's vector as a steering vector file (mode add; the Steering tab's upload applies it)."""
    raw = inputs["steer_raw"]
    if not raw or raw.get("mode") != "add":
        return {"vector": None}
    handle, fsae = _model_sae(inputs)
    cfg = fsteer.FeatureSteerConfig(raw["feature"], raw["alpha"], "add", raw["position"])
    meta, tensors = fsteer.vector_file(handle, fsteer.feature_vector(handle, fsae, cfg.feature), cfg)
    return {"vector": sv.download_file(meta, vectors.to_bytes(meta, tensors))}


def run_attribute(inputs: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    """Which features drive the target token (activation × gradient), checked against real ablations."""
    prompt = text(inputs["prompt"], "prompt", APP_MAX_PROMPT)
    target = text(inputs["target"], "target token", 100)
    contrast = text(inputs["contrast"], "contrast token", 100, allow_empty=True) or None
    check = bool(inputs["check"])
    handle, fsae = _model_sae(inputs)
    metric = attr.metric_for(handle, target, contrast)

    def work(report: jobs.Reporter) -> dict[str, Any]:
        return summary.attribute_checked(
            handle, fsae, prompt, metric, 20, with_check=check, progress=report
        ).to_json()

    command = attribute_argv(prompt, target, sae=fsae.name, contrast=contrast, top=20, check=check,
                             model=handle.identity.name)  # fmt: skip
    return {"attr_raw": _job(ctx, "attribution to features", handle, work, command)}


def draw_attribute(inputs: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    raw = inputs["attr_raw"]
    if not raw:
        return {}
    line, tbl = fv.attribution_views(summary.CheckedAttribution.from_json(raw))
    return {"attr_line": line, "attr_table": tbl, "attr_file": json_file(raw, "features_attribution")}


# ---- layout --------------------------------------------------------------------------------------------------------
def _opens_page(tbl: Any, w: dict[str, Any], status: Any) -> None:
    """A click on a features table's row puts its feature id in the page's field, then opens the page."""
    picked = tbl.select(pick_feature, [tbl], [w["feature"]], **PRIVATE)
    out, event = {"page_raw": w["page_raw"]}, {**VIEW_EVENT, "show_progress_on": [status]}
    bind(picked.success, page, inputs=w["page_in"], outputs=out, api_visibility="private", **event)


def _top_section(ctx: AppContext, w: dict[str, Any], status: Any) -> None:
    gr.Markdown("### Top features of a text")
    w["text"] = gr.Textbox(label=f"Text (at most {APP_MAX_CHARS:,} characters)", value=DEFAULT_TEXT, lines=3)
    with gr.Row():
        w["k"] = ranged_number("features per token (k)", 1, APP_MAX_K, 5, integer=True)
        show = gr.Button("Show features", variant="primary", scale=0, min_width=160)
    w["summary"] = gr.Markdown()
    w["strip"] = TokenStrip(label="Tokens (shaded by their top feature)", elem_id="hs-features-strip")
    w["per_token"] = gr.Dataframe(value=table([], fv.TOKEN_COLUMNS), interactive=False,
                                  label="Top features of the clicked token (click a feature: its page)",
                                  elem_id="hs-features-per-token")  # fmt: skip
    w["top_raw"] = gr.JSON(visible=False)
    with gr.Accordion("top features: download", open=False):
        w["top_file"] = gr.File(label="Download top features (JSON)", interactive=False)
    section(show.click, top, draw_top, inputs=pick(w, "model", "sae", "text", "k"), outputs=pick(w, "top_raw"),
            views=pick(w, "summary", "strip", "per_token", "top_file"), on_change=w["top_raw"], api_name="features_top",
            show_progress_on=[status], **VIEW_EVENT)  # fmt: skip
    w["strip"].token(on_token, [w["top_raw"]], [w["per_token"]], api_visibility="private", **VIEW_EVENT)  # pyright: ignore[reportAttributeAccessIssue]
    ctx.selection.connect_tokens(w["strip"])


def _page_section(w: dict[str, Any], status: Any) -> None:
    with gr.Accordion("Feature page", open=False) as w["page_acc"]:
        with gr.Row():
            w["feature"] = gr.Number(value=0, precision=0, minimum=0, label="Feature", scale=0, min_width=140)
            open_btn = gr.Button("Open feature", variant="primary", scale=0, min_width=160)
        w["header"] = gr.Markdown()
        w["contexts"] = TokenStrip(label="Top-activating contexts", elem_id="hs-feature-contexts")
        with gr.Row():
            w["hist"] = Plot(label="Activation histogram")
            with gr.Column():
                w["promoted"] = gr.Dataframe(value=fv.lens_table((), "promoted"), interactive=False,
                                             label="Promoted tokens (logit lens of the decoder row)")  # fmt: skip
                w["suppressed"] = gr.Dataframe(value=fv.lens_table((), "suppressed"), interactive=False,
                                               label="Suppressed tokens")  # fmt: skip
        w["on_text"] = TokenStrip(label="This feature on the text above", elem_id="hs-feature-on-text")
        w["page_raw"] = gr.JSON(visible=False)
        w["page_file"] = gr.File(label="Download the feature page (JSON)", interactive=False)
    w["page_in"] = pick(w, "model", "sae", "feature", "text")
    views = pick(
        w, "header", "contexts", "hist", "promoted", "suppressed", "on_text", "page_file", "page_acc"
    )
    section(open_btn.click, page, draw_page, inputs=w["page_in"], outputs=pick(w, "page_raw"), views=views,
            on_change=w["page_raw"], api_name="features_page", show_progress_on=[status], **VIEW_EVENT)  # fmt: skip
    _opens_page(w["per_token"], w, status)


def _eval_section(w: dict[str, Any], controls: jobs.JobControls) -> None:
    with gr.Accordion("Judge the SAE on held-out text (features eval)", open=False):
        with gr.Row():
            w["source"] = gr.Radio(list(EVAL_SOURCES), value="wiki-test", label="Text",
                                   info="wiki-test: Wikipedia test split; chat: the model's answers to the shipped prompts")  # fmt: skip
            w["tokens"] = ranged_number("tokens at most", 256, APP_MAX_EVAL_TOKENS, 2048, integer=True)
            go = gr.Button("Evaluate", variant="primary", scale=0, min_width=140)
        w["eval_caption"] = gr.Markdown()
        w["eval_table"] = gr.Dataframe(value=table([], fv.EVAL_COLUMNS), interactive=False, label="Figures")
        w["eval_raw"] = gr.JSON(visible=False)
        w["eval_file"] = gr.File(label="Download the evaluation (JSON, as `features eval --json` prints it)",
                                 interactive=False)  # fmt: skip
    section(go.click, run_eval, draw_eval, inputs=pick(w, "model", "sae", "source", "tokens", "text"),
            outputs=pick(w, "eval_raw"), views=pick(w, "eval_caption", "eval_table", "eval_file"),
            on_change=w["eval_raw"], controls=controls, api_name="features_eval")  # fmt: skip


def _steer_section(w: dict[str, Any], controls: jobs.JobControls) -> None:
    with gr.Accordion("Steer by the feature above", open=False):
        with gr.Row():
            w["alpha"] = gr.Number(value=DEFAULT_ALPHA, label=f"α (add: × the activation norm at the SAE's hook, "
                                   f"|α| ≤ {MAX_ALPHA:g}, as in the Steering tab; clamp: the activation value)")  # fmt: skip
            w["mode"] = gr.Radio(list(fsteer.MODES), value="add", label="Mode")
            w["position"] = gr.Radio(["last", "all"], value="last", label="Positions")
            w["new_tokens"] = ranged_number("new tokens", 1, APP_MAX_NEW_TOKENS, 20, integer=True)
        w["prompt"] = gr.Textbox(label="Prompt", value="My favourite place to visit is", lines=1)
        go = gr.Button("Steer", variant="primary")
        w["steer_line"] = gr.Markdown()
        w["plain"] = TokenStrip(label="Unsteered", elem_id="hs-feature-unsteered")
        w["steered"] = TokenStrip(label="Steered", elem_id="hs-feature-steer")
        w["steer_table"] = gr.Dataframe(value=table([], [("m", "measure")]), interactive=False,
                                        label="Effect and cost")  # fmt: skip
        w["steer_raw"] = gr.JSON(visible=False)
        with gr.Accordion("steering: downloads", open=False):
            w["vector"] = gr.File(label="This feature as a steering vector file (Steering tab: upload)",
                                  interactive=False)  # fmt: skip
            w["steer_file"] = gr.File(label="Download the steering result (JSON)", interactive=False)
    section(go.click, run_steer, draw_steer,
            inputs=pick(w, "model", "sae", "feature", "alpha", "mode", "position", "prompt", "new_tokens"),
            outputs=pick(w, "steer_raw"), views=pick(w, "steer_line", "plain", "steered", "steer_table", "steer_file"),
            on_change=w["steer_raw"], controls=controls, api_name="features_steer")  # fmt: skip
    bind(w["steer_raw"].change, steer_vector, inputs=pick(w, "model", "sae", "steer_raw"),
         outputs=pick(w, "vector"), api_visibility="private", **VIEW_EVENT)  # fmt: skip


def _attribute_section(w: dict[str, Any], controls: jobs.JobControls) -> None:
    with gr.Accordion("Which features drive an output token", open=False):
        with gr.Row():
            w["a_prompt"] = gr.Textbox(label="Prompt", value="The Eiffel Tower is in the city of", scale=3)
            w["target"] = gr.Textbox(label="Target token", value=" Paris", scale=1)
            w["contrast"] = gr.Textbox(
                label="Contrast token (optional: logit difference)", value=" London", scale=1
            )
            w["check"] = gr.Checkbox(value=True, label="check against real ablations")
        go = gr.Button("Attribute", variant="primary")
        w["attr_line"] = gr.Markdown()
        w["attr_table"] = gr.Dataframe(value=table([], fv.ATTR_COLUMNS), interactive=False,
                                       label="Top features by attribution (click a feature: its page)",
                                       elem_id="hs-features-attribution")  # fmt: skip
        w["attr_raw"] = gr.JSON(visible=False)
        w["attr_file"] = gr.File(label="Download the attribution (JSON)", interactive=False)
    ins = {"model": w["model"], "sae": w["sae"], "prompt": w["a_prompt"], "target": w["target"],
           "contrast": w["contrast"], "check": w["check"]}  # fmt: skip
    section(go.click, run_attribute, draw_attribute, inputs=ins, outputs=pick(w, "attr_raw"),
            views=pick(w, "attr_line", "attr_table", "attr_file"), on_change=w["attr_raw"], controls=controls,
            api_name="features_attribute")  # fmt: skip
    _opens_page(w["attr_table"], w, controls.status)


@register_tab("Features", order=45)
def build(ctx: AppContext) -> None:
    examples.guide(
        "The model read through **sparse-autoencoder features** (SAELens format): which features fire on each "
        "token, what a feature means (its top contexts on held-out text and the tokens it promotes), how well the "
        "SAE stands in for the model on held-out text, and what happens when you push on a feature.",
        "Shading is the activation of a token's most active feature (position 0, the attention sink, is marked and "
        "left out of the colour range); hover a token for its top features, click it for the list, click a feature "
        "to open its page. Steering adds the feature's decoder direction at α × the typical activation norm at the "
        f"SAE's hook, as in the Steering tab (or clamps the feature). Texts up to {APP_MAX_TOKENS} tokens.",
        PAPERS,
    )
    example_slot = gr.Column()
    w: dict[str, Any] = {"model": ctx.model}
    first = list_saes({"model": ctx.model.value}, Ctx())
    with gr.Row():
        # Choices follow the model picker; any typed value is checked against the catalog on the server.
        w["sae"] = gr.Dropdown(choices=first["sae"]["choices"], value=first["sae"]["value"], label="SAE", scale=1,
                               allow_custom_value=True)  # fmt: skip
        refresh = gr.Button("Refresh SAE list", size="sm", scale=0, min_width=160)
    with gr.Accordion(
        "SAEs for this model (card figures on both held-out sets; position 0 excluded)", open=False
    ):
        w["cards"] = gr.Dataframe(value=first["cards"], interactive=False, label="click a header to sort")
    for trigger in (ctx.model.change, refresh.click):
        bind(trigger, list_saes, inputs={"model": ctx.model}, outputs={"sae": w["sae"], "cards": w["cards"]},
             api_visibility="private")  # fmt: skip
    controls = jobs.JobControls.build(SLOT)
    _top_section(ctx, w, controls.status)
    _page_section(w, controls.status)
    _eval_section(w, controls)
    _steer_section(w, controls)
    _attribute_section(w, controls)
    top_in = pick(w, "model", "sae", "text", "k")
    with example_slot:
        examples.worked_example(
            [[DEFAULT_SAE, DEFAULT_TEXT, 5], ["res6", "def add(a, b):\n    return a + b\n", 5]],
            [w["sae"], w["text"], w["k"]], handler(top, top_in, {"top_raw": w["top_raw"]}), list(top_in.values()),
            [w["top_raw"]],
            labels=["a Wikipedia sentence, layer 15", "a line of code, layer 6"], show_progress_on=[controls.status],
            **VIEW_EVENT,
        )  # fmt: skip
    keys = ("sae", "text", "k", "top_raw", "feature", "page_raw", "source", "tokens", "eval_raw", "alpha", "mode",
            "position", "new_tokens", "prompt", "steer_raw", "a_prompt", "target", "contrast", "attr_raw")  # fmt: skip
    ctx.session.add("features", **pick(w, *keys))
