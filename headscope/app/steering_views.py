"""The Steering tab's views: pure functions from the library's typed results (rebuilt from the job's JSON with
`Comparison.from_json` / `LofitResult.from_json`) to tables, token strips, a histogram and a head grid.

The table reads none / prompting / steering / steering + prompting (AxBench's rows), one numeric column per
measure (so a click on its header sorts) beside its 95 % bootstrap interval. No model work here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go

from headscope.app import downloads
from headscope.app.figures import fmt_num, table
from headscope.app.views import grid_value, strip_row, strip_value
from headscope.steering import vectors
from headscope.steering.comparison import Evaluation, SideBySide
from headscope.steering.contrastive import Comparison
from headscope.steering.lofit import LofitResult

# measure → column header with its unit (the legend of each is in the result's `evaluation.legend`)
HEADERS: dict[str, str] = {
    "margin_effect": "margin effect (nats / text)",
    "judged_positive": "judged positive (share)",
    "promoted_logprob_change": "Δ log p promoted tokens (nats)",
    "accuracy": "held-out accuracy (share)",
    "target_logprob": "target log p (nats)",
    "perplexity_ratio": "perplexity (× none)",
    "distinct_1": "distinct tokens (share)",
}
LEGEND = {
    "margin_effect": "the change, from the none row, of log p(positive texts) − log p(negative texts) "
    "after the prompt",
    "judged_positive": "share of continuations the unsteered model's own reading places nearer the positive "
    "texts (a weak judge: it reads topic and wording as much as tone)",
    "accuracy": "held-out items whose every target token is the argmax",
    "perplexity_ratio": "cost: perplexity of the continuation under the unsteered model, over the none row's",
    "distinct_1": "cost: distinct tokens / tokens (repetition lowers it)",
}


def conditions_table(ev: Evaluation) -> dict[str, Any]:
    """One row per condition: each measure's value (a number: sortable) and its 95 % interval."""
    present = [m for m in HEADERS if any(m in r.measures for r in ev.rows)]
    columns = [("condition", "condition")]
    for m in present:
        columns += [(m, HEADERS[m]), (f"{m}_ci", "95 % CI")]
    rows = []
    for r in ev.rows:
        row: dict[str, Any] = {"condition": r.condition}
        for m in present:
            iv = r.measures.get(m)
            row[m] = None if iv is None else iv.value
            row[f"{m}_ci"] = "" if iv is None else f"[{fmt_num(iv.low)}, {fmt_num(iv.high)}]"
        rows.append(row)
    return table(rows, columns)


def legend(ev: Evaluation) -> str:
    n = len(ev.prompts)
    over = f"{n} prompt{'s' if n > 1 else ''}" + (f", {ev.n_items} held-out items" if ev.n_items else "")
    if ev.n_positive:
        kind = "held out" if ev.held_out else "**in-sample** (the texts that built the vector)"
        over += f", {ev.n_positive} + {ev.n_negative} texts {kind}"
    shown = [f"*{HEADERS[m]}*: {text}" for m, text in LEGEND.items() if m in ev.legend]
    return f"95 % bootstrap intervals over {over} ({ev.resamples} resamples, seed {ev.seed}). " + "; ".join(
        shown
    )


def strips(res: SideBySide) -> tuple[dict[str, Any], dict[str, Any]]:
    """The first prompt, side by side: unsteered tokens shaded by their probability (0…1); steered tokens by
    p(steered) − p(unsteered) on a fixed −1…+1 scale."""
    plain, steered = res.unsteered, res.steered
    left = strip_value(
        [strip_row(plain.tokens, plain.token_ids, plain.probs, label="none")],
        label="p(token) under the unsteered model", vmin=0.0, vmax=1.0, scale="blues",
        caption=f"“{res.prompt}” unsteered; each token shaded by the probability the model gave it.",
        filename="unsteered",
    )  # fmt: skip
    changes = [t["change"] for t in res.tokens]
    right = strip_value(
        [strip_row(steered.tokens, steered.token_ids, changes, label="steering")],
        label="p(token | steered) − p(token | unsteered)", vmin=-1.0, vmax=1.0, scale="diverging",
        caption="Steered; red: steering made the token more likely, blue: less likely.", filename="steered",
    )  # fmt: skip
    return left, right


def continuations(ev: Evaluation) -> dict[str, Any]:
    rows = [
        {"prompt": p.prompt, "condition": c, "text": g.text, "ppl": p.values[c]["perplexity"]}
        for p in ev.prompts
        for c, g in p.continuations.items()
    ]
    return table(
        rows, [("prompt", "prompt"), ("condition", "condition"), ("text", "continuation"),
               ("ppl", "perplexity (unsteered model)")],
    )  # fmt: skip


def steer_summary(res: Comparison) -> str:
    where = f"heads `{res.heads}` (their outputs)" if res.heads else f"layer **{res.layer}**"
    ev, head = res.evaluation, ""
    if res.effect is not None:
        both = ev.row("steering").measures["margin_effect"]
        head = f"Margin effect **{res.effect:+.2f}** nats / text [{fmt_num(both.low)}, {fmt_num(both.high)}]"
        if "prompting" in ev.conditions:
            p = ev.row("prompting").measures["margin_effect"]
            head += f" vs prompting {p.value:+.2f} [{fmt_num(p.low)}, {fmt_num(p.high)}]"
        head += ". "
    said = ev.instruction.rstrip()
    end = "" if said[-1:] in ".!?" else "."
    instruction = f" Prompting: “{said}”{end}" if said else " No prompting rows (no instruction)."
    return (
        f"Steered at {where}: α = {res.alpha:g} × the activation norm there ({fmt_num(res.ref_norm, 2)}) adds a "
        f"vector of norm {fmt_num(res.added_norm, 2)}. {head}"
        f"Cost of the first prompt: perplexity ×{res.cost.perplexity_ratio:.2f}, distinct tokens "
        f"{res.cost.distinct_steered:.2f}.{instruction}"
    )


def lofit_summary(res: LofitResult) -> str:
    """The verdict first ("better than random heads (p = …)" only at p < 0.05), then what it rests on."""
    acc = res.evaluation.evaluation.row("steering").measures["accuracy"]
    line = (
        f"LoFiT heads `{res.heads}`: **{res.verdict}**. Held-out accuracy {acc.value:.3f} "
        f"[{fmt_num(acc.low)}, {fmt_num(acc.high)}] over {acc.n} items"
    )
    if res.chance is not None:
        c = res.chance
        line += f"; {c.random_sets} random sets of {c.k} heads: mean {c.random_mean:.3f}, percentile {c.percentile:g}"
    return (
        line
        + f". {res.trainable_parameters:,} trained parameters ({res.full_finetune_parameters:,} in the model)."
    )


def chance_histogram(res: LofitResult) -> go.Figure:
    """The random head sets' held-out accuracies, with the LoFiT selection marked."""
    c = res.chance
    fig = go.Figure()
    if c is None:
        return fig
    fig.add_trace(
        go.Histogram(x=list(c.random_accuracies), name=f"{c.random_sets} random head sets", nbinsx=20,
                     hovertemplate="accuracy %{x}<br>%{y} random sets<extra></extra>")
    )  # fmt: skip
    fig.add_vline(x=c.selected.value, line_color="crimson", line_width=3)
    fig.add_vrect(x0=c.selected.low, x1=c.selected.high, fillcolor="crimson", opacity=0.12, line_width=0)
    fig.add_annotation(x=c.selected.value, y=1, yref="paper", text=f"LoFiT heads (p = {c.p_value:.3g})",
                       showarrow=False, yanchor="bottom", font={"color": "crimson"})  # fmt: skip
    fig.update_layout(
        title=f"LoFiT against chance: held-out accuracy of {c.random_sets} random sets of {c.k} heads",
        xaxis_title="held-out accuracy (share of items)", yaxis_title="random head sets (count)", height=320,
        margin={"t": 60, "b": 50}, showlegend=False,
    )  # fmt: skip
    return fig


def lofit_grid(res: LofitResult, selected: Sequence[str], model: str | None) -> dict[str, Any]:
    return grid_value(
        res.importance_grid(), title="LoFiT step 1: ‖A‖ per head (● = tuned in step 2)", unit="‖A‖₂",
        marks={f"{h['layer']}.{h['head']}": "●" for h in res.selected_heads}, mark_names={"●": "LoFiT-selected head"},
        selected=list(selected), model=model, filename="lofit_heads",
    )  # fmt: skip


def download_file(meta: vectors.VectorMeta, blob: bytes) -> str:
    """A vector file for gr.File in the visitor's capped download folder (`downloads.folder`), named from the
    method, model and site (never from user text). Also the Features tab's feature-vector download."""
    path = downloads.folder("headscope-vectors-") / vectors.file_name(meta)
    path.write_bytes(blob)
    return str(path)
