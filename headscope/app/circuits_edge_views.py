"""What the Circuits tab shows of edge attribution (EAP / EAP-IG over MIB's whole model graph), built from a typed
`CircuitResult`: the chosen method's circuit as a graph, MIB's edge faithfulness curves and a table of both. The
circuit is `circuits.edges_run.edge_view` (greedy from the logits and pruned, the circuit the faithfulness curve
measured); nothing here recomputes a score. Pure functions, tested without a browser."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from headscope.app import circuits_views as cv
from headscope.app.figures import fmt_num, table
from headscope.circuits import edge_layout as lay
from headscope.circuits import summary as cs
from headscope.circuits.edge_layout import XY
from headscope.circuits.edges_run import ViewEdge, ViewNode
from headscope.circuits.result import CircuitResult

MAX_DRAWN = 600  # strongest edges drawn; more would hide the graph (and slow the browser)
WIDTH_BINS = 6  # edges share a trace per (sign, width bin): a few traces, not one per edge
POSITIVE, NEGATIVE = "#1f77b4", "#d62728"  # ≈ m(clean) − m(edge patched): > 0 helps the task


def edge_methods(result: CircuitResult | None) -> list[str]:
    ea = result.edge_attribution if result is not None else None
    return list(ea.methods) if ea is not None else []


def _edge_traces(edges: list[ViewEdge], pos: dict[str, XY]) -> list[go.Scatter]:
    return [
        go.Scatter(
            x=list(g.xs), y=list(g.ys), mode="lines", hoverinfo="skip", showlegend=False, opacity=0.65,
            line={"color": POSITIVE if g.sign > 0 else NEGATIVE, "width": 0.6 + 7.4 * (g.width_bin + 1) / g.bins},
        )
        for g in lay.edge_groups(edges, pos, WIDTH_BINS)
    ]  # fmt: skip


def _edge_hover(edges: list[ViewEdge], pos: dict[str, XY], title: str) -> go.Scatter:
    """Invisible markers at each edge's middle carry its hover (lines in plotly have none of their own)."""
    mid = lay.midpoints(edges, pos)
    return go.Scatter(
        x=[m[0] for m in mid], y=[m[1] for m in mid], mode="markers", marker={"size": 6, "opacity": 0},
        text=[lay.edge_label(e, title) for e in edges], hovertemplate="%{text}<extra></extra>", showlegend=False,
    )  # fmt: skip


def _node_trace(nodes: tuple[ViewNode, ...], pos: dict[str, XY]) -> go.Scatter:
    colour = {"input": "#555", "head": "#2ca02c", "mlp": "#9467bd", "logits": "#ff7f0e"}
    symbol = {"input": "square", "head": "circle", "mlp": "diamond", "logits": "star"}
    return go.Scatter(
        x=[pos[n.name][0] for n in nodes], y=[pos[n.name][1] for n in nodes], mode="markers+text",
        marker={"size": 13, "color": [colour[n.kind] for n in nodes], "symbol": [symbol[n.kind] for n in nodes],
                "line": {"width": 1, "color": "#fff"}},
        text=[n.name if n.kind in ("mlp", "logits") else "" for n in nodes], textposition="middle right",
        hovertext=[lay.node_label(n) for n in nodes], hovertemplate="%{hovertext}<extra></extra>", showlegend=False,
    )  # fmt: skip


def _token_trace(tokens: tuple[str, ...], n_heads: int) -> go.Scatter:
    return go.Scatter(
        x=lay.token_xs(len(tokens), n_heads), y=[-1.7] * len(tokens), mode="text",
        text=[repr(t)[1:-1] or "␣" for t in tokens], textfont={"size": 10},
        hovertemplate="token %{customdata}: %{text}<extra></extra>", customdata=list(range(len(tokens))),
        showlegend=False,
    )  # fmt: skip


def edge_graph_figure(result: CircuitResult, method: str, percent: float) -> go.Figure:
    """The method's circuit at `percent` % of the edges: the strongest MAX_DRAWN of its edges drawn (width =
    |score|, blue helps the task, red hurts it), its heads and MLPs as nodes, the prompt's tokens at the bottom."""
    view = lay.circuit_at(result, method, percent)
    ea = result.edge_attribution
    assert ea is not None  # circuit_at checked
    n_layers, n_heads = ea.graph.n_layers, ea.graph.n_heads
    pos = lay.positions(view, n_heads, n_layers)
    drawn = list(view.edges[:MAX_DRAWN])
    title = cs.title(method)
    fig = go.Figure([*_edge_traces(drawn, pos), _edge_hover(drawn, pos, title), _node_trace(view.nodes, pos),
                     _token_trace(view.tokens, n_heads)])  # fmt: skip
    for colour, name in ((POSITIVE, "helps the task (score > 0)"), (NEGATIVE, "hurts the task (score < 0)")):
        fig.add_scatter(x=[None], y=[None], mode="lines", line={"color": colour, "width": 4}, name=name)
    n = len(view.edges)
    shown = f"all {n:,}" if n <= MAX_DRAWN else f"the strongest {MAX_DRAWN:,} of {n:,}"
    fig.update_layout(
        title={"text": f"{title} circuit at {percent:g} % of {ea.graph.n_edges:,} edges: {shown} edges drawn, "
                       f"{len(view.heads())} heads"},
        xaxis={"title": "head (MLP at the right)", "range": [-1, n_heads + 2.5], "dtick": 1, "zeroline": False},
        yaxis={"title": "layer (input at the bottom, logits on top)", "range": [-2.2, n_layers + 0.6],
               "zeroline": False, "dtick": max(1, n_layers // 15)},
        height=max(460, 26 * (n_layers + 3)), legend={"orientation": "h", "x": 0, "y": 1.0, "yanchor": "bottom"},
        margin={"t": 90}, plot_bgcolor="#fafafa", hovermode="closest",
    )  # fmt: skip
    return fig


def edge_faithfulness_figure(result: CircuitResult) -> go.Figure:
    """MIB's curves per method: signed ranking (its area is CPR) and |score| ranking (CMD = area between it and 1);
    hovers name the method, the ranking and k (edges kept after pruning)."""
    ea = result.edge_attribution
    f, traces = ea.faithfulness if ea is not None else None, []
    pct = [100 * s for s in f.sizes] if f is not None else []
    for c in f.curves if f is not None else ():
        title = cs.title(c.method)
        for kept, ys, dash, label in (
            (c.signed_kept_edges, c.signed_faithfulness, "solid", f"signed ranking: CPR {fmt_num(c.cpr, 2)}{cs.ci_text(c.cpr_ci, ' ')}"),
            (c.kept_edges, c.faithfulness, "dash", f"|score| ranking: CMD {fmt_num(c.cmd, 3)}{cs.ci_text(c.cmd_ci, ' ')}"),
        ):  # fmt: skip
            traces.append(go.Scatter(
                x=pct, y=list(ys), mode="lines+markers", line={"dash": dash}, name=f"{title}, {label}",
                customdata=[[k, p] for k, p in zip(kept, pct, strict=True)],
                hovertemplate=f"{title}, {label.split(':')[0]}<br>k = %{{customdata[0]:,}} edges "
                "(%{customdata[1]:g} %): f = %{y:.3f}<extra></extra>",
            ))  # fmt: skip
    axis = {"title": "circuit size (% of all edges, log scale)", "type": "log"}
    layout = {"xaxis": axis, "margin": {"t": 60, "b": 70, "r": 20}}
    return cv.curves_figure("edge faithfulness", "MIB", f, traces, (1.0, "#888"), **layout)


def edge_table(result: CircuitResult) -> dict[str, Any]:
    ea = result.edge_attribution
    if ea is None:
        return table([], [("method", "edges: not computed (tick an edge method)")])
    cols = [("method", f"method ({ea.graph.n_edges:,} edges)"), ("cpr", "CPR (↑)"), ("cpr_ci", "CPR 95 % CI"),
            ("cmd", "CMD (↓)"), ("cmd_ci", "CMD 95 % CI"), ("time", "time (s)")]  # fmt: skip
    return table(cs.edge_method_rows(result), cols)
