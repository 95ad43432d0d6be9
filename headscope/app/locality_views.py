"""Views of the Attention & locality tab, drawn from the typed results `probes.EntropyView`, `probes.PatternView`
and `probes.SweepResult` (rebuilt with `from_json`): numbers in, view values out; no model, no array maths.

Colour scales are fixed by the text, not by the run: the entropy grid runs from 0 to the text's uniform ceiling
(the mean entropy of attention spread evenly over every earlier token), so runs at λ = 0 and λ = 0.6 on one text
are comparable by eye; the difference grid is centred on 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go

from headscope.app.figures import curves, fmt_num, table
from headscope.app.views import attention_value, grid_value, strip_row, strip_value
from headscope.attention import LocalityDial
from headscope.probes.sweep import SweepResult
from headscope.probes.view import EntropyView, PatternView

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


def scope_words(dial: LocalityDial) -> str:
    return "all heads" if dial.heads_text is None else f"heads {dial.heads_text}"


def dial_words(dial: LocalityDial) -> str:
    if dial.lam == 0:
        return "λ = 0 (the model as is)"
    sched = dial.schedule + (f", β = {dial.beta:g}" if dial.schedule == "progressive" else "")
    return f"λ = {dial.lam:g} ({dial.mode}, {sched}; {scope_words(dial)})"


def file_name(view: EntropyView) -> str:
    return f"entropy_{view.probes.model}_lambda{view.dial.lam:g}"


def entropy_grid(view: EntropyView, selected: Sequence[str]) -> dict[str, Any]:
    p = view.probes
    hover = (  # extra hover lines, where the result has them
        ("Δ vs λ = 0", "bits", view.delta_bits),
        ("pointer fidelity", "", p.pointer_fidelity),
        ("previous-token", "", p.previous_token_score),
        ("induction", "", p.induction_score),
    )
    extra = [{"label": label, "unit": unit, "z": z} for label, unit, z in hover if z is not None]
    ceiling = view.uniform_ceiling_bits
    return grid_value(
        p.entropy_bits, title=f"attention entropy per head at {dial_words(view.dial)}", unit="bits",
        zmin=0.0, zmax=ceiling, selected=list(selected), extra=extra, model=p.model,
        caption=f"colour: mean row entropy of each head, 0 … {ceiling:.2f} bits (uniform attention over every "
        "earlier token, this text's ceiling; the same scale at every λ). Click a cell to select its head; drag to "
        "select a box.", filename=f"entropy_lambda{view.dial.lam:g}",
    )  # fmt: skip


def delta_grid(view: EntropyView, selected: Sequence[str]) -> dict[str, Any]:
    delta = view.delta_bits
    if delta is None or view.baseline is None:
        return {"empty": "λ = 0: this is the baseline; set λ > 0 to see what the dial changes."}
    return grid_value(
        delta, title=f"entropy change vs λ = 0 at {dial_words(view.dial)}", unit="bits", scale="diverging",
        selected=list(selected), model=view.probes.model, extra=[{"label": "entropy at λ = 0", "unit": "bits",
        "z": view.baseline.entropy_bits}],
        caption="blue: the dial lowered the head's entropy (more focused); red: raised it; white: unchanged.",
        filename=f"entropy_change_lambda{view.dial.lam:g}",
    )  # fmt: skip


def token_strip(view: EntropyView, positions: Sequence[int]) -> dict[str, Any]:
    values, n_shown = view.token_entropy()
    p = view.probes
    if n_shown is None:
        over = f"all {p.entropy_bits.size} heads"
    else:
        over = f"the {n_shown} selected head{'s' if n_shown > 1 else ''}"
    n = p.n_tokens
    ceiling = math.log2(n) if n > 1 else 1.0
    row = strip_row(p.str_tokens, p.token_ids, values, label="query token")
    return strip_value(
        [row], label=f"mean attention entropy over {over}", unit="bits", vmin=0.0, vmax=ceiling,
        positions=positions, title="per-token entropy",
        caption=f"shade: how spread out each token's attention is (0 = on one token; {ceiling:.2f} bits = evenly "
        "over all earlier tokens of this text). Click tokens to select positions.",
        filename="token_entropy",
    )  # fmt: skip


def head_table(view: EntropyView, selected: set[str]) -> dict[str, Any]:
    """One row per head; the Δ column only under a dial (at λ = 0 it would be an empty column)."""
    cols = HEAD_COLUMNS if view.delta_bits is not None else [c for c in HEAD_COLUMNS if c[0] != "delta_bits"]
    return table(view.head_rows(selected), cols)


def summary(view: EntropyView) -> str:
    p, base = view.probes, view.baseline
    line = (
        f"**{p.model}**, {p.n_tokens} tokens: mean attention entropy **{fmt_num(p.mean_entropy_bits, 2)} bits** at "
        f"{dial_words(view.dial)}"
    )
    if base is not None:
        d = p.mean_entropy_bits - base.mean_entropy_bits
        line += f" — λ = 0 gives {fmt_num(base.mean_entropy_bits, 2)} bits (Δ {d:+.2f} bits)"
    return line + f"; uniform ceiling {view.uniform_ceiling_bits:.2f} bits."


def pattern(view: PatternView) -> dict[str, Any]:
    """The attention viewer's value: one matrix per head, labelled "L9 H4"."""
    pats = {f"L{a} H{b}": p for (a, b), p in zip(view.heads, view.patterns, strict=True)}
    dial = view.dial or LocalityDial()
    return attention_value(
        view.str_tokens, view.token_ids, pats, title=f"attention of {', '.join(pats)} at {dial_words(dial)}",
        caption=f"{view.model}, {len(view.token_ids)} tokens. Weights are softmax probabilities (each row sums to 1).",
        filename=f"attention_lambda{dial.lam:g}",
    )  # fmt: skip


def sweep_note(result: SweepResult) -> str:
    n, cut = result.n_tokens, result.truncated_from
    note = f"{n} tokens" + (f" (the text's first {n} of {cut})" if cut else "")
    return note + f", {result.dial.mode} mode, {result.dial.schedule} schedule, {scope_words(result.dial)}"


def sweep_figure(result: SweepResult) -> go.Figure:
    rows = result.rows
    return curves(
        [r.lam for r in rows],
        [
            ("mean attention entropy", "entropy (bits)", [r.mean_entropy_bits for r in rows]),
            ("pointer fidelity", "attention mass on target (0–1)", [r.pointer_fidelity for r in rows]),
            ("perplexity", "perplexity (exp of nats per token)", [r.perplexity for r in rows]),
            ("KL from λ = 0", "KL (nats per token)", [r.kl for r in rows]),
        ],
        x_label="λ (locality)", title=f"λ sweep — {sweep_note(result)}",
    )  # fmt: skip


def sweep_table(result: SweepResult) -> dict[str, Any]:
    return table([r.to_json() for r in result.rows], SWEEP_COLUMNS, digits=5)
