"""Views of the Localist models tab, drawn from the shipped sweep table (a JSON dict) and from
`localist.AttentionComparison` (rebuilt with `from_json`): numbers in, view values out; no model."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from headscope.app.figures import curves, fmt_num, table
from headscope.app.views import attention_value, grid_value
from headscope.localist.train_inspect import AttentionComparison, AttentionReading
from headscope.localist.train_ship import paper_comparison
from headscope.probes.view import uniform_ceiling_bits

TABLE_COLUMNS = (
    ("run", "run"), ("lambda", "λ"), ("schedule", "schedule"), ("beta", "β"), ("perplexity", "test perplexity"),
    ("accuracy", "next-token accuracy (share)"), ("mean_entropy_bits", "mean entropy (bits)"),
    ("pointer_fidelity", "pointer fidelity (mass)"), ("pointer_hit_rate", "pointer hit rate (share)"),
    ("seconds", "training time (s)"),
)  # fmt: skip


def rows_table(t: dict[str, Any] | None) -> dict[str, Any]:
    return table((t or {}).get("rows", []), TABLE_COLUMNS)


def paper_table(t: dict[str, Any] | None) -> dict[str, Any]:
    """Ours next to the paper's numbers, where both exist (`localist.train_ship.paper_comparison`)."""
    return table(
        paper_comparison(t), [("what", "quantity"), ("ours", "shipped runs"), ("paper", "paper (abstract)")]
    )


def sweep_figure(t: dict[str, Any] | None) -> go.Figure:
    aila = sorted((t or {}).get("aila", []), key=lambda r: r["lambda"])
    return curves(
        [r["lambda"] for r in aila],
        [
            ("mean attention entropy", "entropy (bits)", [r["mean_entropy_bits"] for r in aila]),
            ("test perplexity", "perplexity", [r["perplexity"] for r in aila]),
            ("pointer fidelity", "attention mass on target (0–1)", [r["pointer_fidelity"] for r in aila]),
        ],
        x_label="training λ", title="shipped 2-layer localist models: λ → entropy, perplexity, pointer fidelity",
    )  # fmt: skip


def label(reading: AttentionReading) -> str:
    return reading.model.removeprefix("localist-2l-").replace("lambda", "λ = ")


def summary(cmp: AttentionComparison) -> str:
    n = cmp.readings[0].n_tokens
    line = " · ".join(f"{label(r)}: {fmt_num(r.mean_entropy_bits, 2)} bits" for r in cmp.readings)
    return (
        f"Mean attention entropy on {n} tokens — {line} (uniform ceiling {uniform_ceiling_bits(n):.2f} bits)."
    )


def grids(cmp: AttentionComparison) -> tuple[dict[str, Any], dict[str, Any]]:
    """The chosen checkpoint's and the distributed model's entropy grids, on one colour scale (0 … the ceiling)."""
    ceiling = uniform_ceiling_bits(cmp.readings[0].n_tokens)
    out = [
        grid_value(
            r.entropy_bits.tolist(),
            title=f"{label(r)}: attention entropy per head",
            unit="bits",
            zmin=0.0,
            zmax=ceiling,
            model=r.model,
            marks={f"{cmp.layer}.{cmp.head}": "◆"},
            mark_names={"◆": "head shown below"},
            caption=f"0 … {ceiling:.2f} bits (this text's uniform ceiling), the same scale for both models.",
            filename=f"{r.model}_entropy",
        )
        for r in cmp.readings
    ]
    return out[0], out[-1]


def attention(cmp: AttentionComparison) -> dict[str, Any]:
    """The chosen head of each model side by side (the first model only if their tokens ever differed)."""
    pairs = list(zip(cmp.readings, cmp.head_patterns, strict=True))
    if not cmp.same_tokens:
        pairs = pairs[:1]
    first = cmp.readings[0]
    pats = {f"{label(r)} · L{cmp.layer} H{cmp.head}": p for r, p in pairs}
    return attention_value(
        first.str_tokens, first.token_ids, pats, title=f"layer {cmp.layer}, head {cmp.head}: localist vs distributed",
        caption="The localist model's head (left) keeps its attention near the diagonal; the distributed one spreads.",
        filename=f"localist_L{cmp.layer}H{cmp.head}",
    )  # fmt: skip
