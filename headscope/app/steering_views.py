"""The steering tab's views, built from the library's results: token strips (p under the unsteered model; the
change p(steered) − p(unsteered) on a fixed −1…+1 diverging scale), the effect-and-cost table, the one-line
summary, the LoFiT head grid and accuracy table, and vector-file downloads. No model work here."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from headscope.app import selection_bar as sel
from headscope.app.figures import fmt_num, table
from headscope.app.views import grid_value, strip_row, strip_value
from headscope.errors import InputError
from headscope.models import ModelHandle
from headscope.steering import vectors
from headscope.steering.cost import MAX_PERPLEXITY_RATIO, MIN_DISTINCT_RATIO, Cost, token_strip
from headscope.steering.generate import Generation
from headscope.steering.lofit import LofitResult

COST_HEADERS = ("measure", "unsteered", "steered", "bound")
SWEEP_COLUMNS = [("alpha", "α"), ("change", "Δ logit diff (logits)"), ("perplexity_ratio", "perplexity ratio"),
                 ("distinct_steered", "distinct ratio"), ("fluent", "fluent"), ("text", "steered text")]  # fmt: skip
LOFIT_COLUMNS = [("w", "held-out"), ("accuracy", "accuracy (exact match)"),
                 ("mean_target_logprob", "mean target log-prob (nats)")]  # fmt: skip


def strips(plain: Generation, steered: Generation, cost: Cost) -> tuple[dict[str, Any], dict[str, Any]]:
    """Unsteered tokens shaded by their probability (0…1); steered tokens by p(steered) − p(unsteered) (−1…+1)."""
    left = strip_value(
        [strip_row(plain.tokens, plain.token_ids, plain.probs, label="unsteered")],
        label="p(token) under the unsteered model", vmin=0.0, vmax=1.0, scale="blues",
        caption="Each token shaded by the probability the unsteered model gave it.", filename="unsteered",
    )  # fmt: skip
    changes = [t["change"] for t in token_strip(steered, cost)]
    right = strip_value(
        [strip_row(steered.tokens, steered.token_ids, changes, label="steered")],
        label="p(token | steered) − p(token | unsteered)", vmin=-1.0, vmax=1.0, scale="diverging",
        caption="Red: steering made the token more likely; blue: less likely.", filename="steered",
    )  # fmt: skip
    return left, right


def cost_table(effect: float | None, cost: Cost) -> dict[str, Any]:
    c = cost.to_json()
    rows = [
        {"m": "perplexity under the unsteered model", "u": c["perplexity_unsteered"],
         "s": c["perplexity_steered"], "b": f"steered ≤ {MAX_PERPLEXITY_RATIO:g} × unsteered"},
        {"m": "distinct-token ratio", "u": c["distinct_unsteered"], "s": c["distinct_steered"],
         "b": f"≥ {MIN_DISTINCT_RATIO:g}"},
    ]  # fmt: skip
    if effect is not None:
        rows.insert(0, {"m": "effect: Δ[log p(positives) − log p(negatives)] (nats per text)", "u": 0.0,
                        "s": effect, "b": "> 0 moves the target"})  # fmt: skip
    return table(rows, list(zip(("m", "u", "s", "b"), COST_HEADERS, strict=True)))


def summary(js: dict[str, Any], cost: Cost) -> str:
    where = f"heads **{js['heads']}** (their outputs, hook_z)" if js["heads"] else f"layer **{js['layer']}**"
    effect = "" if js["effect"] is None else f"effect **{js['effect']:+.2f}** nats per text; "
    verdict = (
        "fluent (within the bounds)" if cost.fluent
        else "**degenerate**: over the bounds (perplexity ratio ≤ 2, distinct ≥ 0.5) — lower α"
    )  # fmt: skip
    return (
        f"Steered at {where}, α = {js['alpha']:g} × the activation norm {fmt_num(js['ref_norm'], 1)} "
        f"(the raw difference is α = {fmt_num(js['natural_alpha'])}). {effect}cost: perplexity "
        f"×{cost.perplexity_ratio:.2f}, distinct tokens {cost.distinct_steered:.2f}: {verdict}."
    )


def download_file(meta: vectors.VectorMeta, blob: bytes) -> str:
    """A temporary file for gr.File, named from the method, model and site (never from user text)."""
    path = Path(tempfile.mkdtemp(prefix="headscope-vectors-")) / vectors.file_name(meta)
    path.write_bytes(blob)
    return str(path)


def lofit_grid(res: LofitResult, selection: Any, handle: ModelHandle) -> dict[str, Any]:
    n_l, n_h = res.shape
    z = [[0.0] * n_h for _ in range(n_l)]
    for (layer, head), importance in res.head_ranking:
        z[layer][head] = importance
    try:
        chosen = sel.head_set(selection, handle)
    except InputError:  # a selection made on another model: nothing to outline here
        chosen = None
    return grid_value(
        z, title="LoFiT step 1: ‖A‖ per head (● = tuned in step 2)", unit="‖A‖₂",
        marks={f"{a}.{b}": "●" for a, b in res.offsets.heads}, mark_names={"●": "LoFiT-selected head"},
        selected=chosen.names() if chosen else [], model=handle.identity.name, filename="lofit_heads",
    )  # fmt: skip


def lofit_table(js: dict[str, Any]) -> dict[str, Any]:
    chance = js.get("chance")
    rows = [
        {"w": "before (no offsets)", **js["heldout_before"]},
        {"w": f"LoFiT heads {js['heads']}", **js["heldout_after"]},
        {"w": f"as many random heads, mean of {chance['random_sets']} sets", "accuracy": chance["random_mean"],
         "mean_target_logprob": None} if chance else None,
    ]  # fmt: skip
    return table([x for x in rows if x], LOFIT_COLUMNS)


def summary_cost(cost: Cost) -> str:
    state = "fluent" if cost.fluent else "**degenerate** (over the bounds)"
    return f"Cost: perplexity ×{cost.perplexity_ratio:.2f}, distinct tokens {cost.distinct_steered:.2f}: {state}."
