"""What the Circuits tab shows, built from a typed `CircuitResult` (no tensors, no recomputation of metrics: ROC
points, faithfulness and stability come from `headscope.circuits`). Pure functions, tested without a browser."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from headscope.app.figures import fmt_num, table
from headscope.app.views import grid_value
from headscope.circuits import summary as cs
from headscope.circuits.config import SIGNED_METHODS
from headscope.circuits.report import comparison_rows
from headscope.circuits.result import CircuitResult
from headscope.circuits.variants_score import SCORE_UNITS

CIRCUIT, TRUTH, BOTH = "●", "◆", "●◆"
MARK_NAMES = {CIRCUIT: "circuit head (SAE top k)", TRUTH: "ground-truth head", BOTH: "both"}
MISSING = "not analysed"  # what a hatched cell's hover says
F_AXIS = "f = (m(C) − m(∅)) / (m(N) − m(∅))"  # the faithfulness of a circuit C (heads or edges)


def marks(result: CircuitResult) -> dict[str, str]:
    circuit, truth = set(result.circuit.heads), set(result.ground_truth.heads)
    out = {h: CIRCUIT for h in circuit - truth} | {h: TRUTH for h in truth - circuit}
    return out | {h: BOTH for h in circuit & truth}


def _grid(result: CircuitResult, grid: Any, caption: str | None, **kw: Any) -> dict[str, Any]:
    """A head grid whose unanalysed layers are hatched, their hover saying so (never drawn as 0)."""
    skipped = cs.skipped_caption(result)
    caption = "; ".join(c for c in (caption, skipped) if c) or None
    value = grid_value(cs.analysed(result, grid), marks=marks(result), mark_names=MARK_NAMES,
                       model=result.model.name, caption=caption, **kw)  # fmt: skip
    return value | {"missing": MISSING}


def score_unit(result: CircuitResult, method: str) -> str:
    """What a method's head scores are: attribution estimates a Δ logit diff; sae_edge counts a head's places
    among the top pairs; sae_node is its SAE variant's score (a report without `sae` ran the reference)."""
    if method in SIGNED_METHODS:
        return "estimated Δ logit diff"
    if method == "sae_node":
        score = (result.sae.config.get("score") if result.sae is not None else None) or "set_difference"
        return SCORE_UNITS.get(score, "score")
    return "count"


def score_grid(result: CircuitResult, method: str, selected: list[str]) -> dict[str, Any]:
    signed = method in SIGNED_METHODS
    return _grid(
        result, result.method(method).scores, None, title=f"{cs.title(method)} per layer × head",
        unit=score_unit(result, method), scale="diverging" if signed else "viridis",
        selected=selected, filename=f"circuit_{method}",
    )  # fmt: skip


def truth_grid(result: CircuitResult, selected: list[str]) -> dict[str, Any]:
    gt = result.ground_truth
    caption = f"ground truth = |effect| ≥ {gt.threshold_frac:g} × |clean − corrupted| = {gt.threshold_frac * abs(gt.gap):.3f}"
    return _grid(
        result, gt.effects, caption, title=f"ground truth: activation patching effect ({gt.mode})",
        unit="Δ logit diff", scale="diverging", selected=selected, filename="circuit_ground_truth",
    )  # fmt: skip


def head_table(result: CircuitResult) -> dict[str, Any]:
    """One row per analysed head, in the circuit's ranking: sortable by any column."""
    cols = [("head", "head (L.H)"), ("rank", "rank (SAE)"), ("circuit", "in circuit"), ("truth", "ground truth"),
            ("effect", "patching effect (Δ logit diff)")]  # fmt: skip
    return table(cs.head_rows(result), cols + [(m.name, cs.title(m.name)) for m in result.methods])


def metrics_table(result: CircuitResult) -> dict[str, Any]:
    cols = [("method", "method"), ("auc", "ROC-AUC"), ("auc_ci", "ROC-AUC 95 % CI"), ("precision", "precision@k"),
            ("recall", "recall@k"), ("spearman", "Spearman vs |effect|"), ("cpr", "CPR (↑)"), ("cpr_ci", "CPR 95 % CI"),
            ("cmd", "CMD (↓)"), ("cmd_ci", "CMD 95 % CI"), ("k80", "k for 80 % (heads)"), ("time", "time (s)")]  # fmt: skip
    return table(cs.metric_rows(result), cols)


def roc_figure(result: CircuitResult) -> go.Figure:
    """The ROC points the circuits package computed (never recomputed here), joined by straight lines: a group of
    tied heads moves FPR and TPR at once, and the diagonal is what its ROC-AUC counts (ties ½); a step would draw
    the ties' worst order. Hovers name the method and k."""
    fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot"}, name="chance"))
    for name, met in result.metrics.items():
        title = cs.title(name)
        fig.add_trace(
            go.Scatter(
                x=list(met.roc.fpr), y=list(met.roc.tpr), mode="lines+markers", line_shape="linear",
                name=f"{title} (AUC {fmt_num(met.roc_auc)}{cs.ci_text(met.roc_auc_ci, ' ')})",
                customdata=cs.roc_k(result, name),
                hovertemplate=f"{title}, top k = %{{customdata}} heads: FPR %{{x:.2f}}, TPR %{{y:.2f}}<extra></extra>",
            )
        )  # fmt: skip
    fig.update_layout(
        title={"text": f"ROC against the ground truth ({len(result.ground_truth.heads)} heads, {result.ground_truth.method})"},
        xaxis_title="false-positive rate (fraction of other heads)", yaxis_title="true-positive rate (fraction of ground truth)",
        height=420, margin={"t": 60, "b": 60}, legend={"x": 1.02, "xanchor": "left", "y": 1.0},
    )  # fmt: skip
    return fig


def curves_figure(
    what: str, how: str, f: Any, traces: list[go.Scatter], line: tuple, **layout: Any
) -> go.Figure:
    """Faithfulness curves of heads or edges (`f`, None when the run did not compute it, `how` they were ablated)
    with a dotted reference `line` (y, colour), the legend outside the plot (≥ 300 px of plot), m(N) and m(∅) in the title."""
    if f is None:
        return go.Figure(layout={"title": {"text": f"{what}: not computed in this run"}, "height": 200})
    fig = go.Figure(traces)
    fig.add_hline(y=line[0], line_color=line[1], line_dash="dot")
    fig.update_layout(
        title={"text": f"{what} ({how}; m(N) = {f.full_metric:.2f}, m(∅) = {f.empty_metric:.2f})"},
        yaxis_title=F_AXIS, height=440, legend={"x": 1.02, "xanchor": "left", "y": 1.0}, **layout,
    )  # fmt: skip
    return fig


def faithfulness_figure(result: CircuitResult) -> go.Figure:
    """Kept and ablated curves per method; hovers name the method and k."""
    f, traces = result.faithfulness, []
    for c in f.curves if f is not None else ():
        title = cs.title(c.method)
        for ys, dash, what in ((c.kept, "solid", "top k kept"), (c.removed, "dash", "top k ablated")):
            traces.append(go.Scatter(
                x=[k / f.n_components for k in c.sizes], y=list(ys), line={"dash": dash},
                mode="lines+markers" if dash == "solid" else "lines", customdata=list(c.sizes),
                name=f"{title}: {what}" + (f" (CPR {fmt_num(c.cpr, 2)})" if dash == "solid" else ""),
                hovertemplate=f"{title}, {what}: k = %{{customdata}} of {f.n_components} heads, f = %{{y:.3f}}<extra></extra>",
            ))  # fmt: skip
    layout = {"xaxis_title": "circuit size k / N (fraction of analysed heads)", "margin": {"t": 60, "b": 70}}
    return curves_figure("faithfulness", "mean ablation", f, traces, (0.8, "#ff6d00"), **layout)


def stability_table(result: CircuitResult) -> dict[str, Any]:
    s = result.stability
    if s is None:
        return table([], [("method", "stability: not computed (tick the option)")])
    pct = f"{100 * s.confidence:.0f} %"
    cols = [("method", "method"), ("k", "top k"), ("jac", "Jaccard (mean)"), ("jac_lo", f"Jaccard {pct} low"),
            ("jac_hi", f"Jaccard {pct} high"), ("auc", "ROC-AUC (mean)"), ("auc_sd", "ROC-AUC (std)"),
            ("auc_lo", f"ROC-AUC {pct} low"), ("auc_hi", f"ROC-AUC {pct} high"), ("stable", "stable")]  # fmt: skip
    return table(cs.stability_rows(s), cols)


def edges_table(result: CircuitResult) -> dict[str, Any]:
    if result.edges is None:
        return table([], [("edge", "edges: not computed (tick the option)")])
    cols = [("edge", "sender → receiver (q, k, v)"), ("effect", "path-patching effect (Δ logit diff)"),
            ("truth", "edge ground truth"), ("drawn", "drawn from"), ("sae", "SAE pair score")]  # fmt: skip
    return table(cs.path_edge_rows(result.edges), cols)


def summary(result: CircuitResult) -> str:
    return "\n\n".join(cs.summarize(result).text)


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
    return table(
        comparison_rows(diff), [("what", "what"), ("a", "report A"), ("b", "report B"), ("delta", "B − A")]
    )


def ablation_table(res: dict[str, Any]) -> dict[str, Any]:
    """`circuits ablate`'s JSON as rows."""
    rows = [
        {"what": "clean (nothing ablated)", "metric": res["clean_metric"]},
        {"what": f"the selection ({res['heads']}) mean-ablated", "metric": res["selection_ablated"]},
        {"what": "every other head mean-ablated (the selection alone)", "metric": res["others_ablated"]},
        {"what": "every head mean-ablated", "metric": res["all_ablated"]},
    ]
    return table(rows, [("what", "run"), ("metric", "task metric (logit difference)")])
