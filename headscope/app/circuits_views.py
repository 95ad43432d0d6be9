"""What the Circuits tab shows, built from a typed `CircuitResult` (no tensors, no recomputation of metrics: ROC
points, faithfulness and stability come from `headscope.circuits`). Pure functions, tested without a browser."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

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


def score_grid(result: CircuitResult, method: str, selected: list[str]) -> dict[str, Any]:
    m = result.method(method)
    signed = method in ("attribution_patching", "eap_ig")
    unit = "estimated Δ logit diff" if signed else "count"
    return grid_value(
        m.scores, title=f"{METHOD_TITLES.get(method, method)} per layer × head", unit=unit,
        scale="diverging" if signed else "viridis", selected=selected, marks=marks(result), mark_names=MARK_NAMES,
        model=result.model.name, filename=f"circuit_{method}",
    )  # fmt: skip


def truth_grid(result: CircuitResult, selected: list[str]) -> dict[str, Any]:
    gt = result.ground_truth
    return grid_value(
        gt.effects, title=f"ground truth: activation patching effect ({gt.mode})", unit="Δ logit diff",
        scale="diverging", selected=selected, marks=marks(result), mark_names=MARK_NAMES, model=result.model.name,
        caption=f"ground truth = |effect| ≥ {gt.threshold_frac:g} × |clean − corrupted| = "
        f"{gt.threshold_frac * abs(gt.gap):.3f}", filename="circuit_ground_truth",
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
            "method": m.name, "auc": met.roc_auc, "precision": met.precision, "recall": met.recall,
            "spearman": met.spearman, "time": m.runtime_s,
        }  # fmt: skip
        curve = result.faithfulness.curve(m.name) if result.faithfulness else None
        if curve is not None:
            row |= {"cpr": curve.cpr, "cmd": curve.cmd, "k80": curve.k80}
        rows.append(row)
    cols = [("method", "method"), ("auc", "ROC-AUC"), ("precision", "precision@k"), ("recall", "recall@k"),
            ("spearman", "Spearman vs |effect|"), ("cpr", "CPR (↑)"), ("cmd", "CMD (↓)"),
            ("k80", "k for 80 % (heads)"), ("time", "time (s)")]  # fmt: skip
    return table(rows, cols)


def roc_figure(result: CircuitResult) -> go.Figure:
    """The ROC points the circuits package computed (never recomputed here)."""
    fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot"}, name="chance"))
    for name, met in result.metrics.items():
        fig.add_trace(
            go.Scatter(
                x=list(met.roc.fpr), y=list(met.roc.tpr), mode="lines", line_shape="hv",
                name=f"{METHOD_TITLES.get(name, name)} (AUC {fmt_num(met.roc_auc)})",
                hovertemplate="FPR %{x:.2f}, TPR %{y:.2f}<extra></extra>",
            )
        )  # fmt: skip
    n = len(result.ground_truth.heads)
    fig.update_layout(
        title={"text": f"ROC against the ground truth ({n} heads, {result.ground_truth.method})"},
        xaxis_title="false-positive rate (fraction of other heads)", yaxis_title="true-positive rate (fraction of ground truth)",
        height=420, legend={"orientation": "h", "y": -0.25},
    )  # fmt: skip
    return fig


def faithfulness_figure(result: CircuitResult) -> go.Figure:
    fig = go.Figure()
    f = result.faithfulness
    if f is None:
        fig.update_layout(title={"text": "faithfulness: not computed in this run"}, height=200)
        return fig
    for c in f.curves:
        x = [k / f.n_components for k in c.sizes]
        title = METHOD_TITLES.get(c.method, c.method)
        fig.add_trace(go.Scatter(x=x, y=list(c.kept), mode="lines+markers", name=f"{title}: top k kept",
                                 hovertemplate="k/N %{x:.2f}: f = %{y:.3f}<extra></extra>"))  # fmt: skip
        fig.add_trace(go.Scatter(x=x, y=list(c.removed), mode="lines", line={"dash": "dash"},
                                 name=f"{title}: top k ablated", hovertemplate="k/N %{x:.2f}: f = %{y:.3f}<extra></extra>"))  # fmt: skip
    fig.add_hline(y=0.8, line_dash="dot", line_color="#ff6d00")
    fig.update_layout(
        title={"text": f"faithfulness (mean ablation; m(N) = {f.full_metric:.2f}, m(∅) = {f.empty_metric:.2f})"},
        xaxis_title="circuit size k / N (fraction of analysed heads)",
        yaxis_title="f = (m(C) − m(∅)) / (m(N) − m(∅))", height=420, legend={"orientation": "h", "y": -0.25},
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
    ]
    if result.edges is not None:
        auc = result.edges.metrics["sae_edge"].roc_auc
        lines.append(f"Edges: SAE edge scores against the path-patching edge truth: ROC-AUC {fmt_num(auc)}.")
    lines += [f"\n⚠ {w}" for w in result.warnings]
    return "\n\n".join(lines)


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
