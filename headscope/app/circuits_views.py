"""What the Circuits tab shows, built from a typed `CircuitResult` (no tensors, no recomputation of metrics: ROC
points, faithfulness and stability come from `headscope.circuits`). Pure functions, tested without a browser."""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go

from headscope.app.circuits_edge_views import EDGE_TITLES, edge_warnings, gap_warning
from headscope.app.figures import fmt_num, table
from headscope.app.views import grid_value
from headscope.circuits.result import CircuitResult

CIRCUIT, TRUTH, BOTH = "●", "◆", "●◆"
MARK_NAMES = {CIRCUIT: "circuit head (SAE top k)", TRUTH: "ground-truth head", BOTH: "both"}
METHOD_TITLES = {
    "sae_node": "SAE node score",
    "sae_edge": "SAE edge score",
    "attribution_patching": "attribution patching",
    "eap_ig": "EAP-IG",
}


def marks(result: CircuitResult) -> dict[str, str]:
    circuit, truth = set(result.circuit.heads), set(result.ground_truth.heads)
    out = {h: CIRCUIT for h in circuit - truth} | {h: TRUTH for h in truth - circuit}
    return out | {h: BOTH for h in circuit & truth}


def analysed_only(result: CircuitResult, grid: Any) -> np.ndarray:
    """The grid with layers the run did not analyse as NaN: the head grid hatches them (never drawn as 0)."""
    out = np.array(grid, dtype=float)
    skipped = [la for la in range(out.shape[0]) if la not in set(result.ground_truth.layers)]
    out[skipped] = np.nan
    return out


def _skipped_caption(result: CircuitResult) -> str | None:
    rows, n = result.ground_truth.layers, result.model.n_layers
    if len(rows) == n:
        return None
    return f"layers {rows[0]}–{rows[-1]} analysed; the other {n - len(rows)} hatched (not analysed, not zero)"


def score_grid(result: CircuitResult, method: str, selected: list[str]) -> dict[str, Any]:
    m = result.method(method)
    signed = method in ("attribution_patching", "eap_ig")
    unit = "estimated Δ logit diff" if signed else "count"
    return grid_value(
        analysed_only(result, m.scores), title=f"{METHOD_TITLES.get(method, method)} per layer × head", unit=unit,
        scale="diverging" if signed else "viridis", selected=selected, marks=marks(result), mark_names=MARK_NAMES,
        model=result.model.name, filename=f"circuit_{method}", caption=_skipped_caption(result),
    )  # fmt: skip


def truth_grid(result: CircuitResult, selected: list[str]) -> dict[str, Any]:
    gt = result.ground_truth
    caption = f"ground truth = |effect| ≥ {gt.threshold_frac:g} × |clean − corrupted| = {gt.threshold_frac * abs(gt.gap):.3f}"
    skipped = _skipped_caption(result)
    return grid_value(
        analysed_only(result, gt.effects), title=f"ground truth: activation patching effect ({gt.mode})",
        unit="Δ logit diff", scale="diverging", selected=selected, marks=marks(result), mark_names=MARK_NAMES,
        model=result.model.name, caption=f"{caption}; {skipped}" if skipped else caption,
        filename="circuit_ground_truth",
    )  # fmt: skip


def head_table(result: CircuitResult) -> dict[str, Any]:
    """One row per analysed head, in the circuit's ranking: sortable by any column."""
    rank = {h: i + 1 for i, h in enumerate(result.circuit.ranked)}
    circuit, truth = set(result.circuit.heads), set(result.ground_truth.heads)
    rows = []
    for name in result.circuit.ranked:
        layer, head = (int(v) for v in name.split("."))
        row: dict[str, Any] = {
            "head": name, "rank": rank[name], "circuit": "yes" if name in circuit else "",
            "truth": "yes" if name in truth else "", "effect": float(result.ground_truth.effects[layer, head]),
        }  # fmt: skip
        row |= {m.name: float(m.scores[layer, head]) for m in result.methods}
        rows.append(row)
    cols = [("head", "head (L.H)"), ("rank", "rank (SAE)"), ("circuit", "in circuit"), ("truth", "ground truth"),
            ("effect", "patching effect (Δ logit diff)")]  # fmt: skip
    cols += [(m.name, METHOD_TITLES.get(m.name, m.name)) for m in result.methods]
    return table(rows, cols)


def metrics_table(result: CircuitResult) -> dict[str, Any]:
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
    cols = [("method", "method"), ("auc", "ROC-AUC"), ("auc_ci", "ROC-AUC 95 % CI"), ("precision", "precision@k"),
            ("recall", "recall@k"), ("spearman", "Spearman vs |effect|"), ("cpr", "CPR (↑)"), ("cpr_ci", "CPR 95 % CI"),
            ("cmd", "CMD (↓)"), ("cmd_ci", "CMD 95 % CI"), ("k80", "k for 80 % (heads)"), ("time", "time (s)")]  # fmt: skip
    return table(rows, cols)


def _roc_k(fpr: tuple[float, ...], tpr: tuple[float, ...], n_true: int, n_other: int) -> list[int]:
    """Heads above the threshold at each ROC point: TP + FP = TPR · P + FPR · N."""
    return [round(t * n_true + f * n_other) for f, t in zip(fpr, tpr, strict=True)]


def roc_figure(result: CircuitResult) -> go.Figure:
    """The ROC points the circuits package computed (never recomputed here); hovers name the method and k."""
    fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot"}, name="chance"))
    n_true = len(result.ground_truth.heads)
    n_other = len(result.ground_truth.layers) * result.model.n_heads - n_true
    for name, met in result.metrics.items():
        title = METHOD_TITLES.get(name, name)
        fig.add_trace(
            go.Scatter(
                x=list(met.roc.fpr), y=list(met.roc.tpr), mode="lines", line_shape="hv",
                name=f"{title} (AUC {fmt_num(met.roc_auc)}{ci_text(met.roc_auc_ci, ' ')})",
                customdata=_roc_k(met.roc.fpr, met.roc.tpr, n_true, n_other),
                hovertemplate=f"{title}, top k = %{{customdata}} heads: FPR %{{x:.2f}}, TPR %{{y:.2f}}<extra></extra>",
            )
        )  # fmt: skip
    fig.update_layout(
        title={"text": f"ROC against the ground truth ({n_true} heads, {result.ground_truth.method})"},
        xaxis_title="false-positive rate (fraction of other heads)", yaxis_title="true-positive rate (fraction of ground truth)",
        height=420, margin={"t": 60, "b": 60}, legend={"x": 1.02, "xanchor": "left", "y": 1.0},
    )  # fmt: skip
    return fig


def faithfulness_figure(result: CircuitResult) -> go.Figure:
    """Kept and ablated curves per method; the legend sits outside the plot (≥ 300 px of plot), hovers name the
    method and k."""
    fig = go.Figure()
    f = result.faithfulness
    if f is None:
        fig.update_layout(title={"text": "faithfulness: not computed in this run"}, height=200)
        return fig
    for c in f.curves:
        x = [k / f.n_components for k in c.sizes]
        title = METHOD_TITLES.get(c.method, c.method)
        for ys, dash, what in ((c.kept, "solid", "top k kept"), (c.removed, "dash", "top k ablated")):
            fig.add_trace(go.Scatter(
                x=x, y=list(ys), mode="lines+markers" if dash == "solid" else "lines", line={"dash": dash},
                name=f"{title}: {what}" + (f" (CPR {fmt_num(c.cpr, 2)})" if dash == "solid" else ""),
                customdata=list(c.sizes),
                hovertemplate=f"{title}, {what}: k = %{{customdata}} of {f.n_components} heads, f = %{{y:.3f}}<extra></extra>",
            ))  # fmt: skip
    fig.add_hline(y=0.8, line_dash="dot", line_color="#ff6d00")
    fig.update_layout(
        title={"text": f"faithfulness (mean ablation; m(N) = {f.full_metric:.2f}, m(∅) = {f.empty_metric:.2f})"},
        xaxis_title="circuit size k / N (fraction of analysed heads)",
        yaxis_title="f = (m(C) − m(∅)) / (m(N) − m(∅))", height=440, margin={"t": 60, "b": 70},
        legend={"x": 1.02, "xanchor": "left", "y": 1.0},
    )  # fmt: skip
    return fig


def stability_table(result: CircuitResult) -> dict[str, Any]:
    s = result.stability
    if s is None:
        return table([], [("method", "stability: not computed (tick the option)")])
    rows = [
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
    pct = f"{100 * s.confidence:.0f} %"
    cols = [("method", "method"), ("k", "top k"), ("jac", "Jaccard (mean)"), ("jac_lo", f"Jaccard {pct} low"),
            ("jac_hi", f"Jaccard {pct} high"), ("auc", "ROC-AUC (mean)"), ("auc_sd", "ROC-AUC (std)"),
            ("auc_lo", f"ROC-AUC {pct} low"), ("auc_hi", f"ROC-AUC {pct} high"), ("stable", "stable")]  # fmt: skip
    return table(rows, cols)


def edges_table(result: CircuitResult) -> dict[str, Any]:
    e = result.edges
    if e is None:
        return table([], [("edge", "edges: not computed (tick the option)")])
    rows = [
        {
            "edge": f"{x.sender} → {x.receiver}",
            "effect": x.effect,
            "truth": "yes" if x.in_truth else "",
            "drawn": x.drawn,
            "sae": x.sae_edge,
        }
        for x in sorted(e.edges, key=lambda x: -abs(x.effect))
    ]
    cols = [("edge", "sender → receiver (q, k, v)"), ("effect", "path-patching effect (Δ logit diff)"),
            ("truth", "edge ground truth"), ("drawn", "drawn from"), ("sae", "SAE pair score")]  # fmt: skip
    return table(rows, cols)


def summary(result: CircuitResult) -> str:
    p, gt = result.performance, result.ground_truth
    lines = [
        f"**{result.task.title}** on **{result.model.name}** — accuracy on positives {p.positive.accuracy:.2f}, "
        f"mean logit difference {p.positive.mean_logit_diff:.2f} (negatives {p.negative.mean_logit_diff:.2f}).",
        f"Ground truth: **{len(gt.heads)} heads** by {gt.method} ({gt.mode}, {gt.runtime_s:.1f} s) — the "
        f"reference the methods are scored against, never a scored method itself. Circuit "
        f"({result.circuit.rule}, {len(result.circuit.heads)} heads by {result.circuit.method}): "
        f"{', '.join(result.circuit.heads) or '—'}.",
        *agreement(result),
        *boundary_tie(result),
        *edge_lines(result),
    ]
    if result.edges is not None:
        auc = result.edges.metrics["sae_edge"].roc_auc
        lines.append(f"Path-patching edges: SAE edge scores against the edge truth: ROC-AUC {fmt_num(auc)}.")
    warnings = [*result.warnings, *small_gap_warning(result), *edge_warnings(result)]
    lines += [f"\n⚠ {w}" for w in warnings]
    return "\n\n".join(lines)


def agreement(result: CircuitResult) -> list[str]:
    """Which method agrees best with the ground truth (ties said as ties), and which are near chance: their
    ROC-AUC interval contains 0.5 (without an interval, none is judged)."""
    aucs = {m: met.roc_auc for m, met in result.metrics.items() if met.roc_auc is not None}
    if not aucs:
        return ["No method has a ROC-AUC (the ground truth is empty or holds every head)."]
    best = max(round(v, 3) for v in aucs.values())
    top = [METHOD_TITLES.get(m, m) for m, v in aucs.items() if round(v, 3) == best]
    if len(top) > 1:
        out = [
            f"Best agreement with the ground truth: a **tie** between {' and '.join(top)} (ROC-AUC {best:.3f})."
        ]
    else:
        m = next(m for m, v in aucs.items() if round(v, 3) == best)
        out = [f"Best agreement with the ground truth: **{top[0]}** (ROC-AUC {fmt_num(aucs[m])}"
               f"{ci_text(result.metrics[m].roc_auc_ci, ', 95 % CI ')})."]  # fmt: skip
    for m, met in result.metrics.items():
        ci = met.roc_auc_ci
        if met.roc_auc is not None and ci is not None and ci[0] <= 0.5 <= ci[1]:
            out.append(f"⚠ **{METHOD_TITLES.get(m, m)} is near chance**: ROC-AUC {fmt_num(met.roc_auc)}, its 95 % CI "
                       f"{ci_text(ci)} contains 0.5.")  # fmt: skip
    if result.intervals is None:
        out.append("(No bootstrap intervals in this report: near-chance methods are not judged.)")
    return out


def boundary_tie(result: CircuitResult) -> list[str]:
    """A top-k circuit whose last place ties with the next head: which of the tied heads made it is arbitrary."""
    c = result.circuit
    k = len(c.heads)
    if c.rule != "top_k" or not 0 < k < len(c.ranked):
        return []
    scores = result.method(c.method).scores
    value = {h: float(scores[int(h.split(".")[0]), int(h.split(".")[1])]) for h in c.ranked}
    cut = value[c.ranked[k - 1]]
    if value[c.ranked[k]] != cut:
        return []
    tied = [h for h in c.ranked if value[h] == cut]
    inside = [h for h in tied if h in set(c.heads)]
    return [f"Tie at the circuit's boundary: {len(tied)} heads share the score {fmt_num(cut)} ({', '.join(tied[:12])}"
            f"{', …' if len(tied) > 12 else ''}); {len(inside)} of them are in the top {k} by head order alone."]  # fmt: skip


def edge_lines(result: CircuitResult) -> list[str]:
    ea = result.edge_attribution
    f = ea.faithfulness if ea is not None else None
    if ea is None or f is None or not f.curves:
        return []
    parts = [f"{EDGE_TITLES.get(c.method, c.method)} CPR {fmt_num(c.cpr, 2)}{ci_text(c.cpr_ci, ' ')}, CMD "
             f"{fmt_num(c.cmd, 3)}{ci_text(c.cmd_ci, ' ')}" for c in f.curves]  # fmt: skip
    best = min(round(c.cmd, 3) for c in f.curves)
    top = [EDGE_TITLES.get(c.method, c.method) for c in f.curves if round(c.cmd, 3) == best]
    verdict = f"a tie between {' and '.join(top)}" if len(top) > 1 else f"**{top[0]}**"
    return [
        f"Edges ({ea.graph.n_edges:,} in MIB's graph): {'; '.join(parts)}. Most faithful (lowest CMD): {verdict}."
    ]


def small_gap_warning(result: CircuitResult) -> list[str]:
    f = result.faithfulness
    return [] if f is None else gap_warning("head", f.full_metric, f.empty_metric)


def ci_text(ci: tuple[float, float] | None, prefix: str = "") -> str:
    return f"{prefix}[{fmt_num(ci[0], 2)}, {fmt_num(ci[1], 2)}]" if ci else ""


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{int(seconds // 3600)} h {round(seconds % 3600 / 60)} min"


def ablation_line(res: dict[str, Any]) -> str:
    return (
        f"**{res['task']}**, heads {res['heads']} ({res['n_heads']}): clean metric {res['clean_metric']:.3f}; with the "
        f"selection ablated {res['selection_ablated']:.3f}; with only the selection kept {res['others_ablated']:.3f} "
        f"→ the selection recovers **{res['faithfulness']:.0%}** of the clean − all-ablated gap."
    )


def diff_table(diff: dict[str, Any] | None) -> dict[str, Any]:
    """A report comparison (`compare_reports`) as rows: one per metric and method, plus the head changes."""
    if not diff:
        return table([], [("what", "comparison: upload a second report")])
    rows: list[dict[str, Any]] = [
        {"what": "heads added to the circuit", "a": "", "b": ", ".join(diff["heads_added"]) or "—"},
        {"what": "heads removed from the circuit", "a": ", ".join(diff["heads_removed"]) or "—", "b": ""},
    ]
    for m, vals in diff["metrics"].items():
        for k, d in vals.items():
            rows.append({"what": f"{m}: {k}", "a": d["a"], "b": d["b"], "delta": d["delta"]})
    return table(rows, [("what", "what"), ("a", "report A"), ("b", "report B"), ("delta", "B − A")])


def ablation_table(res: dict[str, Any]) -> dict[str, Any]:
    """`circuits ablate`'s JSON as rows."""
    rows = [
        {"what": "clean (nothing ablated)", "metric": res["clean_metric"]},
        {"what": f"the selection ({res['heads']}) mean-ablated", "metric": res["selection_ablated"]},
        {"what": "every other head mean-ablated (the selection alone)", "metric": res["others_ablated"]},
        {"what": "every head mean-ablated", "metric": res["all_ablated"]},
    ]
    return table(rows, [("what", "run"), ("metric", "task metric (logit difference)")])
