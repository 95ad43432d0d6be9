"""The Features tab's views: pure functions from the features capability's typed results (rebuilt from the JSON a
job or an endpoint returned) to token strips, figures, tables and summary lines. No model work here.

Position 0 (the attention sink) is left out of every colour range: its activations are one to two orders of
magnitude larger than any other position's, so a range including it would leave the rest of the strip blank. It
stays visible, marked, with its value in the hover.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go

from headscope.app.figures import fmt_num, table
from headscope.app.views import strip_row, strip_value, visible_token
from headscope.features.evaluate import SaeEval
from headscope.features.summary import CheckedAttribution, FeatureOnText, TextReport, attribution_rows
from headscope.features.views import FeaturePage, FiresOn, TopFeatures

POSITION_0_NOTE = "position 0 (marked) is the attention sink: left out of the colour range"
CARD_COLUMNS = [
    ("name", "SAE"), ("hook", "hook"), ("d_sae", "features"), ("architecture", "architecture"),
    ("explained_variance", "explained variance (wiki test)"), ("explained_variance_chat", "explained variance (chat)"),
    ("ce_loss_score", "CE loss score"), ("l0", "L0 (active / token)"), ("dead_fraction", "dead fraction"),
    ("tokens_seen", "training tokens"),
]  # fmt: skip
EVAL_COLUMNS = [("measure", "measure"), ("value", "value"), ("note", "what it means")]
FIRES_ON_COLUMN = ("fires_on", "fires on (its top held-out contexts)")
TOKEN_COLUMNS = [("rank", "rank"), ("feature", "feature (click: its page)"), ("activation", "activation")]
ATTR_COLUMNS = [("feature", "feature (click: its page)"), ("attribution", "expected drop"),
                ("ablation", "real drop when ablated"), ("activation", "Σ activation"), ("token", "strongest at token")]  # fmt: skip


def _range(values: Sequence[float]) -> tuple[float, float]:
    """The colour range of a strip's values past position 0 (0 … max, at least a little above 0)."""
    rest = [v for v in values[1:] if v is not None]
    return 0.0, max([*rest, 1e-6])


# ---- SAE list and top features -------------------------------------------------------------------------------------
def fires_on(reads: Sequence[FiresOn], feature: int, n: int = 5) -> str:
    """What the feature fires on in its top held-out contexts, e.g. "·art, ·sculpture, ·visual" ("" without
    dashboards)."""
    tokens = next((r.tokens for r in reads if r.feature == feature), ())
    return ", ".join(visible_token(t) for t in tokens[:n])


def _notes(top: TopFeatures) -> list[str]:
    def note(f: int, a: float) -> str:
        words = fires_on(top.fires_on, f, 3)
        return f"#{f} {a:.2f}" + (f" ({words})" if words else "")

    return ["\n".join(note(f, a) for f, a in row[:4]) or "no active feature" for row in top.top]


def top_strip(top: TopFeatures, sae: str) -> dict[str, Any]:
    first = [row[0][1] if row else 0.0 for row in top.top]
    lo, hi = _range(first)
    row = strip_row(top.tokens, top.token_ids, first, label="top feature", notes=_notes(top),
                    marks=[i == 0 for i in range(len(first))])  # fmt: skip
    return strip_value([row], label=f"activation of each token's most active feature ({sae})", vmin=lo, vmax=hi,
                       caption=f"Hover a token for its top features; click it to list them below. {POSITION_0_NOTE}.",
                       filename=f"top_features_{sae}")  # fmt: skip


def token_table(top: TopFeatures, position: int) -> dict[str, Any]:
    if not 0 <= position < len(top.top):
        return table([], TOKEN_COLUMNS)
    rows = [{"rank": r + 1, "feature": f, "activation": a, "fires_on": fires_on(top.fires_on, f)}
            for r, (f, a) in enumerate(top.top[position])]  # fmt: skip
    cols = [("rank", f"rank at token {position} {visible_token(top.tokens[position])!r}"), *TOKEN_COLUMNS[1:]]
    if top.fires_on:
        cols.append(FIRES_ON_COLUMN)
    return table(rows, cols)


def busiest(top: TopFeatures) -> int:
    """The position (≥ 1) whose top feature is the most active: the token table opens there."""
    acts = [row[0][1] if row else 0.0 for row in top.top]
    return max(range(1, len(acts)), key=lambda i: acts[i]) if len(acts) > 1 else 0


def top_summary(r: TextReport) -> str:
    top, rec = r.top, r.reconstruction
    return (
        f"**{r.sae}** at `{r.hook}` ({r.d_sae} features) on {len(top.tokens)} tokens: explained variance "
        f"{fmt_num(top.explained_variance)} (positions ≥ 1); next-token loss {fmt_num(rec.ce_loss_clean)} nats "
        f"clean, {fmt_num(rec.ce_loss_with_sae)} with the SAE spliced in (zero-ablated: "
        f"{fmt_num(rec.ce_loss_ablated)}); {fmt_num(rec.l0, 1)} features active per token."
    )


# ---- feature page ----------------------------------------------------------------------------------------------------
def page_header(page: FeaturePage) -> str:
    return (
        f"**Feature {page.feature}** of {page.sae} (`{page.hook}`): active on {100 * page.frequency:.3g}% of "
        f"{page.indexed_positions:,} held-out tokens, largest activation {fmt_num(page.max_activation)}."
    )


def contexts_strip(page: FeaturePage) -> dict[str, Any]:
    rows = [strip_row(c.tokens, [0] * len(c.tokens), c.activations, label=f"{c.activation:.2f}",
                      marks=[i == c.focus for i in range(len(c.tokens))]) for c in page.contexts]  # fmt: skip
    for row in rows:
        row.pop("ids")  # dashboard contexts carry token text; ids would be noise in the hover
    return strip_value(rows, label=f"activation of feature {page.feature}", vmin=0.0, vmax=page.max_activation or 1.0,
                       title=f"top contexts of feature {page.feature} (validation split; marked: the activating token)",
                       filename=f"feature_{page.sae}_{page.feature}_contexts")  # fmt: skip


def histogram(page: FeaturePage) -> go.Figure:
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


def on_text_strip(feature: int, t: FeatureOnText) -> dict[str, Any]:
    """The feature on the user's text; silent past position 0, it says so (no colour range of 0 … 1e-6)."""
    acts = t.activations
    silent = not any(v for v in acts[1:] if v)
    lo, hi = (0.0, 1.0) if silent else _range(acts)
    row = strip_row(t.tokens, t.token_ids, acts, label="your text", marks=[i == 0 for i in range(len(acts))])
    caption = f"{POSITION_0_NOTE}."
    if silent:
        caption = f"Feature {feature} is not active on this text past position 0; {caption}"
    return strip_value([row], label=f"feature {feature}", vmin=lo, vmax=hi, caption=caption,
                       filename=f"feature_{feature}_on_text")  # fmt: skip


# ---- features eval -----------------------------------------------------------------------------------------------------
def eval_caption(ev: SaeEval) -> str:
    cut = " (cut at the token limit)" if ev.truncated else ""
    return (
        f"**{ev.sae}** at `{ev.hook}` on **{ev.source}**: {ev.tokens:,} activation positions in {ev.sequences} "
        f"sequences{cut}, {ev.predictions:,} next-token predictions. Position 0: {ev.position_0}."
    )


def eval_table(ev: SaeEval) -> dict[str, Any]:
    score = ev.ce_loss_score
    rows = [
        ("explained variance", ev.explained_variance, "1 − Σ‖x − x̂‖² / Σ‖x − mean x‖² (1 = perfect)"),
        ("CE loss score", score if score is not None else "not meaningful",
         ev.ce_loss_score_note or "(CE_ablated − CE_SAE) / (CE_ablated − CE_clean) (1 = no loss)"),
        ("KL(clean ‖ SAE spliced) (nats)", ev.kl_div, "per next-token prediction"),
        ("CE clean / SAE / ablated (nats)",
         f"{fmt_num(ev.ce_loss_clean)} / {fmt_num(ev.ce_loss_with_sae)} / {fmt_num(ev.ce_loss_ablated)}",
         "next-token loss without, with the SAE spliced in, with the site zero-ablated"),
        ("L0 (active features per token)", ev.l0, ""),
        ("dead features (fraction)", ev.dead_fraction, "never active on this text"),
        ("dense features (fraction)", ev.dense_fraction, f"active on more than {ev.dense_threshold:g} of positions"),
    ]  # fmt: skip
    return table([{"measure": m, "value": v, "note": n} for m, v, n in rows], EVAL_COLUMNS)


# ---- steering ------------------------------------------------------------------------------------------------------------
def steer_table(payload: dict[str, Any]) -> dict[str, Any]:
    c = payload["cost"]
    measure = payload.get("effect_measure") or "downstream effect"
    rows = [
        {"m": f"effect: {measure}", "u": 0.0, "s": payload["effect"], "b": "the downstream effect (headline)"},
        {"m": "check: Δ the feature's own activation (steered positions)", "u": 0.0,
         "s": payload["check_activation_change"], "b": "> 0: the intervention happened (not an effect)"},
        {"m": "perplexity under the unsteered model", "u": c["perplexity_unsteered"], "s": c["perplexity_steered"],
         "b": f"steered ≤ {c['bounds']['max_perplexity_ratio']:g} × unsteered"},
        {"m": "distinct-token ratio", "u": c["distinct_unsteered"], "s": c["distinct_steered"],
         "b": f"≥ {c['bounds']['min_distinct_ratio']:g}"},
    ]  # fmt: skip
    return table(rows, [("m", "measure"), ("u", "unsteered"), ("s", "steered"), ("b", "bound")])


def steer_line(payload: dict[str, Any]) -> str:
    fluent = "within" if payload["cost"]["fluent"] else "outside"
    how = f"α = {payload['alpha']:g}" if payload["mode"] == "add" else f"clamped to {payload['alpha']:g}"
    return (
        f"Feature {payload['feature']} of {payload['sae']}, {how} ({payload['position']} positions): effect "
        f"{fmt_num(payload['effect'])} ({payload.get('effect_measure') or 'downstream'}); {fluent} steering's fluency bounds."
    )


# ---- attribution -------------------------------------------------------------------------------------------------------
def attribution_views(res: CheckedAttribution) -> tuple[str, dict[str, Any]]:
    rows = [{**vars(r), "token": f"{r.position} {visible_token(r.token)}", "fires_on": fires_on(res.fires_on, r.feature)}
            for r in attribution_rows(res)]  # fmt: skip
    cols = [ATTR_COLUMNS[0], ("attribution", f"expected drop of {res.metric}"), *ATTR_COLUMNS[2:]]
    if res.fires_on:
        cols.append(FIRES_ON_COLUMN)
    line = f"{res.metric} = {fmt_num(res.value)} on the clean run."
    if res.check:
        line += (f" Estimates vs real ablations: sign agreement {fmt_num(res.check.sign_agreement, 2)}, "
                 f"Spearman {fmt_num(res.check.spearman, 2)}.")  # fmt: skip
    return line, table(rows, cols)


def feature_of_row(value: Any, row: int) -> int | None:
    """The feature id in row `row` of a features table (a `table` value or a pandas frame), None if none."""
    data = value.get("data") if isinstance(value, dict) else getattr(value, "values", None)
    headers = value.get("headers") if isinstance(value, dict) else list(getattr(value, "columns", []))
    if data is None or not 0 <= row < len(data):
        return None
    col = next((i for i, h in enumerate(headers or []) if str(h).startswith("feature")), None)
    try:
        return None if col is None else int(data[row][col])
    except (TypeError, ValueError):
        return None
