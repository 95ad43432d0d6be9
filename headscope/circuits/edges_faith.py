"""MIB's faithfulness protocol at the edge level (papers.md §10.2).

A circuit is a set of edges of the model graph; running it means the clean forward in which every edge *outside*
the circuit carries its corrupted value: at each receiver's input (a head's q/k/v input, an MLP's input, the
logits' input) Σ_{u → v ∉ C} (a_u(corrupt) − a_u(this run)) is added, a_u(this run) being what sender u writes in
this very run (itself changed by the patches upstream of it). The corrupted value is the paired corrupted run's, or
(unpaired tasks) the negatives' mean. With every edge outside (the empty circuit) a paired run gives the corrupted
run's metric exactly; with every edge inside, the clean run's (tests check both).

For each method: circuits of 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50 and 100 % of all edges, built greedily from the
logits as MIB builds them and pruned to edges on an input → logits path (`edges_graph`); f(C) = (m(C) − m(∅)) /
(m(N) − m(∅)) with m the mean logit difference on the clean prompts, m(N) the clean model and m(∅) the empty
circuit. As MIB reports them (its print_results: CPR from the `abs-False` run, CMD from the `abs-True` one), two
curves per method: circuits ranked by the signed score (edges that help the task first; this project's sign is
MIB's, positive = helps) give CPR = Σ trapezoids of f over the size axis (fractions, linear, 0.1 % to 100 %),
which exceeds 1 when a circuit does the task better than the whole model; circuits ranked by |score| give
CMD = the same sum of |1 − f| (MIB's `evaluate_area_under_curve`: area_under, area_from_1). Per-pair metrics are kept, so a bootstrap over
pairs gives CPR/CMD intervals without new forwards (stability.curve_interval).

Circuits run as stacked copies of the prompts (several circuits per forward); each copy's senders' differences are
kept as [copy, sender, rows·pos·d_model] so a receiver block's patch is one batched matrix product. Grouped-query
layers run on query-head copies (edges.ungroup_hooks) so each query head's k/v input takes its own patch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from headscope.circuits.edges import (
    HookFn,
    add_per_query_head,
    corrupt_outputs,
    graph_for,
    ungroup_hooks,
)
from headscope.circuits.edges_graph import MIB_SIZES, EdgeGraph, circuit, greedy_order, size_edges
from headscope.circuits.patching import Prepared, logit_diff, metric, run_copies
from headscope.models import ModelHandle, hooks
from headscope.progress import StepCounter

MAX_EVAL_ROWS = 144  # rows (circuits × pairs × query-head copies) per forward


@dataclass
class _Copies:
    """The state of one forward over C circuits: what each sender carries when corrupted (`corrupt`
    [sender, rows, pos, d] or [sender, 1, 1, d]), each copy's senders' differences `delta`
    [copy, sender, rows, pos, d] filled as the senders run (with their running sum `total`), and each copy's
    "edge outside" matrix `out` [copy, forward, backward]."""

    graph: EdgeGraph
    corrupt: Tensor
    out: Tensor
    delta: Tensor
    total: Tensor | None = None  # [copy, rows·pos·d]: Σ of every recorded sender's difference
    recorded: int = 0

    @property
    def n_copies(self) -> int:
        return self.out.shape[0]

    def record(self, first: int, acts: Tensor) -> None:
        """acts [senders, copies·rows, pos, d] for forward indices first, first+1, ... (copy 0 of the query-head
        copies). Senders arrive in forward order."""
        c, n = self.n_copies, acts.shape[0]
        cur = acts.reshape(n, c, -1, *acts.shape[2:]).transpose(0, 1)
        self.delta[:, first : first + n] = self.corrupt[first : first + n][None] - cur
        added = self.delta[:, first : first + n].reshape(c, n, -1).sum(1)
        self.total = added if self.total is None else self.total + added
        self.recorded = first + n

    def _patch_one(self, c: int, n_senders: int, out: Tensor) -> Tensor | None:
        """Copy c's Σ_{u outside} Δ_u per receiver, [recv, rows·pos·d]: over the senders with an outside edge, or
        (fewer senders with an inside edge) as the sum of all minus the inside ones."""
        inside = ~out
        s_out, s_in = out.any(1).nonzero().flatten(), inside.any(1).nonzero().flatten()
        if s_out.numel() == 0:
            return None
        flat = self.delta[c, :n_senders].reshape(n_senders, -1)
        if s_in.numel() < s_out.numel():
            assert self.total is not None and self.recorded == n_senders
            own = inside[s_in].T.to(flat.dtype) @ flat[s_in]
            return self.total[c][None] - own
        return out[s_out].T.to(flat.dtype) @ flat[s_out]

    def patch(self, n_senders: int, cols: slice | int) -> Tensor | None:
        """Σ over senders outside the circuit of their differences, per receiver: [copies·rows, pos, recv, d]
        (None when every such edge is inside every circuit). The cost follows the sparser of the circuit's
        inside and outside edges into these receivers, not all of them."""
        mask = self.out[:, :n_senders, cols]
        mask = mask[..., None] if isinstance(cols, int) else mask
        parts = [self._patch_one(c, n_senders, mask[c]) for c in range(self.n_copies)]
        if all(p is None for p in parts):
            return None
        rows, pos, dm = self.delta.shape[2:]
        zero = torch.zeros(mask.shape[-1], rows * pos * dm, dtype=self.delta.dtype, device=self.delta.device)
        summed = torch.stack([zero if p is None else p for p in parts])  # [copy, recv, rows·pos·d_model]
        return (
            summed.view(self.n_copies, -1, rows, pos, dm)
            .permute(0, 2, 3, 1, 4)
            .reshape(-1, pos, mask.shape[-1], dm)
        )


def _hooks(s: _Copies) -> list[tuple[str, HookFn]]:
    gr = s.graph
    n_rows = s.n_copies * s.delta.shape[2]

    def input_hook(x: Tensor, hook: Any) -> Tensor:
        s.record(0, x[None])
        return x

    def heads(layer: int, kind: str) -> HookFn:
        first = gr.head_bwd(layer, 0, kind)

        def hook(x: Tensor, hook: Any) -> Tensor:
            p = s.patch(gr.attn_senders(layer), slice(first, first + gr.n_heads))
            return x if p is None else add_per_query_head(x, p, gr, kind)

        return hook

    def result(layer: int) -> HookFn:
        def hook(x: Tensor, hook: Any) -> Tensor:
            s.record(gr.head_fwd(layer, 0), x[:n_rows].permute(2, 0, 1, 3))
            return x

        return hook

    def residual(n_senders: int, col: int) -> HookFn:
        def hook(x: Tensor, hook: Any) -> Tensor:
            p = s.patch(n_senders, col)
            if p is None:
                return x
            return (x.view(-1, *p.shape[:2], p.shape[-1]) + p[:, :, 0][None]).view_as(x)

        return hook

    def mlp_out(layer: int) -> HookFn:
        def hook(x: Tensor, hook: Any) -> Tensor:
            s.record(gr.mlp_fwd(layer), x[None, :n_rows])
            return x

        return hook

    plan: list[tuple[str, HookFn]] = [(hooks.resid(0, "pre"), input_hook)]
    for layer in range(gr.n_layers):
        first, last = ungroup_hooks(gr, layer)
        plan += first + [(hooks.sublayer_in(layer, k), heads(layer, k)) for k in ("q", "k", "v")]
        plan += [*last[:1], (hooks.attn(layer, "result"), result(layer))]
        plan += [(hooks.sublayer_in(layer, "mlp"), residual(gr.mlp_senders(layer), gr.mlp_bwd(layer)))]
        plan += [(hooks.sublayer_out(layer, "mlp"), mlp_out(layer)), *last[1:]]
    plan.append((hooks.resid(gr.n_layers - 1, "post"), residual(gr.n_forward, gr.logits_bwd)))
    return plan


def circuit_metrics(
    handle: ModelHandle,
    prep: Prepared,
    circuits: np.ndarray,
    *,
    max_rows: int = MAX_EVAL_ROWS,
    progress: StepCounter | None = None,
) -> Tensor:
    """Per-circuit, per-pair logit difference on the clean prompts, where `circuits` [circuit, edge] (bool,
    canonical order) says which edges keep their clean value; every other edge carries its corrupted value."""
    graph = graph_for(handle)
    circuits = np.asarray(circuits, dtype=bool).reshape(-1, graph.n_edges)
    corrupt = corrupt_outputs(handle, prep)
    b, width = prep.clean.ids.shape
    per = max(1, max_rows // (b * graph.group))
    out = torch.empty(len(circuits), b)
    groups = [range(i, min(len(circuits), i + per)) for i in range(0, len(circuits), per)]
    for g, idx in enumerate(groups):
        outside = torch.zeros(len(idx), graph.n_forward, graph.n_backward, dtype=torch.bool)
        for j, c in enumerate(idx):
            outside[j, graph.src[~circuits[c]], graph.dst[~circuits[c]]] = True
        dm = handle.facts.d_model
        delta = torch.zeros(
            len(idx), graph.n_forward, b, width, dm, dtype=corrupt.dtype, device=corrupt.device
        )
        state = _Copies(graph, corrupt, outside.to(corrupt.device), delta)
        final = run_copies(handle, prep.clean, 0, len(idx), _hooks(state))
        out[idx.start : idx.stop] = logit_diff(final, prep.answers.repeat(len(idx))).view(len(idx), b).cpu()
        if progress is not None:
            progress(g + 1, len(groups))
    return out


# ---- the curve -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CurveRun:
    """One method's circuits at MIB's sizes under one ranking and their per-pair metrics (for the report and the
    bootstrap)."""

    method: str
    absolute: bool  # ranked by |score| (CMD's curve) or by the signed score (CPR's)
    n_edges: tuple[int, ...]  # edges asked for at each size
    kept_edges: tuple[int, ...]  # after pruning
    kept_nodes: tuple[int, ...]
    per_pair: np.ndarray  # [size, pair] metric of each circuit


@dataclass(frozen=True)
class EdgeCurves:
    sizes: tuple[float, ...]
    full: np.ndarray  # [pair] m(N)
    empty: np.ndarray  # [pair] m(∅)
    curves: tuple[CurveRun, ...]  # per method: the |score| curve, then the signed one
    runtime_s: float

    def run(self, method: str, absolute: bool) -> CurveRun:
        return next(c for c in self.curves if c.method == method and c.absolute == absolute)


def _unique(masks: list[np.ndarray]) -> tuple[np.ndarray, list[int]]:
    index: dict[bytes, int] = {}
    rows: list[np.ndarray] = []
    where = []
    for m in masks:
        key = np.packbits(m).tobytes()
        if key not in index:
            index[key] = len(rows)
            rows.append(m)
        where.append(index[key])
    return np.stack(rows), where


def edge_curves(
    handle: ModelHandle,
    prep: Prepared,
    scores: dict[str, np.ndarray],
    sizes: Sequence[float] = MIB_SIZES,
    progress: StepCounter | None = None,
) -> EdgeCurves:
    """Every method's circuits at `sizes` (fractions of all edges), ranked by |score| and by score, and their
    metrics, in batched forwards (circuits that coincide run once)."""
    t0 = time.perf_counter()
    graph = graph_for(handle)
    masks: list[np.ndarray] = [np.zeros(graph.n_edges, dtype=bool)]  # the empty circuit first
    meta: list[tuple[str, bool, list[int], list[int], list[int]]] = []
    ns = [size_edges(graph, f) for f in sizes]
    for method, s in scores.items():
        for absolute in (True, False):
            order = greedy_order(graph, s, absolute)
            kept = [circuit(graph, order, n) for n in ns]
            masks += kept
            nodes = [int(np.unique(graph.src[k]).size) + int(k.any()) for k in kept]
            meta.append((method, absolute, ns, [int(k.sum()) for k in kept], nodes))
    unique, where = _unique(masks)
    per_pair = circuit_metrics(handle, prep, unique, progress=progress).numpy()
    full = metric(handle, prep.clean, prep.answers).cpu().numpy()
    curves, i = [], 1
    for method, absolute, n_asked, kept_e, kept_n in meta:
        rows = [where[i + j] for j in range(len(sizes))]
        curves.append(
            CurveRun(method, absolute, tuple(n_asked), tuple(kept_e), tuple(kept_n), per_pair[rows])
        )
        i += len(sizes)
    return EdgeCurves(tuple(sizes), full, per_pair[where[0]], tuple(curves), time.perf_counter() - t0)


def normalised(kept: np.ndarray, full: float, empty: float) -> np.ndarray:
    span = full - empty
    return (np.asarray(kept, dtype=float) - empty) / span if abs(span) > 1e-12 else np.full(len(kept), np.nan)


def areas(sizes: Sequence[float], f: np.ndarray) -> tuple[float, float]:
    """(CPR, CMD): trapezoids of f and of |1 − f| between consecutive sizes, as MIB sums them."""
    x = np.asarray(sizes, dtype=float)
    f = np.asarray(f, dtype=float)
    dx = np.diff(x)
    cpr = float(np.sum(dx * (f[:-1] + f[1:]) / 2))
    gap = np.abs(1 - f)
    return cpr, float(np.sum(dx * (gap[:-1] + gap[1:]) / 2))


def curve_values(run: CurveRun, full: np.ndarray, empty: np.ndarray, sizes: Sequence[float], idx=None):
    """f at each size and (area under f, area under |1 − f|) from per-pair values, over the pairs `idx`."""
    sel = slice(None) if idx is None else idx
    f = normalised(run.per_pair[:, sel].mean(1), float(full[sel].mean()), float(empty[sel].mean()))
    return f, areas(sizes, f)
