"""Views of the Attention & locality tab, built from probe results (numbers in, view values out; no model).

Colour scales are fixed by the text, not by the run: the entropy grid runs from 0 to the text's uniform ceiling
(the mean entropy of attention spread evenly over every earlier token), so runs at λ = 0 and λ = 0.6 on one text
are comparable by eye; the difference grid is centred on 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from headscope.app.figures import curves, fmt_num, table
from headscope.app.views import grid_value, strip_row, strip_value
from headscope.probes import AttentionProbes
from headscope.selection import HeadSet

HEAD_COLUMNS = (
    ("layer", "layer"), ("head", "head"), ("entropy_bits", "entropy (bits)"), ("delta_bits", "Δ vs λ = 0 (bits)"),
    ("pointer_fidelity", "pointer fidelity (mass on target)"), ("previous_token_score", "previous-token (mass)"),
    ("induction_score", "induction (mass)"), ("mean_distance", "mean distance (tokens)"), ("selected", "selected"),
)  # fmt: skip
SWEEP_COLUMNS = (
    ("lambda", "λ"), ("mean_entropy_bits", "mean entropy (bits)"), ("pointer_fidelity", "pointer fidelity (mass)"),
    ("hit_rate", "hit rate (share)"), ("perplexity", "perplexity"), ("accuracy", "next-token accuracy (share)"),
    ("kl", "KL(λ=0 ‖ λ) (nats)"),
)  # fmt: skip


def ceiling_bits(n: int) -> float:
    """Mean over queries of log2(i + 1): the mean entropy of uniform causal attention over n tokens."""
    return float(np.log2(np.arange(1, n + 1, dtype=np.float64)).mean())


def dial_words(dial: dict[str, Any], scope: str) -> str:
    lam = float(dial["lambda"])
    if lam == 0:
        return "λ = 0 (the model as is)"
    sched = dial["schedule"] + (f", β = {dial['beta']:g}" if dial["schedule"] == "progressive" else "")
    return f"λ = {lam:g} ({dial['mode']}, {sched}; {scope})"


def entropy_grid(
    probes: AttentionProbes,
    base: AttentionProbes | None,
    dial: dict[str, Any],
    scope: str,
    selected: list[str],
) -> dict[str, Any]:
    means = probes.head_means()
    extra = []
    if base is not None:
        extra.append(
            {
                "label": "Δ vs λ = 0",
                "unit": "bits",
                "z": means["entropy_bits"] - base.head_means()["entropy_bits"],
            }
        )
    extra += [
        {"label": "pointer fidelity", "unit": "", "z": means["pointer_fidelity"]},
        {"label": "previous-token", "unit": "", "z": means["previous_token_score"]},
    ]
    if probes.induction is not None:
        extra.append({"label": "induction", "unit": "", "z": probes.induction})
    ceiling = ceiling_bits(len(probes.token_ids))
    return grid_value(
        means["entropy_bits"], title=f"attention entropy per head at {dial_words(dial, scope)}", unit="bits",
        zmin=0.0, zmax=ceiling, selected=selected, extra=extra, model=probes.model,
        caption=f"colour: mean row entropy of each head, 0 … {ceiling:.2f} bits (uniform attention over every "
        "earlier token, this text's ceiling; the same scale at every λ). Click a cell to select its head; drag to "
        "select a box.", filename=f"entropy_lambda{dial['lambda']:g}",
    )  # fmt: skip


def delta_grid(
    probes: AttentionProbes,
    base: AttentionProbes | None,
    dial: dict[str, Any],
    scope: str,
    selected: list[str],
) -> dict[str, Any]:
    if base is None:
        return {"empty": "λ = 0: this is the baseline; set λ > 0 to see what the dial changes."}
    delta = probes.head_means()["entropy_bits"] - base.head_means()["entropy_bits"]
    return grid_value(
        delta, title=f"entropy change vs λ = 0 at {dial_words(dial, scope)}", unit="bits", scale="diverging",
        selected=selected, model=probes.model, extra=[{"label": "entropy at λ = 0", "unit": "bits",
        "z": base.head_means()["entropy_bits"]}],
        caption="blue: the dial lowered the head's entropy (more focused); red: raised it; white: unchanged.",
        filename=f"entropy_change_lambda{dial['lambda']:g}",
    )  # fmt: skip


def token_strip(probes: AttentionProbes, heads: HeadSet | None, positions: Sequence[int]) -> dict[str, Any]:
    ent = probes.entropy_bits  # [layer, head, pos]
    if heads:
        per_token = np.stack([ent[layer, head] for layer, head in heads]).mean(0)
        over = f"the {len(heads)} selected head{'s' if len(heads) > 1 else ''}"
    else:
        per_token = ent.mean((0, 1))
        over = f"all {ent.shape[0] * ent.shape[1]} heads"
    n = len(probes.token_ids)
    ceiling = float(np.log2(n)) if n > 1 else 1.0
    row = strip_row(probes.str_tokens, probes.token_ids, per_token.tolist(), label="query token")
    return strip_value(
        [row], label=f"mean attention entropy over {over}", unit="bits", vmin=0.0, vmax=ceiling,
        positions=positions, title="per-token entropy",
        caption=f"shade: how spread out each token's attention is (0 = on one token; {ceiling:.2f} bits = evenly "
        "over all earlier tokens of this text). Click tokens to select positions.",
        filename="token_entropy",
    )  # fmt: skip


def head_rows(
    probes: AttentionProbes, base: AttentionProbes | None, selected: set[str]
) -> list[dict[str, Any]]:
    means = probes.head_means()
    delta = means["entropy_bits"] - base.head_means()["entropy_bits"] if base is not None else None
    rows = []
    n_l, n_h = means["entropy_bits"].shape
    for layer in range(n_l):
        for head in range(n_h):
            rows.append({
                "layer": layer, "head": head, "entropy_bits": means["entropy_bits"][layer, head],
                "delta_bits": None if delta is None else delta[layer, head],
                "pointer_fidelity": means["pointer_fidelity"][layer, head],
                "previous_token_score": means["previous_token_score"][layer, head],
                "induction_score": None if probes.induction is None else probes.induction[layer, head],
                "mean_distance": means["mean_distance"][layer, head],
                "selected": "✓" if f"{layer}.{head}" in selected else "",
            })  # fmt: skip
    return rows


def head_table(probes: AttentionProbes, base: AttentionProbes | None, selected: set[str]) -> dict[str, Any]:
    return table(head_rows(probes, base, selected), HEAD_COLUMNS)


def summary(probes: AttentionProbes, base: AttentionProbes | None, dial: dict[str, Any], scope: str) -> str:
    n = len(probes.token_ids)
    line = (
        f"**{probes.model}**, {n} tokens: mean attention entropy **{fmt_num(probes.mean_entropy_bits, 2)} bits** at "
        f"{dial_words(dial, scope)}"
    )
    if base is not None:
        d = probes.mean_entropy_bits - base.mean_entropy_bits
        line += f" — λ = 0 gives {fmt_num(base.mean_entropy_bits, 2)} bits (Δ {d:+.2f} bits)"
    return line + f"; uniform ceiling {ceiling_bits(n):.2f} bits."


def sweep_figure(rows: list[dict[str, Any]], note: str) -> go.Figure:
    lams = [r["lambda"] for r in rows]
    return curves(
        lams,
        [
            ("mean attention entropy", "entropy (bits)", [r["mean_entropy_bits"] for r in rows]),
            ("pointer fidelity", "attention mass on target (0–1)", [r["pointer_fidelity"] for r in rows]),
            ("perplexity", "perplexity (exp of nats per token)", [r["perplexity"] for r in rows]),
            ("KL from λ = 0", "KL (nats per token)", [r["kl"] for r in rows]),
        ],
        x_label="λ (locality)", title=f"λ sweep — {note}",
    )  # fmt: skip


def sweep_table(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return table(rows, SWEEP_COLUMNS, digits=5)


def rank_heads(grid: Any, k: int, *, lowest: bool, absolute: bool = False) -> list[tuple[int, int]]:
    """The k heads with the lowest (or highest |value|) cells of a `grid_value` — wiring over a shown result."""
    if not isinstance(grid, dict) or not grid.get("z"):
        return []
    z = np.array([[np.nan if v is None else v for v in row] for row in grid["z"]], dtype=np.float64)
    score = np.abs(z) if absolute else z
    flat = np.where(np.isnan(score), np.inf if lowest else -np.inf, score).ravel()
    order = np.argsort(flat, kind="stable") if lowest else np.argsort(-flat, kind="stable")
    n_h = z.shape[1]
    return [(int(i) // n_h, int(i) % n_h) for i in order[:k] if np.isfinite(flat[i])]
