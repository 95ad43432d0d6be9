"""The circuit finder: task → discrete-SAE head scores, patching baselines in the same run, metrics → a report.

`find_circuit(handle, cfg)` is the one entry point (CLI, app and bench call it). The ground truth is exhaustive
activation patching in the same run (binarised at `gt_frac` of the clean − corrupted gap); published head lists
are added as further ground truths when the loaded model matches one (assets/circuits).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from headscope.circuits import patching, scoring
from headscope.circuits.published import matching
from headscope.circuits.sae import SAEConfig, codes, train_sae
from headscope.circuits.tasks import TASKS, TaskData, make_task
from headscope.errors import InputError
from headscope.models import ModelHandle

METHODS = ("sae_node", "sae_edge", "attribution_patching", "activation_patching")
ProgressFn = Callable[[str, float], None]


@dataclass(frozen=True)
class CircuitConfig:
    task: str = "ioi"
    n_examples: int = 24  # positive/negative pairs
    seed: int = 0
    n_train: int = 10  # SAE training examples, drawn from the shuffled positive + negative pool
    reduce: Literal["mean", "last"] = "mean"
    sae: SAEConfig = field(default_factory=SAEConfig)
    circuit_k: int | None = None  # top-k heads by SAE node score; None: 10 % of all heads
    circuit_threshold: float | None = None  # or: heads with node score ≥ this (exclusive with circuit_k)
    gt_frac: float = 0.03  # ground truth: |patching effect| ≥ gt_frac · |clean − corrupted|
    layers: tuple[int, int] | None = None  # analyse only layers [start, stop) (all: None); others score 0
    sae_seed: int | None = None  # SAE init and training split; None: `seed` (the bench varies it alone)

    def __post_init__(self) -> None:
        if self.task not in (*TASKS, "custom"):
            raise InputError(f"task must be one of {', '.join([*TASKS, 'custom'])}, got {self.task!r}")
        if not 2 <= self.n_examples <= 512:
            raise InputError(f"n_examples must be in [2, 512], got {self.n_examples}")
        if not 0 <= self.seed < 2**31:
            raise InputError(f"seed must be in [0, 2**31), got {self.seed}")
        if not 2 <= self.n_train <= 1024:  # capped at the number of examples when used
            raise InputError(f"n_train must be in [2, 1024], got {self.n_train}")
        if self.reduce not in ("mean", "last"):
            raise InputError(f"reduce must be 'mean' or 'last', got {self.reduce!r}")
        if self.circuit_k is not None and self.circuit_threshold is not None:
            raise InputError("give circuit_k or circuit_threshold, not both")
        if self.circuit_k is not None and not 1 <= self.circuit_k <= 100_000:
            raise InputError(f"circuit_k must be in [1, 100000], got {self.circuit_k}")
        if not 0 < self.gt_frac < 1:
            raise InputError(f"gt_frac must be in (0, 1), got {self.gt_frac}")
        if self.layers is not None and not (len(self.layers) == 2 and 0 <= self.layers[0] < self.layers[1]):
            raise InputError(f"layers must be (start, stop) with 0 <= start < stop, got {self.layers}")
        if self.sae_seed is not None and not 0 <= self.sae_seed < 2**31:
            raise InputError(f"sae_seed must be in [0, 2**31), got {self.sae_seed}")

    @property
    def sae_seed_used(self) -> int:
        return self.seed if self.sae_seed is None else self.sae_seed

    def layer_list(self, n_layers: int) -> list[int]:
        if self.layers is None:
            return list(range(n_layers))
        if self.layers[1] > n_layers:
            raise InputError(f"layers {list(self.layers)} exceed the model's {n_layers} layers")
        return list(range(*self.layers))

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["layers"] = list(self.layers) if self.layers is not None else None  # JSON has no tuples
        return out


@dataclass(frozen=True)
class CircuitResult:
    """Everything one run found; `report.build_report` turns it into the versioned JSON report."""

    model: dict[str, Any]
    task: dict[str, Any]
    config: dict[str, Any]
    performance: dict[str, Any]
    scores: dict[str, np.ndarray]  # method → [layers, heads]
    method_info: dict[str, dict[str, Any]]
    ranked: list[str]
    circuit: list[str]
    circuit_rule: dict[str, Any]
    ground_truth: dict[str, Any]
    metrics: dict[str, dict[str, Any]]
    published: list[dict[str, Any]]
    runtime_s: dict[str, float]
    warnings: list[str]

    def to_json(self) -> dict[str, Any]:
        from headscope.circuits.report import build_report

        return build_report(self)


def head_name(i: int, n_heads: int) -> str:
    return f"{i // n_heads}.{i % n_heads}"


# ---- task performance --------------------------------------------------------------------------------------------
def task_performance(handle: ModelHandle, prep: patching.Prepared) -> dict[str, Any]:
    """Accuracy and mean logit difference (answer − wrong) on positives, and on negatives with the same tokens."""
    out: dict[str, Any] = {}
    for key, batch, answers in (
        ("positive", prep.clean, prep.answers),
        ("negative", prep.corrupt, prep.corrupt_answers),
    ):
        final = patching.final_logits(handle.forward(batch.ids), batch)
        out[key] = {
            "accuracy": float(patching.accuracy(final, answers).mean()),
            "mean_logit_diff": float(patching.logit_diff(final, answers).mean()),
        }
    pos, neg = out["positive"], out["negative"]
    out["can_do_task"] = bool(
        pos["accuracy"] >= 0.6 and pos["mean_logit_diff"] > neg["mean_logit_diff"] + 0.1
    )
    return out


# ---- SAE methods -------------------------------------------------------------------------------------------------
def _split(n_total: int, n_train: int, seed: int) -> tuple[Tensor, Tensor]:
    perm = torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))
    train, rest = perm[:n_train], perm[n_train:]
    return train, rest if len(rest) >= 2 else perm  # too few left: score on all examples


def sae_methods(
    handle: ModelHandle, prep: patching.Prepared, cfg: CircuitConfig
) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, float]]:
    """Node and edge scores from one SAE; each method's time is end to end (the shared part counted in both)."""
    n_l, n_h = handle.facts.n_layers, handle.facts.n_heads
    layers = cfg.layer_list(n_l)
    t0 = time.perf_counter()
    x = torch.cat([patching.head_outputs(handle, b, cfg.reduce, layers) for b in (prep.clean, prep.corrupt)])
    positive = torch.arange(x.shape[0]) < prep.clean.ids.shape[0]
    train, evaluate = _split(x.shape[0], min(cfg.n_train, x.shape[0]), cfg.sae_seed_used)
    trained = train_sae(x[train].reshape(-1, x.shape[-1]), cfg.sae, cfg.sae_seed_used)
    c = codes(trained.sae, x[evaluate])
    shared = time.perf_counter() - t0
    t1 = time.perf_counter()
    node = scoring.node_scores(c, positive[evaluate])
    t2 = time.perf_counter()
    edge = scoring.edge_scores(c, positive[evaluate])
    t3 = time.perf_counter()
    info = {
        "mse_first_epoch": trained.mse_first,
        "mse_final": trained.mse_last,
        "n_train_examples": len(train),
        "n_eval_examples": len(evaluate),
        "n_distinct_codes": int(torch.unique(c).numel()),
    }
    scores = {"sae_node": _full_grid(node, layers, n_l, n_h), "sae_edge": _full_grid(edge, layers, n_l, n_h)}
    return scores, info, {"sae_node": shared + t2 - t1, "sae_edge": shared + t3 - t2}


def _full_grid(scores: Tensor, layers: list[int], n_layers: int, n_heads: int) -> np.ndarray:
    grid = np.zeros((n_layers, n_heads))
    grid[layers] = scores.view(len(layers), n_heads).numpy()
    return grid


def choose_circuit(
    node: np.ndarray, edge: np.ndarray, cfg: CircuitConfig
) -> tuple[list[str], list[str], dict]:
    """Heads ranked by node score (edge score breaks ties, then head order); the circuit is a prefix of it."""
    n_h, rows = node.shape[1], cfg.layer_list(node.shape[0])
    node, edge = node[rows], edge[rows]
    order = np.lexsort((np.arange(node.size), -edge.ravel(), -node.ravel())) + rows[0] * n_h
    ranked = [head_name(int(i), n_h) for i in order]
    if cfg.circuit_threshold is not None:
        k = int((node.ravel() >= cfg.circuit_threshold).sum())
        rule = {"method": "sae_node", "rule": "threshold", "threshold": cfg.circuit_threshold, "size": k}
    else:
        k = min(cfg.circuit_k or max(1, math.ceil(0.1 * node.size)), node.size)
        rule = {"method": "sae_node", "rule": "top_k", "k": k, "size": k}
    return ranked, ranked[:k], rule


# ---- the run -----------------------------------------------------------------------------------------------------
def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _metrics(scores: dict[str, np.ndarray], truth: np.ndarray, effects: np.ndarray, k: int) -> dict:
    # Patching methods are scored by magnitude: a head that hurts the task when patched matters as much.
    ranked = {m: np.abs(s) if m.endswith("patching") else s for m, s in scores.items()}
    return {m: scoring.compare_scores(torch.as_tensor(s), truth, effects, k) for m, s in ranked.items()}


def _identity_names(handle: ModelHandle) -> tuple[str, ...]:
    ident = handle.identity
    return (ident.name, ident.source, handle.entry.hf_id or "")


def find_circuit(
    handle: ModelHandle, cfg: CircuitConfig, *, task_spec: Any = None, progress: ProgressFn | None = None
) -> CircuitResult:
    say = progress or (lambda stage, frac: None)
    say("building task", 0.0)
    task = make_task(cfg.task, handle.tokenizer, n=cfg.n_examples, seed=cfg.seed, spec=task_spec)
    prep = patching.prepare(handle, task)
    perf = task_performance(handle, prep)
    say("SAE: activations, training, codes", 0.05)
    scores, sae_info, runtime = sae_methods(handle, prep, cfg)
    say("attribution patching", 0.3)
    attr, runtime["attribution_patching"] = _timed(lambda: patching.attribution_patching(handle, prep))
    scores["attribution_patching"] = attr.numpy()

    def tick(i: int, n: int) -> None:
        say("activation patching", 0.35 + 0.6 * i / n)

    layers = cfg.layer_list(handle.facts.n_layers)
    ap, runtime["activation_patching"] = _timed(
        lambda: patching.activation_patching(handle, prep, tick, layers)
    )
    scores["activation_patching"] = ap.effects.numpy()
    say("metrics", 0.97)
    return _assemble(handle, cfg, task, perf, scores, sae_info, ap, runtime)


def _published(
    handle: ModelHandle, task: str, scores: dict, effects: np.ndarray, rows: list[int], k: int
) -> list:
    found = matching(_identity_names(handle), handle.facts.n_layers, handle.facts.n_heads, task)
    out = []
    for c in found:
        metrics = _metrics(scores, c.mask()[rows], effects, k)
        out.append(
            {
                "variant": c.variant,
                "source": c.source,
                "heads": list(c.heads),
                "metrics": {
                    m: {k_: v for k_, v in d.items() if k_ != "spearman"} for m, d in metrics.items()
                },
            }
        )
    return out


def _method_info(sae_info: dict[str, Any], ap: patching.PatchingResult) -> dict[str, dict[str, Any]]:
    return {
        "sae_node": dict(sae_info),
        "sae_edge": dict(sae_info),
        "attribution_patching": {"source": ap.mode},
        "activation_patching": {
            "mode": ap.mode,
            "clean_metric": ap.clean_metric,
            "corrupt_metric": ap.corrupt_metric,
        },
    }


def _assemble(
    handle, cfg: CircuitConfig, task: TaskData, perf, scores, sae_info, ap, runtime
) -> CircuitResult:
    """Metrics over the analysed layers only (all by default)."""
    n_h, rows = handle.facts.n_heads, cfg.layer_list(handle.facts.n_layers)
    effects = scores["activation_patching"]
    gap = ap.clean_metric - ap.corrupt_metric
    truth = np.zeros(effects.shape, dtype=bool)
    truth[rows] = np.abs(effects[rows]) >= cfg.gt_frac * abs(gap)
    ranked, circuit, rule = choose_circuit(scores["sae_node"], scores["sae_edge"], cfg)
    k = rule["size"] or 1
    analysed = {m: s[rows] for m, s in scores.items()}
    return CircuitResult(
        model=_model_json(handle),
        task={**task.to_json(), "performance": perf},
        config=cfg.to_json(),
        performance=perf,
        scores=scores,
        method_info=_method_info(sae_info, ap),
        ranked=ranked,
        circuit=circuit,
        circuit_rule=rule,
        ground_truth={
            "kind": "activation_patching",
            "mode": ap.mode,
            "threshold_frac": cfg.gt_frac,
            "gap": gap,
            "n_positive": int(truth.sum()),
            "heads": [head_name(int(i), n_h) for i in np.flatnonzero(truth.ravel())],
        },
        metrics=_metrics(analysed, truth[rows], effects[rows], k),
        published=_published(handle, task.name, analysed, effects[rows], rows, k),
        runtime_s={m: round(float(runtime[m]), 4) for m in METHODS},
        warnings=_warnings(perf, gap, truth[rows]),
    )


def _model_json(handle: ModelHandle) -> dict[str, Any]:
    f = handle.facts
    return {**asdict(handle.identity), "n_layers": f.n_layers, "n_heads": f.n_heads, "d_model": f.d_model}


def _warnings(perf: dict[str, Any], gap: float, truth: np.ndarray) -> list[str]:
    out = []
    if not perf["can_do_task"]:
        p, n = perf["positive"], perf["negative"]
        out.append(
            f"the model cannot do this task (accuracy {p['accuracy']:.2f} on positives; mean logit difference "
            f"{p['mean_logit_diff']:.2f} on positives vs {n['mean_logit_diff']:.2f} on negatives): circuit scores "
            "and their metrics are not meaningful"
        )
    if truth.all() or not truth.any():
        out.append(
            f"the patching ground truth has {int(truth.sum())} of {truth.size} heads: ROC-AUC is undefined"
        )
    if abs(gap) < 1e-6:
        out.append("clean and corrupted runs give the same metric: patching effects are all relative to zero")
    return out
