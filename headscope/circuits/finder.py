"""The circuit finder: task → ground truth and scored methods in one run → metrics, faithfulness, (edges,
stability) → a typed `CircuitResult` (result.py), whose `to_json()` is the schema-2.1 report.

`find_circuit(handle, cfg)` is the one entry point (CLI, app and bench call it). The ground truth is activation
patching of every analysed head (batched, paired corrupted → clean, or mean ablation), binarised at `gt_frac` of
|clean − corrupted|; it is reported apart from the methods and never scored. Scored: the discrete SAE's node and
edge scores (O'Neill & Bui), attribution patching and EAP-IG. Published head lists are added as further truths
when the loaded model matches one (assets/circuits).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from headscope.circuits import attribution, patching, scoring
from headscope.circuits.config import GROUND_TRUTH_METHOD, METHODS, CircuitConfig
from headscope.circuits.edges_run import run_edges
from headscope.circuits.faithfulness import faithfulness_curves
from headscope.circuits.paths import edge_set, path_patching
from headscope.circuits.published import matching
from headscope.circuits.result import (
    Circuit,
    CircuitResult,
    Edge,
    Edges,
    GroundTruth,
    Intervals,
    MethodScores,
    Metrics,
    ModelInfo,
    Performance,
    Published,
    SAEInfo,
    Side,
    TaskInfo,
    head_name,
)
from headscope.circuits.stability import CONFIDENCE, Samples, edge_auc_interval, roc_auc_intervals, stability
from headscope.circuits.stability import warnings as stability_warnings
from headscope.circuits.tasks import TaskData, make_task
from headscope.circuits.variants import VARIANTS, SAERecord
from headscope.circuits.variants_fit import VariantRun, fit_variant
from headscope.circuits.variants_fit import edge_scores as variant_edge_scores
from headscope.circuits.variants_read import read_heads
from headscope.models import ModelHandle
from headscope.progress import Progress, StepCounter

__all__ = ["METHODS", "CircuitConfig", "CircuitResult", "find_circuit"]


# What a stage's steps count, for the progress line (the app adds the time left).
SUBSTEPS = {"SAE": "epoch", "ground truth": "patching layer", "faithfulness": "ablation batch", "edges (path patching)": "sender group",
            "stability": "resample", "edge attribution": "method", "edge faithfulness": "circuit batch"}  # fmt: skip


class _Stages:
    """Reports (stage, overall fraction) from each stage's own (done, total), stages weighted by expected cost."""

    def __init__(self, say: Progress, weights: dict[str, float]):
        self.say, self.weights = say, weights
        total = sum(weights.values())
        self.start: dict[str, float] = {}
        acc = 0.0
        for name, w in weights.items():
            self.start[name] = acc / total
            acc += w
        self.total = total

    def __call__(self, stage: str) -> StepCounter:
        self.say(stage, self.start[stage])

        what = SUBSTEPS.get(stage, "step")

        def tick(done: int, total: int) -> None:  # "ground truth: patching layer 17/30"
            frac = self.start[stage] + self.weights[stage] / self.total * done / max(total, 1)
            self.say(f"{stage}: {what} {done}/{total}", frac)

        return tick


# ---- task performance --------------------------------------------------------------------------------------------
def task_performance(handle: ModelHandle, prep: patching.Prepared) -> Performance:
    """Accuracy and mean logit difference (answer − wrong) on positives, and on negatives with the same tokens."""
    sides = []
    for batch, answers in ((prep.clean, prep.answers), (prep.corrupt, prep.corrupt_answers)):
        final = patching.final_logits(handle.forward(batch.ids), batch)
        acc = float(patching.accuracy(final, answers).mean())
        sides.append(Side(acc, float(patching.logit_diff(final, answers).mean())))
    pos, neg = sides
    return Performance(pos, neg, pos.accuracy >= 0.6 and pos.mean_logit_diff > neg.mean_logit_diff + 0.1)


# ---- SAE methods -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SAERun:
    scores: dict[str, np.ndarray]  # sae_node / sae_edge over the analysed heads (flat)
    pair_scores: Tensor  # [head_total, head_total] over the analysed heads
    codes: Tensor  # [examples, head_total]
    info: SAEInfo
    runtime: dict[str, float]
    x: Tensor  # head outputs [examples, head_total, d_model] as read (kept for stability's extra seeds)
    fit: VariantRun  # the variant's stored per-example data, resolved settings and trained SAE


def _fit(
    x: Tensor,
    prep: patching.Prepared,
    cfg: CircuitConfig,
    l1: float,
    seed: int,
    n_heads: int,
    tick: StepCounter | None = None,
) -> VariantRun:
    r = VARIANTS[cfg.sae_variant].resolve(cfg.reduce, cfg.n_train, cfg.sae)
    n_pos = prep.clean.ids.shape[0]
    return fit_variant(
        x, r, n_positive=n_pos, paired=prep.paired, seed=seed, l1=l1, n_heads=n_heads, tick=tick
    )


def sae_methods(
    handle: ModelHandle,
    prep: patching.Prepared,
    cfg: CircuitConfig,
    task: str,
    tick: StepCounter | None = None,
) -> SAERun:
    """Node and edge scores of the config's SAE variant (variants.py; `reference` is the paper's method); each
    method's time is end to end (the shared part, reading the heads and training the SAE, counted in both)."""
    layers = cfg.layer_list(handle.facts.n_layers)
    read = VARIANTS[cfg.sae_variant].read or cfg.reduce
    t0 = time.perf_counter()
    x = read_heads(handle, prep, (read,), layers)[read]
    fit = _fit(x, prep, cfg, cfg.sae.l1_for(task), cfg.sae_seed_used, handle.facts.n_heads, tick)
    assert fit.trained is not None  # check_variant admits SAE variants only
    shared = time.perf_counter() - t0
    t1 = time.perf_counter()
    node = fit.node
    t2 = time.perf_counter()
    c, positive = fit.codes(), torch.arange(x.shape[0]) < prep.clean.ids.shape[0]
    edge = variant_edge_scores(fit.stored)
    t3 = time.perf_counter()
    trained = fit.trained
    info = SAEInfo(
        fit.resolved.sae.decoder_norm, trained.l1, trained.mse_first, trained.mse_last, fit.n_train,
        int(x.shape[0]), int(torch.unique(c).numel()),
    )  # fmt: skip
    return SAERun(
        {"sae_node": node, "sae_edge": edge}, scoring.pair_scores(c, positive), c, info,
        {"sae_node": shared + t2 - t1, "sae_edge": shared + t3 - t2}, x, fit,
    )  # fmt: skip


def _full_grid(flat: np.ndarray, rows: list[int], n_layers: int, n_heads: int) -> np.ndarray:
    grid = np.zeros((n_layers, n_heads))
    grid[rows] = np.asarray(flat, dtype=float).reshape(len(rows), n_heads)
    return grid


def choose_circuit(node: np.ndarray, edge: np.ndarray, cfg: CircuitConfig) -> Circuit:
    """Heads ranked by node score (edge score breaks ties, then head order); the circuit is a prefix of it."""
    n_h, rows = node.shape[1], cfg.layer_list(node.shape[0])
    node, edge = node[rows], edge[rows]
    order = np.lexsort((np.arange(node.size), -edge.ravel(), -node.ravel())) + rows[0] * n_h
    ranked = tuple(head_name(int(i), n_h) for i in order)
    if cfg.circuit_threshold is not None:
        k = int((node.ravel() >= cfg.circuit_threshold).sum())
        return Circuit(ranked, ranked[:k], "sae_node", "threshold", threshold=cfg.circuit_threshold)
    k = min(cfg.circuit_k or max(1, math.ceil(0.1 * node.size)), node.size)
    return Circuit(ranked, ranked[:k], "sae_node", "top_k", k=k)


# ---- the run -----------------------------------------------------------------------------------------------------
def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _weights(cfg: CircuitConfig) -> dict[str, float]:
    w = {"task": 1.0, "SAE": 6.0, "attribution patching": 2.0, "EAP-IG": 6.0, "ground truth": 45.0}
    if cfg.faithfulness:
        w["faithfulness"] = 20.0
    if cfg.edges:
        w["edges (path patching)"] = 45.0
    if cfg.stability:
        w["stability"] = 20.0
    if cfg.edge_methods:
        w["edge attribution"] = 25.0 * len(cfg.edge_methods)
        w["edge faithfulness"] = 40.0 if cfg.edge_faithfulness else 0.0
    return {**w, "metrics": 1.0}


@dataclass(frozen=True)
class _Run:
    task: TaskData
    prep: patching.Prepared
    perf: Performance
    sae: SAERun
    gradient: dict[str, Tensor]  # per pair
    runtime: dict[str, float]
    gt: patching.PatchingResult
    gt_runtime: float


def _measure(handle: ModelHandle, cfg: CircuitConfig, task_spec: Any, stages: _Stages) -> _Run:
    stages("task")
    task = make_task(cfg.task, handle.tokenizer, n=cfg.n_examples, seed=cfg.seed, spec=task_spec)
    prep = patching.prepare(handle, task)
    perf = task_performance(handle, prep)
    sae = sae_methods(handle, prep, cfg, task.name, stages("SAE"))
    runtime = dict(sae.runtime)
    stages("attribution patching")
    attr, runtime["attribution_patching"] = _timed(lambda: attribution.attribution_patching(handle, prep))
    stages("EAP-IG")
    ig, runtime["eap_ig"] = _timed(lambda: attribution.eap_ig(handle, prep, cfg.ig_steps))
    layers = cfg.layer_list(handle.facts.n_layers)
    tick = stages("ground truth")
    gt, gt_runtime = _timed(lambda: patching.activation_patching(handle, prep, tick, layers))
    gradient = {"attribution_patching": attr, "eap_ig": ig}
    return _Run(task, prep, perf, sae, gradient, runtime, gt, gt_runtime)


def find_circuit(
    handle: ModelHandle,
    cfg: CircuitConfig,
    *,
    task_spec: Any = None,
    progress: Progress | None = None,
    on_sae: Callable[[SAEFit], None] | None = None,
) -> CircuitResult:
    """Run the task's ground truth and every scored method; `progress(stage, fraction)` is called between
    steps (a callback that raises stops the run there); `on_sae` receives the fitted SAE (to save it)."""
    stages = _Stages(progress or (lambda stage, frac: None), _weights(cfg))
    run = _measure(handle, cfg, task_spec, stages)
    if on_sae is not None:
        on_sae(SAEFit(run.sae.fit, handle.identity.name, tuple(rows_of(cfg, handle)), handle.facts.n_heads))
    n_l, n_h = handle.facts.n_layers, handle.facts.n_heads
    rows = cfg.layer_list(n_l)
    methods = _method_scores(run, cfg, rows, n_l, n_h)
    truth_grid = scoring.threshold_truth(
        run.gt.effects.numpy(), run.gt.clean_metric - run.gt.corrupt_metric, cfg.gt_frac, rows
    )
    ground = GroundTruth(
        GROUND_TRUTH_METHOD, run.gt.mode, "logit_diff", cfg.gt_frac, run.gt.effects.numpy(), run.gt.clean_metric,
        run.gt.corrupt_metric, tuple(rows), tuple(_names(truth_grid)), run.gt_runtime,
    )  # fmt: skip
    circuit = choose_circuit(methods[0].scores, methods[1].scores, cfg)
    k = len(circuit.heads) or 1
    metrics = _metrics(methods, truth_grid, ground.effects, rows, k)
    published = _published(handle, run.task.name, methods, ground.effects, rows, k)
    if cfg.intervals:  # bootstrap over prompt pairs from the stored per-pair values (stability.py)
        metrics, published = _with_intervals(run, cfg, rows, metrics, published)
    rankings = {m.name: m.ranking() for m in methods}
    n_boot = cfg.n_bootstrap if cfg.intervals else 0
    faith = None
    if cfg.faithfulness:
        faith = faithfulness_curves(
            handle, run.prep, rankings, rows, stages("faithfulness"), n_bootstrap=n_boot, seed=cfg.seed
        )
    edges = _edges(handle, run, cfg, rows, stages) if cfg.edges else None
    edge_attr = None
    if cfg.edge_methods:
        edge_attr = run_edges(
            handle, run.prep, cfg.edge_methods, steps=cfg.ig_steps, faithfulness=cfg.edge_faithfulness,
            n_bootstrap=n_boot, seed=cfg.seed, stage=stages,
        )  # fmt: skip
    stab = None
    if cfg.stability:
        stab = stability(
            _samples(run, cfg, rows), {m: v[rows].ravel() for m, v in rankings.items()}, k, cfg.n_bootstrap,
            cfg.seed, stages("stability"),
        )  # fmt: skip
    stages("metrics")
    warnings = _warnings(run.perf, ground, truth_grid[rows]) + (stability_warnings(stab) if stab else [])
    return CircuitResult(
        model=_model_info(handle), task=_task_info(handle, run.task), performance=run.perf, config=cfg,
        ground_truth=ground, methods=tuple(methods), metrics=metrics, circuit=circuit, published=published,
        faithfulness=faith, edges=edges, stability=stab, warnings=tuple(warnings), edge_attribution=edge_attr,
        intervals=Intervals(cfg.n_bootstrap, CONFIDENCE, cfg.seed) if cfg.intervals else None,
        sae=SAERecord(cfg.sae_variant, cfg.sae_seed_used, run.sae.fit.resolved.to_json()),
    )  # fmt: skip


@dataclass(frozen=True)
class SAEFit:
    """What a caller needs to save a run's SAE: the fitted variant, the model, the analysed layers."""

    fit: VariantRun
    model: str
    layers: tuple[int, ...]
    n_heads: int


def rows_of(cfg: CircuitConfig, handle: ModelHandle) -> list[int]:
    return cfg.layer_list(handle.facts.n_layers)


def _names(mask: np.ndarray) -> list[str]:
    return [head_name(int(i), mask.shape[1]) for i in np.flatnonzero(mask.ravel())]


def _method_scores(run: _Run, cfg: CircuitConfig, rows: list[int], n_l: int, n_h: int) -> list[MethodScores]:
    grids = {m: _full_grid(v, rows, n_l, n_h) for m, v in run.sae.scores.items()}
    for m, per_pair in run.gradient.items():
        grid = per_pair.mean(0).numpy()
        grids[m] = _full_grid(grid[rows], rows, n_l, n_h)
    return [
        MethodScores(
            m,
            grids[m],
            run.runtime[m],
            run.sae.info if m.startswith("sae_") else None,
            cfg.ig_steps if m == "eap_ig" else None,
        )
        for m in METHODS
    ]


def _metrics(
    methods: list[MethodScores], truth: np.ndarray, effects: np.ndarray, rows: list[int], k: int
) -> dict[str, Metrics]:
    """Metrics over the analysed layers only."""
    return {m.name: Metrics.of(m.ranking()[rows], truth[rows], effects[rows], k) for m in methods}


def _edges(handle: ModelHandle, run: _Run, cfg: CircuitConfig, rows: list[int], stages: _Stages) -> Edges:
    tick = stages("edges (path patching)")
    t0 = time.perf_counter()
    pairs, drawn = edge_set(run.gt.effects.numpy(), rows, cfg.edge_heads, cfg.seed)
    per_prompt = path_patching(handle, run.prep, pairs, tick).numpy()
    effects = per_prompt.mean(1)
    truth = np.abs(effects) >= cfg.gt_frac * abs(run.gt.clean_metric - run.gt.corrupt_metric)
    n_h, first = handle.facts.n_heads, rows[0]
    flat = [((s[0] - first) * n_h + s[1], (r[0] - first) * n_h + r[1]) for s, r in pairs]
    sae = np.array([float(run.sae.pair_scores[a, b]) for a, b in flat])
    edges = tuple(
        Edge(f"{s[0]}.{s[1]}", f"{r[0]}.{r[1]}", float(e), bool(t), d, float(v))
        for (s, r), e, t, d, v in zip(pairs, effects, truth, drawn, sae, strict=True)
    )
    metric = Metrics.of(sae, truth, effects, max(1, int(truth.sum())))
    if cfg.intervals:
        ci = edge_auc_interval(_samples(run, cfg, rows, 1), per_prompt, flat, cfg.n_bootstrap, cfg.seed)
        metric = dataclasses.replace(metric, roc_auc_ci=ci)
    return Edges("qkv", cfg.gt_frac, edges, {"sae_edge": metric}, time.perf_counter() - t0)


def _with_intervals(
    run: _Run,
    cfg: CircuitConfig,
    rows: list[int],
    metrics: dict[str, Metrics],
    published: tuple[Published, ...],
) -> tuple[dict[str, Metrics], tuple[Published, ...]]:
    """Every ROC-AUC with its bootstrap interval over prompt pairs (the run's SAE; no new forwards)."""
    fixed = {p.variant: _head_mask(p.heads, tuple(run.gt.effects.shape), rows) for p in published}
    cis = roc_auc_intervals(_samples(run, cfg, rows, 1), list(metrics), fixed, cfg.n_bootstrap, cfg.seed)

    def add(ms: dict[str, Metrics], truth: str) -> dict[str, Metrics]:
        # no interval around an undefined AUC (a resample's truth can be non-degenerate where the run's is not)
        return {m: dataclasses.replace(v, roc_auc_ci=cis[truth][m] if v.roc_auc is not None else None)
                for m, v in ms.items()}  # fmt: skip

    return add(metrics, "ground_truth"), tuple(
        dataclasses.replace(p, metrics=add(p.metrics, p.variant)) for p in published
    )


def _head_mask(heads: tuple[str, ...], shape: tuple[int, ...], rows: list[int]) -> np.ndarray:
    """A head list as a truth over the analysed heads (flattened, layer-major)."""
    mask = np.zeros(shape, dtype=bool)
    for h in heads:
        layer, head = (int(v) for v in h.split("."))
        mask[layer, head] = True
    return mask[rows].ravel()


def _samples(run: _Run, cfg: CircuitConfig, rows: list[int], n_seeds: int | None = None) -> Samples:
    """What the bootstrap resamples; `n_seeds` SAE seeds (default the config's stability seeds; 1: the run's own
    SAE only, nothing retrained)."""
    seeds = [cfg.sae_seed_used + i for i in range(n_seeds or cfg.stability_seeds)]
    n_heads = run.sae.x.shape[1] // len(rows)
    more = [_fit(run.sae.x, run.prep, cfg, run.sae.info.l1, s, n_heads) for s in seeds[1:]]
    clean, corrupt = run.gt.clean_per_pair, run.gt.corrupt_per_pair
    gap = clean - (corrupt if run.prep.paired else corrupt.mean())  # unpaired: no per-pair corrupted value
    return Samples(
        run.gt.per_pair, gap, run.gradient, (run.sae.codes, *(f.codes() for f in more)), corrupt.shape[0],
        run.prep.paired, tuple(seeds), rows, cfg.gt_frac, cfg.sae_variant, (run.sae.fit.stored, *(f.stored for f in more)),
    )  # fmt: skip


def _identity_names(handle: ModelHandle) -> tuple[str, ...]:
    ident = handle.identity
    return (ident.name, ident.source, handle.entry.hf_id or "")


def _published(
    handle: ModelHandle, task: str, methods: list[MethodScores], effects: np.ndarray, rows: list[int], k: int
) -> tuple[Published, ...]:
    found = matching(_identity_names(handle), handle.facts.n_layers, handle.facts.n_heads, task)
    return tuple(
        Published(c.variant, c.source, c.heads, _metrics(methods, c.mask(), effects, rows, k)) for c in found
    )


def _model_info(handle: ModelHandle) -> ModelInfo:
    i, f = handle.identity, handle.facts
    return ModelInfo(
        i.name, i.kind, i.source, i.sha256, i.revision, i.license, f.n_layers, f.n_heads, f.d_model
    )


def _task_info(handle: ModelHandle, task: TaskData) -> TaskInfo:
    positive = task.positives[0].prompt
    ids = handle.tokenize(positive)
    answer = task.positives[0].answers[0]
    prob = float(handle.forward(ids)[0, -1].float().softmax(-1)[answer])  # for graph exports' logit node
    return TaskInfo(
        task.name, task.title or task.name, task.seed, len(task.positives), len(task.negatives), task.notes,
        positive, task.negatives[0], tuple(handle.str_tokens(ids)), tuple(ids[0].tolist()),
        handle.str_tokens([answer])[0], answer, prob,
    )  # fmt: skip


def _warnings(perf: Performance, gt: GroundTruth, truth: np.ndarray) -> list[str]:
    out = []
    if not perf.can_do_task:
        p, n = perf.positive, perf.negative
        out.append(
            f"the model cannot do this task (accuracy {p.accuracy:.2f} on positives; mean logit difference "
            f"{p.mean_logit_diff:.2f} on positives vs {n.mean_logit_diff:.2f} on negatives): circuit scores "
            "and their metrics are not meaningful"
        )
    if truth.all() or not truth.any():
        out.append(
            f"the patching ground truth has {int(truth.sum())} of {truth.size} heads: ROC-AUC is undefined"
        )
    if abs(gt.gap) < 1e-6:
        out.append("clean and corrupted runs give the same metric: patching effects are all relative to zero")
    return out
