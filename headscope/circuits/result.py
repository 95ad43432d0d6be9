"""Typed circuit results: what `find_circuit` returns, what a report (schema 2.0) serialises, what the app draws.

Every field is a frozen, typed value — score grids as [layer, head] float arrays, heads as "L.H" strings — and
each type converts to and from its JSON part (`to_json` / `from_json`). report.py validates that JSON; this module
only maps. The ground truth (how it was made) is kept apart from the scored methods: it is never one of them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from headscope.circuits import report, scoring
from headscope.circuits.config import GROUND_TRUTH_METHOD, SIGNED_METHODS, CircuitConfig
from headscope.circuits.variants import SAERecord

Grid = np.ndarray  # float [n_layers, n_heads]


def head_name(i: int, n_heads: int) -> str:
    """Flat index (layer-major) → "L.H"."""
    return f"{i // n_heads}.{i % n_heads}"


def grid_json(grid: Grid) -> list[list[float]]:
    return [[float(v) for v in row] for row in np.asarray(grid, dtype=float)]


def _grid(data: Any) -> Grid:
    return np.asarray(data, dtype=float)


def _opt(x: Any) -> float | None:
    return None if x is None else float(x)


def _nan(x: Any) -> float:
    """A float, with JSON null read back as NaN (reports store NaN as null)."""
    return math.nan if x is None else float(x)


def _floats(xs: Any) -> tuple[float, ...]:
    return tuple(_nan(x) for x in xs)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    kind: str
    source: str
    sha256: str | None
    revision: str | None
    license: str
    n_layers: int
    n_heads: int
    d_model: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ModelInfo:
        return cls(
            str(d["name"]), str(d["kind"]), str(d["source"]), d.get("sha256"), d.get("revision"),
            str(d.get("license", "")), int(d["n_layers"]), int(d["n_heads"]), int(d.get("d_model", 0)),
        )  # fmt: skip


@dataclass(frozen=True)
class Side:
    accuracy: float
    mean_logit_diff: float


@dataclass(frozen=True)
class Performance:
    positive: Side
    negative: Side
    can_do_task: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Performance:
        def side(s: dict[str, Any]) -> Side:
            return Side(float(s["accuracy"]), float(s["mean_logit_diff"]))

        return cls(side(d["positive"]), side(d["negative"]), bool(d["can_do_task"]))


@dataclass(frozen=True)
class TaskInfo:
    name: str
    title: str
    seed: int
    n_positive: int
    n_negative: int
    notes: tuple[str, ...]
    example_positive: str
    example_negative: str
    example_tokens: tuple[str, ...] = ()  # the positive example as the model's tokens (for graph exports)

    def to_json(self, perf: Performance) -> dict[str, Any]:
        out = {**asdict(self), "notes": list(self.notes), "example_tokens": list(self.example_tokens)}
        return {**out, "performance": perf.to_json()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TaskInfo:
        return cls(
            str(d["name"]), str(d.get("title") or d["name"]), int(d["seed"]), int(d["n_positive"]),
            int(d["n_negative"]), tuple(str(n) for n in d.get("notes", ())),
            str(d.get("example_positive", "")), str(d.get("example_negative", "")),
            tuple(str(t) for t in d.get("example_tokens", ())),
        )  # fmt: skip


@dataclass(frozen=True)
class SAEInfo:
    decoder_norm: str
    l1: float
    mse_first_epoch: float
    mse_final: float
    n_train_examples: int
    n_code_examples: int  # codes are taken over every example, the training ones included
    n_distinct_codes: int

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SAEInfo:
        return cls(
            str(d.get("decoder_norm", "atoms")), float(d.get("l1", 0.02)), float(d["mse_first_epoch"]),
            float(d["mse_final"]), int(d["n_train_examples"]),
            int(d.get("n_code_examples", d.get("n_eval_examples", 0))), int(d["n_distinct_codes"]),
        )  # fmt: skip


@dataclass(frozen=True)
class MethodScores:
    """One scored method: its [layer, head] scores (higher = more important; signed effect estimates for the
    gradient methods), how long it took end to end, and what it needed to know."""

    name: str
    scores: Grid
    runtime_s: float
    sae: SAEInfo | None = None
    steps: int | None = None  # EAP-IG interpolation steps

    def ranking(self) -> Grid:
        """The values heads are ranked by: magnitudes for signed estimates (a head that hurts matters too)."""
        return np.abs(self.scores) if self.name in SIGNED_METHODS else np.asarray(self.scores, dtype=float)

    def to_json(self) -> dict[str, Any]:
        info: dict[str, Any] = asdict(self.sae) if self.sae is not None else {}
        if self.steps is not None:
            info["steps"] = self.steps
        return {"scores": grid_json(self.scores), "info": info}

    @classmethod
    def from_json(cls, name: str, d: dict[str, Any], runtime_s: float) -> MethodScores:
        info = d.get("info", {})
        sae = SAEInfo.from_json(info) if name.startswith("sae_") and "mse_final" in info else None
        return cls(name, _grid(d["scores"]), runtime_s, sae, info.get("steps"))


@dataclass(frozen=True)
class GroundTruth:
    """How the reference heads were made: activation patching (paired corrupted → clean, or mean ablation) of
    every analysed head, thresholded at `threshold_frac` of |clean − corrupted|."""

    method: str
    mode: str
    metric: str
    threshold_frac: float
    effects: Grid  # metric(clean) − metric(patched), mean over pairs
    clean_metric: float
    corrupt_metric: float
    layers: tuple[int, ...]  # analysed layers (others are not part of the truth)
    heads: tuple[str, ...]
    runtime_s: float

    @property
    def gap(self) -> float:
        return self.clean_metric - self.corrupt_metric

    def mask(self) -> np.ndarray:
        m = np.zeros(self.effects.shape, dtype=bool)
        for h in self.heads:
            layer, head = (int(v) for v in h.split("."))
            m[layer, head] = True
        return m

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method, "mode": self.mode, "metric": self.metric,
            "threshold_frac": self.threshold_frac, "heads": list(self.heads), "n_positive": len(self.heads),
            "runtime_s": round(self.runtime_s, 4), "effects": grid_json(self.effects),
            "clean_metric": self.clean_metric, "corrupt_metric": self.corrupt_metric, "layers": list(self.layers),
        }  # fmt: skip

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> GroundTruth:
        return cls(
            str(d.get("method", GROUND_TRUTH_METHOD)), str(d["mode"]), str(d["metric"]), float(d["threshold_frac"]),
            _grid(d["effects"]), float(d["clean_metric"]), float(d["corrupt_metric"]),
            tuple(int(x) for x in d["layers"]), tuple(d["heads"]), float(d["runtime_s"]),
        )  # fmt: skip


@dataclass(frozen=True)
class RocCurve:
    fpr: tuple[float, ...]
    tpr: tuple[float, ...]


@dataclass(frozen=True)
class Metrics:
    """A method against a binary truth: ROC-AUC (None when the truth is all or nothing), precision and recall of
    its top k (k = the circuit's size), Spearman against |patching effect|, and the ROC points."""

    roc_auc: float | None
    precision: float
    recall: float
    spearman: float | None
    roc: RocCurve

    def to_json(self) -> dict[str, Any]:
        return {
            "roc_auc": self.roc_auc, "precision": self.precision, "recall": self.recall,
            "spearman": self.spearman, "roc": {"fpr": list(self.roc.fpr), "tpr": list(self.roc.tpr)},
        }  # fmt: skip

    @classmethod
    def of(cls, scores: np.ndarray, truth: np.ndarray, effects: np.ndarray, k: int) -> Metrics:
        """`scores` (what heads are ranked by) against the binary `truth`; precision/recall at k."""
        return cls.from_json(scoring.metrics_json(scores, truth, effects, k))

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Metrics:
        roc = d.get("roc") or {"fpr": [], "tpr": []}
        return cls(
            _opt(d.get("roc_auc")), float(d.get("precision") or 0.0), float(d.get("recall") or 0.0),
            _opt(d.get("spearman")), RocCurve(_floats(roc["fpr"]), _floats(roc["tpr"])),
        )  # fmt: skip


@dataclass(frozen=True)
class Circuit:
    """The heads ranked by the SAE node score (edge score breaks ties, then head order) and the circuit: a prefix."""

    ranked: tuple[str, ...]
    heads: tuple[str, ...]
    method: str
    rule: str  # "top_k" or "threshold"
    k: int | None = None
    threshold: float | None = None

    def rule_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, "rule": self.rule, "size": len(self.heads)}
        if self.k is not None:
            out["k"] = self.k
        if self.threshold is not None:
            out["threshold"] = self.threshold
        return out


@dataclass(frozen=True)
class Published:
    """A published head list for this model and task (assets/circuits), with every method's metrics against it."""

    variant: str
    source: str
    heads: tuple[str, ...]
    metrics: dict[str, Metrics]

    def to_json(self) -> dict[str, Any]:
        return {
            "variant": self.variant, "source": self.source, "heads": list(self.heads),
            "metrics": {m: v.to_json() for m, v in self.metrics.items()},
        }  # fmt: skip

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Published:
        metrics = {m: Metrics.from_json(v) for m, v in d["metrics"].items()}
        return cls(str(d["variant"]), str(d["source"]), tuple(d["heads"]), metrics)


@dataclass(frozen=True)
class FaithCurve:
    """One method's faithfulness (papers.md §9.3) at circuit sizes k: `kept` = f(top k kept, the rest mean-
    ablated), `removed` = the same normalisation with only the top k ablated; CPR = area under `kept` over the
    size fraction, CMD = area under |1 − kept|; k80 = the smallest k with f ≥ 0.8 (None if none)."""

    method: str
    sizes: tuple[int, ...]
    kept: tuple[float, ...]
    removed: tuple[float, ...]
    cpr: float
    cmd: float
    k80: int | None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> FaithCurve:
        return cls(
            str(d["method"]), tuple(int(k) for k in d["sizes"]), _floats(d["kept"]), _floats(d["removed"]),
            _nan(d["cpr"]), _nan(d["cmd"]), None if d.get("k80") is None else int(d["k80"]),
        )  # fmt: skip


@dataclass(frozen=True)
class Faithfulness:
    ablation: str  # "mean": heads outside the circuit take the negatives' mean z
    full_metric: float  # m(N): nothing ablated (equals the clean metric)
    empty_metric: float  # m(∅): every analysed head ablated
    n_components: int  # analysed heads
    curves: tuple[FaithCurve, ...]
    runtime_s: float

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["curves"] = [asdict(c) for c in self.curves]
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Faithfulness:
        return cls(
            str(d["ablation"]), float(d["full_metric"]), float(d["empty_metric"]), int(d["n_components"]),
            tuple(FaithCurve.from_json(c) for c in d["curves"]), float(d["runtime_s"]),
        )  # fmt: skip

    def curve(self, method: str) -> FaithCurve | None:
        return next((c for c in self.curves if c.method == method), None)


@dataclass(frozen=True)
class Edge:
    sender: str
    receiver: str
    effect: float  # path-patching effect of the sender through the receiver's q/k/v input
    in_truth: bool
    drawn: str  # "top" (among the top ground-truth heads) or "random"
    sae_edge: float  # the SAE's pair score for (sender, receiver)


@dataclass(frozen=True)
class Edges:
    via: str  # receiver inputs the sender's change reaches: "qkv"
    threshold_frac: float
    edges: tuple[Edge, ...]
    metrics: dict[str, Metrics]  # "sae_edge" against the edge truth
    runtime_s: float

    def to_json(self) -> dict[str, Any]:
        return {
            "via": self.via, "threshold_frac": self.threshold_frac, "edges": [asdict(e) for e in self.edges],
            "metrics": {m: v.to_json() for m, v in self.metrics.items()}, "runtime_s": round(self.runtime_s, 4),
        }  # fmt: skip

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Edges:
        edges = tuple(
            Edge(str(e["sender"]), str(e["receiver"]), float(e["effect"]), bool(e["in_truth"]), str(e["drawn"]),
                 float(e["sae_edge"]))
            for e in d["edges"]
        )  # fmt: skip
        metrics = {m: Metrics.from_json(v) for m, v in d["metrics"].items()}
        return cls(str(d["via"]), float(d["threshold_frac"]), edges, metrics, float(d["runtime_s"]))


@dataclass(frozen=True)
class MethodStability:
    method: str
    k: int  # size of the top-k sets compared
    jaccard_mean: float  # Jaccard of each resample's top k with the full run's
    jaccard_ci: tuple[float, float]
    roc_auc_mean: float | None
    roc_auc_std: float | None
    roc_auc_ci: tuple[float, float] | None
    stable: bool  # jaccard_mean ≥ the stability threshold

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> MethodStability:
        ci = d.get("roc_auc_ci")
        return cls(
            str(d["method"]), int(d["k"]), float(d["jaccard_mean"]), (d["jaccard_ci"][0], d["jaccard_ci"][1]),
            _opt(d.get("roc_auc_mean")), _opt(d.get("roc_auc_std")), None if ci is None else (ci[0], ci[1]),
            bool(d["stable"]),
        )  # fmt: skip


@dataclass(frozen=True)
class Stability:
    n_bootstrap: int
    sae_seeds: tuple[int, ...]
    confidence: float
    jaccard_threshold: float
    methods: tuple[MethodStability, ...]
    runtime_s: float

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["sae_seeds"] = list(self.sae_seeds)
        out["methods"] = [
            {**asdict(m), "jaccard_ci": list(m.jaccard_ci), "roc_auc_ci": None if m.roc_auc_ci is None else list(m.roc_auc_ci)}
            for m in self.methods
        ]  # fmt: skip
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Stability:
        return cls(
            int(d["n_bootstrap"]), tuple(int(s) for s in d["sae_seeds"]), float(d["confidence"]),
            float(d["jaccard_threshold"]), tuple(MethodStability.from_json(m) for m in d["methods"]),
            float(d["runtime_s"]),
        )  # fmt: skip


@dataclass(frozen=True)
class CircuitResult:
    """Everything one run found. `to_json()` is the schema-2.0 report (validated); `from_json` reads one back."""

    model: ModelInfo
    task: TaskInfo
    performance: Performance
    config: CircuitConfig
    ground_truth: GroundTruth
    methods: tuple[MethodScores, ...]
    metrics: dict[str, Metrics]
    circuit: Circuit
    published: tuple[Published, ...] = ()
    faithfulness: Faithfulness | None = None
    edges: Edges | None = None
    stability: Stability | None = None
    warnings: tuple[str, ...] = ()
    sae_file: str | None = None
    created_at: str = ""
    sae: SAERecord | None = None  # the SAE variant behind sae_node / sae_edge, and where its SAE was saved
    software: dict[str, str] = field(default_factory=dict)

    def method(self, name: str) -> MethodScores:
        for m in self.methods:
            if m.name == name:
                return m
        raise KeyError(name)

    @property
    def runtime_s(self) -> dict[str, float]:
        return {m.name: m.runtime_s for m in self.methods}

    def to_json(self) -> dict[str, Any]:
        return report.build(_payload(self))

    @classmethod
    def from_json(cls, data: Any) -> CircuitResult:
        """A validated (and, if older, migrated) report as typed values."""
        return _from_payload(report.validate_report(report.migrate(data)))


def _payload(r: CircuitResult) -> dict[str, Any]:
    c = r.config
    return {
        "model": r.model.to_json(),
        "task": r.task.to_json(r.performance),
        "config": c.to_json(),
        "seeds": {"data": c.seed, "sae": c.sae_seed_used, "split": c.sae_seed_used},
        "ground_truth": r.ground_truth.to_json(),
        "methods": {m.name: m.to_json() for m in r.methods},
        "metrics": {m: v.to_json() for m, v in r.metrics.items()},
        "ranked": list(r.circuit.ranked),
        "circuit": list(r.circuit.heads),
        "circuit_rule": r.circuit.rule_json(),
        "published": [p.to_json() for p in r.published],
        "faithfulness": None if r.faithfulness is None else r.faithfulness.to_json(),
        "edges": None if r.edges is None else r.edges.to_json(),
        "stability": None if r.stability is None else r.stability.to_json(),
        "runtime_s": {m.name: round(m.runtime_s, 4) for m in r.methods},
        "warnings": list(r.warnings),
        "sae_file": r.sae_file,
        **({} if r.sae is None else {"sae": r.sae.to_json()}),
        "created_at": r.created_at,
        "software": dict(r.software),
    }


def _from_payload(d: dict[str, Any]) -> CircuitResult:
    rule = d["circuit_rule"]
    return CircuitResult(
        model=ModelInfo.from_json(d["model"]),
        task=TaskInfo.from_json(d["task"]),
        performance=Performance.from_json(d["task"]["performance"]),
        config=CircuitConfig.from_json(d["config"]),
        ground_truth=GroundTruth.from_json(d["ground_truth"]),
        methods=tuple(
            MethodScores.from_json(m, b, float(d["runtime_s"][m])) for m, b in d["methods"].items()
        ),
        metrics={m: Metrics.from_json(v) for m, v in d["metrics"].items()},
        circuit=Circuit(
            tuple(d["ranked"]),
            tuple(d["circuit"]),
            str(rule["method"]),
            str(rule["rule"]),
            rule.get("k"),
            rule.get("threshold"),
        ),
        published=tuple(Published.from_json(p) for p in d["published"]),
        faithfulness=None if d.get("faithfulness") is None else Faithfulness.from_json(d["faithfulness"]),
        edges=None if d.get("edges") is None else Edges.from_json(d["edges"]),
        stability=None if d.get("stability") is None else Stability.from_json(d["stability"]),
        warnings=tuple(d["warnings"]),
        sae_file=d.get("sae_file"),
        sae=None if d.get("sae") is None else SAERecord.from_json(d["sae"]),
        created_at=str(d.get("created_at", "")),
        software={str(k): str(v) for k, v in d.get("software", {}).items()},
    )
