"""What a report says to its reader, computed once from a `CircuitResult` so the app and the CLI say the same: which
method agrees best with the ground truth (ties said as ties), which are near chance (their ROC-AUC interval
contains 0.5), a tie at the circuit's boundary, the most faithful edge method, the |m(N) − m(∅)| < 10 % warnings,
score grids with unanalysed layers as None (never 0), the k behind each ROC point, and each table's rows. No
figures here: the app draws these values (app/circuits_views.py), `headscope circuits run --json` prints
`summarize(result).to_json()`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from headscope.circuits.result import CI, CircuitResult, Edges, Stability
from headscope.codec import JsonCodec

METHOD_TITLES = {
    "sae_node": "SAE node score",
    "sae_edge": "SAE edge score",
    "attribution_patching": "attribution patching",
    "eap_ig": "EAP-IG",
    "eap": "EAP",  # edge attribution (MIB's graph); its eap_ig is titled like the head method
}
GAP_FRACTION = (
    0.1  # faithfulness divides by |m(N) − m(∅)|: under this fraction of |m(N)| its curves are noise
)
ROUND = 3  # ROC-AUC and CMD are compared at 3 decimals: closer than that is a tie


def title(method: str) -> str:
    return METHOD_TITLES.get(method, method)


def num(x: float | None, digits: int = 3) -> str:
    """A number at fixed digits ("n/a" for None or NaN; scientific when it would print as 0)."""
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{x:.2e}" if x != 0 and abs(x) < 10**-digits else f"{x:.{digits}f}"


def ci_text(ci: CI | None, prefix: str = "") -> str:
    return f"{prefix}[{num(ci[0], 2)}, {num(ci[1], 2)}]" if ci else ""


@dataclass(frozen=True)
class Agreement(JsonCodec):
    """The methods with the highest ROC-AUC against the ground truth (more than one: a tie), the best's interval
    when it is alone, and the methods whose interval contains 0.5 (`judged` is False without intervals)."""

    best: tuple[str, ...]
    roc_auc: float | None
    roc_auc_ci: CI | None
    near_chance: tuple[str, ...]
    judged: bool


@dataclass(frozen=True)
class BoundaryTie(JsonCodec):
    """A top-k circuit whose last place ties with the next head: which of the tied heads made it is arbitrary."""

    score: float
    heads: tuple[str, ...]
    inside: int  # how many of `heads` are in the circuit (by head order alone)
    k: int


@dataclass(frozen=True)
class EdgeVerdict(JsonCodec):
    """The edge method(s) with the lowest CMD (more than one: a tie)."""

    n_edges: int
    most_faithful: tuple[str, ...]
    cmd: float


@dataclass(frozen=True)
class CircuitSummary(JsonCodec):
    agreement: Agreement
    boundary_tie: BoundaryTie | None
    edges: EdgeVerdict | None
    warnings: tuple[str, ...]  # the run's, then the small-gap warnings
    text: tuple[str, ...]  # the same as markdown paragraphs


def agreement(result: CircuitResult) -> Agreement:
    aucs = {m: met.roc_auc for m, met in result.metrics.items() if met.roc_auc is not None}
    near = tuple(
        m
        for m, met in result.metrics.items()
        if met.roc_auc is not None
        and met.roc_auc_ci is not None
        and met.roc_auc_ci[0] <= 0.5 <= met.roc_auc_ci[1]
    )
    judged = result.intervals is not None
    if not aucs:
        return Agreement((), None, None, near, judged)
    top = max(round(v, ROUND) for v in aucs.values())
    best = tuple(m for m, v in aucs.items() if round(v, ROUND) == top)
    alone = len(best) == 1
    return Agreement(
        best,
        aucs[best[0]] if alone else top,
        result.metrics[best[0]].roc_auc_ci if alone else None,
        near,
        judged,
    )


def boundary_tie(result: CircuitResult) -> BoundaryTie | None:
    c = result.circuit
    k = len(c.heads)
    if c.rule != "top_k" or not 0 < k < len(c.ranked):
        return None
    scores = result.method(c.method).scores
    value = {h: float(scores[int(h.split(".")[0]), int(h.split(".")[1])]) for h in c.ranked}
    cut = value[c.ranked[k - 1]]
    if value[c.ranked[k]] != cut:
        return None
    tied = tuple(h for h in c.ranked if value[h] == cut)
    return BoundaryTie(cut, tied, len(set(tied) & set(c.heads)), k)


def edge_verdict(result: CircuitResult) -> EdgeVerdict | None:
    ea = result.edge_attribution
    f = ea.faithfulness if ea is not None else None
    if ea is None or f is None or not f.curves:
        return None
    low = min(round(c.cmd, ROUND) for c in f.curves)
    return EdgeVerdict(ea.graph.n_edges, tuple(c.method for c in f.curves if round(c.cmd, ROUND) == low), low)


def gap_warning(level: str, full: float, empty: float) -> str | None:
    if abs(full - empty) >= GAP_FRACTION * abs(full):
        return None
    return (
        f"{level} faithfulness divides by |m(N) − m(∅)| = {abs(full - empty):.3g}, under 10 % of |m(N)| = "
        f"{abs(full):.3g}: its curves (and CPR/CMD) are mostly noise here."
    )


def gap_warnings(result: CircuitResult) -> list[str]:
    """The small-gap warning of the head curves, then of the edge curves (each only where computed)."""
    ea = result.edge_attribution
    faiths = (("head", result.faithfulness), ("edge", ea.faithfulness if ea is not None else None))
    found = (gap_warning(level, f.full_metric, f.empty_metric) for level, f in faiths if f is not None)
    return [w for w in found if w]


def agreement_text(a: Agreement) -> list[str]:
    if not a.best:
        return ["No method has a ROC-AUC (the ground truth is empty or holds every head)."]
    names = [title(m) for m in a.best]
    if len(names) > 1:
        out = [
            f"Best agreement with the ground truth: a **tie** between {' and '.join(names)} (ROC-AUC {a.roc_auc:.3f})."
        ]
    else:
        out = [f"Best agreement with the ground truth: **{names[0]}** (ROC-AUC {num(a.roc_auc)}"
               f"{ci_text(a.roc_auc_ci, ', 95 % CI ')})."]  # fmt: skip
    return out


def near_chance_text(result: CircuitResult, a: Agreement) -> list[str]:
    out = [
        f"⚠ **{title(m)} is near chance**: ROC-AUC {num(result.metrics[m].roc_auc)}, its 95 % CI "
        f"{ci_text(result.metrics[m].roc_auc_ci)} contains 0.5."
        for m in a.near_chance
    ]
    return (
        out
        if a.judged
        else [*out, "(No bootstrap intervals in this report: near-chance methods are not judged.)"]
    )


def agreement_lines(result: CircuitResult) -> list[str]:
    a = agreement(result)
    return [*agreement_text(a), *near_chance_text(result, a)]


def _tie_text(t: BoundaryTie) -> str:
    shown = ", ".join(t.heads[:12]) + (", …" if len(t.heads) > 12 else "")
    return (
        f"Tie at the circuit's boundary: {len(t.heads)} heads share the score {num(t.score)} ({shown}); "
        f"{t.inside} of them {'is' if t.inside == 1 else 'are'} in the top {t.k} by head order alone."
    )


def undefined_spearman_text(result: CircuitResult) -> list[str]:
    """The methods whose Spearman against |patching effect| is undefined (None: the methods table leaves the cell
    blank), and why: every analysed head has the same score, or the same effect (a rank correlation needs two
    distinct values on each side)."""
    names = [title(m.name) for m in result.methods if result.metrics[m.name].spearman is None]
    if not names:
        return []
    gt = result.ground_truth
    if len({abs(float(v)) for layer in gt.layers for v in gt.effects[layer]}) == 1:
        why = "every analysed head has the same patching effect"
    else:
        why = "every analysed head has the same score (a tie across the board)"
    return [f"Spearman vs |effect| is undefined for {', '.join(names)}: {why}; its cell is left blank."]


def _edge_text(result: CircuitResult, v: EdgeVerdict) -> str:
    ea = result.edge_attribution
    assert ea is not None and ea.faithfulness is not None  # an EdgeVerdict has both
    parts = [f"{title(c.method)} CPR {num(c.cpr, 2)}{ci_text(c.cpr_ci, ' ')}, CMD {num(c.cmd, 3)}"
             f"{ci_text(c.cmd_ci, ' ')}" for c in ea.faithfulness.curves]  # fmt: skip
    names = [title(m) for m in v.most_faithful]
    verdict = f"a tie between {' and '.join(names)}" if len(names) > 1 else f"**{names[0]}**"
    return f"Edges ({v.n_edges:,} in MIB's graph): {'; '.join(parts)}. Most faithful (lowest CMD): {verdict}."


def summarize(result: CircuitResult) -> CircuitSummary:
    p, gt, c = result.performance, result.ground_truth, result.circuit
    a, tie, edges = agreement(result), boundary_tie(result), edge_verdict(result)
    text = [
        f"**{result.task.title}** on **{result.model.name}** — accuracy on positives {p.positive.accuracy:.2f}, "
        f"mean logit difference {p.positive.mean_logit_diff:.2f} (negatives {p.negative.mean_logit_diff:.2f}).",
        f"Ground truth: **{len(gt.heads)} heads** by {gt.method} ({gt.mode}, {gt.runtime_s:.1f} s) — the "
        f"reference the methods are scored against, never a scored method itself. Circuit ({c.rule}, "
        f"{len(c.heads)} heads by {c.method}): {', '.join(c.heads) or '—'}.",
        *agreement_text(a),
        *near_chance_text(result, a),
        *([_tie_text(tie)] if tie else []),
        *undefined_spearman_text(result),
        *([_edge_text(result, edges)] if edges else []),
    ]
    if result.edges is not None:
        auc = result.edges.metrics["sae_edge"].roc_auc
        text.append(f"Path-patching edges: SAE edge scores against the edge truth: ROC-AUC {num(auc)}.")
    warnings = (*result.warnings, *gap_warnings(result))
    text += [f"\n⚠ {w}" for w in warnings]
    return CircuitSummary(a, tie, edges, warnings, tuple(text))


# ---- what the views draw -----------------------------------------------------------------------------------------
def analysed(result: CircuitResult, grid: Any) -> list[list[float | None]]:
    """The grid as nested lists with the layers the run did not analyse as None: hatched, never drawn as 0."""
    keep = set(result.ground_truth.layers)
    return [[float(v) if la in keep else None for v in row] for la, row in enumerate(grid)]


def skipped_caption(result: CircuitResult) -> str | None:
    rows, n = result.ground_truth.layers, result.model.n_layers
    if len(rows) == n:
        return None
    return f"layers {rows[0]}–{rows[-1]} analysed; the other {n - len(rows)} hatched (not analysed, not zero)"


def roc_k(result: CircuitResult, method: str) -> list[int]:
    """Heads above the threshold at each of the method's ROC points: TP + FP = TPR · P + FPR · N."""
    n_true = len(result.ground_truth.heads)
    n_other = len(result.ground_truth.layers) * result.model.n_heads - n_true
    roc = result.metrics[method].roc
    return [round(t * n_true + f * n_other) for f, t in zip(roc.fpr, roc.tpr, strict=True)]


def head_rows(result: CircuitResult) -> list[dict[str, Any]]:
    """One row per analysed head, in the circuit's ranking."""
    circuit, truth = set(result.circuit.heads), set(result.ground_truth.heads)
    rows = []
    for rank, name in enumerate(result.circuit.ranked, 1):
        layer, head = (int(v) for v in name.split("."))
        row: dict[str, Any] = {
            "head": name, "rank": rank, "circuit": "yes" if name in circuit else "",
            "truth": "yes" if name in truth else "", "effect": float(result.ground_truth.effects[layer, head]),
        }  # fmt: skip
        rows.append(row | {m.name: float(m.scores[layer, head]) for m in result.methods})
    return rows


def metric_rows(result: CircuitResult) -> list[dict[str, Any]]:
    rows = []
    for m in result.methods:
        met = result.metrics[m.name]
        row: dict[str, Any] = {
            "method": m.name, "auc": met.roc_auc, "auc_ci": ci_text(met.roc_auc_ci), "precision": met.precision,
            "recall": met.recall, "spearman": met.spearman, "time": m.runtime_s,
        }  # fmt: skip
        curve = result.faithfulness.curve(m.name) if result.faithfulness else None
        if curve is not None:
            row |= {"cpr": curve.cpr, "cpr_ci": ci_text(curve.cpr_ci), "cmd": curve.cmd, "cmd_ci": ci_text(curve.cmd_ci),
                    "k80": curve.k80}  # fmt: skip
        rows.append(row)
    return rows


def stability_rows(s: Stability) -> list[dict[str, Any]]:
    return [
        {
            "method": m.method,
            "k": m.k,
            "jac": m.jaccard_mean,
            "jac_lo": m.jaccard_ci[0],
            "jac_hi": m.jaccard_ci[1],
            "auc": m.roc_auc_mean,
            "auc_sd": m.roc_auc_std,
            "auc_lo": m.roc_auc_ci[0] if m.roc_auc_ci else None,
            "auc_hi": m.roc_auc_ci[1] if m.roc_auc_ci else None,
            "stable": "yes" if m.stable else "NO",
        }
        for m in s.methods
    ]


def path_edge_rows(e: Edges) -> list[dict[str, Any]]:
    """The path-patching edges, strongest |effect| first."""
    return [
        {"edge": f"{x.sender} → {x.receiver}", "effect": x.effect, "truth": "yes" if x.in_truth else "",
         "drawn": x.drawn, "sae": x.sae_edge}
        for x in sorted(e.edges, key=lambda x: -abs(x.effect))
    ]  # fmt: skip


def edge_method_rows(result: CircuitResult) -> list[dict[str, Any]]:
    """One row per edge-attribution method: its runtime and MIB's CPR / CMD with their intervals."""
    ea = result.edge_attribution
    if ea is None:
        return []
    rows = []
    for name, m in ea.methods.items():
        c = ea.faithfulness.curve(name) if ea.faithfulness is not None else None
        row: dict[str, Any] = {"method": title(name), "time": m.runtime_s}
        if c is not None:
            row |= {"cpr": c.cpr, "cpr_ci": ci_text(c.cpr_ci), "cmd": c.cmd, "cmd_ci": ci_text(c.cmd_ci)}
        rows.append(row)
    return rows


def default_percent(n_edges: int, at_least: int = 30, floor: float = 0.5) -> float:
    """An edge circuit's first size: `floor` % (as graph exports), or the first of MIB's sizes that keeps
    `at_least` edges of a small model's graph (0.5 % of 110 edges is none)."""
    for p in (floor, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0):
        if p >= floor and p / 100 * n_edges >= at_least:
            return p
    return 100.0
