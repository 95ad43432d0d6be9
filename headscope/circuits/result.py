"""Typed circuit results: what `find_circuit` returns, what a report (schema 2.1) serialises, what the app draws.

Every field is a frozen, typed value — score grids as [layer, head] float arrays, heads as "L.H" strings — and
each part of a report maps to and from JSON through the one codec (headscope/codec.py: `JsonCodec`, `jfield`);
`CircuitResult` assembles those parts into the report's layout (`_payload` / `_from_payload`). report.py validates
that JSON; this module only maps. The ground truth (how it was made) is kept apart from the scored methods: it is
never one of them. Edge-level results (`edge_attribution`) are typed in edges_result.py.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from headscope.circuits import report, scoring
from headscope.circuits.config import SIGNED_METHODS, CircuitConfig
from headscope.circuits.edges_result import EdgeAttribution
from headscope.circuits.variants import SAERecord
from headscope.codec import JsonCodec, decode, encode, jfield
from headscope.errors import InputError

Grid = np.ndarray  # float [n_layers, n_heads]


def head_name(i: int, n_heads: int) -> str:
    """Flat index (layer-major) → "L.H"."""
    return f"{i // n_heads}.{i % n_heads}"


def grid_json(grid: Grid) -> list[list[float]]:
    return [[float(v) for v in row] for row in np.asarray(grid, dtype=float)]


def _grid(data: Any) -> Grid:
    return np.asarray(data, dtype=float)


def _filled(data: Any, where: str, **defaults: Any) -> dict[str, Any]:
    """An object with `defaults` for keys older reports may lack (the codec requires every field it has no
    default for)."""
    if not isinstance(data, dict):
        raise InputError(f"{where} must be an object, got {type(data).__name__}")
    return {**defaults, **data}


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """`data` without the keys `cls` does not know: a newer report's extra fields are kept in the report and
    ignored here."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


@dataclass(frozen=True)
class ModelInfo(JsonCodec):
    name: str
    kind: str
    source: str
    sha256: str | None
    revision: str | None
    license: str
    n_layers: int
    n_heads: int
    d_model: int

    @classmethod
    def from_json(cls, data: Any, where: str | None = None) -> ModelInfo:
        return decode(cls, _known(cls, _filled(data, "model", license="", d_model=0)), where or "model")


@dataclass(frozen=True)
class Side(JsonCodec):
    accuracy: float
    mean_logit_diff: float


@dataclass(frozen=True)
class Performance(JsonCodec):
    positive: Side
    negative: Side
    can_do_task: bool


@dataclass(frozen=True)
class TaskInfo(JsonCodec):
    name: str
    title: str
    seed: int
    n_positive: int
    n_negative: int
    notes: tuple[str, ...]
    example_positive: str
    example_negative: str
    example_tokens: tuple[str, ...] = ()  # the positive example as the model's tokens (for graph exports)
    example_token_ids: tuple[int, ...] = ()
    answer_token: str = ""  # the example's (first) answer token, its id and the model's probability for it
    answer_id: int = -1
    answer_prob: float | None = None

    def __post_init__(self) -> None:
        if not self.title:
            object.__setattr__(self, "title", self.name)

    @classmethod
    def from_json(cls, data: Any, where: str | None = None) -> TaskInfo:
        """From a report's `task` (its `performance` is read by `Performance`)."""
        d = _filled(data, "task", title="", notes=[], example_positive="", example_negative="")
        return decode(cls, _known(cls, d), where or "task")


@dataclass(frozen=True)
class SAEInfo(JsonCodec):
    decoder_norm: str
    l1: float
    mse_first_epoch: float
    mse_final: float
    n_train_examples: int
    n_code_examples: int  # codes are taken over every example, the training ones included
    n_distinct_codes: int

    @classmethod
    def from_json(cls, data: Any, where: str | None = None) -> SAEInfo:
        """From a method's `info` (1.0 reports named the code examples `n_eval_examples` and normalised atoms)."""
        d = _filled(data, "info", decoder_norm="atoms", l1=0.02)
        d.setdefault("n_code_examples", d.get("n_eval_examples", 0))
        return decode(cls, _known(cls, d), where or "info")


@dataclass(frozen=True)
class MethodScores:
    """One scored method: its [layer, head] scores (higher = more important; signed effect estimates for the
    gradient methods), how long it took end to end, and what it needed to know. Its report part is
    {"scores": grid, "info": {SAE facts, steps}}; its runtime sits in the report's `runtime_s`."""

    name: str
    scores: Grid
    runtime_s: float
    sae: SAEInfo | None = None
    steps: int | None = None  # EAP-IG interpolation steps

    def ranking(self) -> Grid:
        """The values heads are ranked by: magnitudes for signed estimates (a head that hurts matters too)."""
        return np.abs(self.scores) if self.name in SIGNED_METHODS else np.asarray(self.scores, dtype=float)

    def to_json(self) -> dict[str, Any]:
        info: dict[str, Any] = self.sae.to_json() if self.sae is not None else {}
        if self.steps is not None:
            info["steps"] = self.steps
        return {"scores": encode(np.asarray(self.scores, dtype=float)), "info": info}

    @classmethod
    def from_json(cls, name: str, d: dict[str, Any], runtime_s: float) -> MethodScores:
        info = d.get("info", {})
        sae = SAEInfo.from_json(info) if name.startswith("sae_") and "mse_final" in info else None
        return cls(name, _grid(d["scores"]), runtime_s, sae, info.get("steps"))


@dataclass(frozen=True)
class GroundTruth(JsonCodec):
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
    runtime_s: float = jfield(digits=4)

    json_extra = ("n_positive",)

    @property
    def n_positive(self) -> int:
        return len(self.heads)

    @property
    def gap(self) -> float:
        return self.clean_metric - self.corrupt_metric

    def mask(self) -> np.ndarray:
        m = np.zeros(self.effects.shape, dtype=bool)
        for h in self.heads:
            layer, head = (int(v) for v in h.split("."))
            m[layer, head] = True
        return m


@dataclass(frozen=True)
class RocCurve(JsonCodec):
    fpr: tuple[float, ...]
    tpr: tuple[float, ...]


CI = tuple[float, float]


@dataclass(frozen=True)
class Metrics(JsonCodec):
    """A method against a binary truth: ROC-AUC (None when the truth is all or nothing) with its bootstrap
    interval over prompt pairs, precision and recall of its top k (k = the circuit's size), Spearman against
    |patching effect|, and the ROC points."""

    roc_auc: float | None
    precision: float
    recall: float
    spearman: float | None
    roc: RocCurve
    roc_auc_ci: CI | None = None

    @classmethod
    def of(cls, scores: np.ndarray, truth: np.ndarray, effects: np.ndarray, k: int) -> Metrics:
        """`scores` (what heads are ranked by) against the binary `truth`; precision/recall at k."""
        return cls.from_json(scoring.metrics_json(scores, truth, effects, k))

    @classmethod
    def from_json(cls, data: Any, where: str | None = None) -> Metrics:
        """Unknown keys (a newer report's metrics) are ignored; null precision/recall read as 0."""
        d = _known(cls, _filled(data, "metrics", spearman=None, roc={"fpr": [], "tpr": []}))
        d["precision"], d["recall"] = d.get("precision") or 0.0, d.get("recall") or 0.0
        return decode(cls, d, where or "metrics")


def _metrics_map(data: Any, where: str) -> dict[str, Metrics]:
    return {m: Metrics.from_json(v, f"{where}.{m}") for m, v in _filled(data, where).items()}


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
class Published(JsonCodec):
    """A published head list for this model and task (assets/circuits), with every method's metrics against it."""

    variant: str
    source: str
    heads: tuple[str, ...]
    metrics: dict[str, Metrics]

    @classmethod
    def from_json(cls, data: Any, where: str | None = None) -> Published:
        d = _filled(data, "published")
        metrics = _metrics_map(d.get("metrics", {}), "published.metrics")
        return cls(str(d["variant"]), str(d["source"]), tuple(d["heads"]), metrics)


@dataclass(frozen=True)
class FaithCurve(JsonCodec):
    """One method's faithfulness (papers.md §9.3) at circuit sizes k: `kept` = f(top k kept, the rest mean-
    ablated), `removed` = the same normalisation with only the top k ablated; CPR = area under `kept` over the
    size fraction, CMD = area under |1 − kept| (each with a bootstrap interval over prompt pairs); k80 = the
    smallest k with f ≥ 0.8 (None if none)."""

    method: str
    sizes: tuple[int, ...]
    kept: tuple[float, ...]
    removed: tuple[float, ...]
    cpr: float
    cmd: float
    k80: int | None
    cpr_ci: CI | None = None
    cmd_ci: CI | None = None


@dataclass(frozen=True)
class Faithfulness(JsonCodec):
    ablation: str  # "mean": heads outside the circuit take the negatives' mean z
    full_metric: float  # m(N): nothing ablated (equals the clean metric)
    empty_metric: float  # m(∅): every analysed head ablated
    n_components: int  # analysed heads
    curves: tuple[FaithCurve, ...]
    runtime_s: float

    def curve(self, method: str) -> FaithCurve | None:
        return next((c for c in self.curves if c.method == method), None)


@dataclass(frozen=True)
class Edge(JsonCodec):
    sender: str
    receiver: str
    effect: float  # path-patching effect of the sender through the receiver's q/k/v input
    in_truth: bool
    drawn: str  # "top" (among the top ground-truth heads) or "random"
    sae_edge: float  # the SAE's pair score for (sender, receiver)


@dataclass(frozen=True)
class Edges(JsonCodec):
    via: str  # receiver inputs the sender's change reaches: "qkv"
    threshold_frac: float
    edges: tuple[Edge, ...]
    metrics: dict[str, Metrics]  # "sae_edge" against the edge truth
    runtime_s: float = jfield(digits=4)

    @classmethod
    def from_json(cls, data: Any, where: str | None = None) -> Edges:
        d = _filled(data, "edges")
        base = decode(cls, {**d, "metrics": {}}, where or "edges")
        return dataclasses.replace(base, metrics=_metrics_map(d.get("metrics", {}), "edges.metrics"))


@dataclass(frozen=True)
class MethodStability(JsonCodec):
    method: str
    k: int  # size of the top-k sets compared
    jaccard_mean: float  # Jaccard of each resample's top k with the full run's
    jaccard_ci: CI
    roc_auc_mean: float | None
    roc_auc_std: float | None
    roc_auc_ci: CI | None
    stable: bool  # jaccard_mean ≥ the stability threshold


@dataclass(frozen=True)
class Stability(JsonCodec):
    n_bootstrap: int
    sae_seeds: tuple[int, ...]
    confidence: float
    jaccard_threshold: float
    methods: tuple[MethodStability, ...]
    runtime_s: float


@dataclass(frozen=True)
class Intervals(JsonCodec):
    """How the report's intervals (`roc_auc_ci`, `cpr_ci`, `cmd_ci`) were made: a percentile bootstrap over prompt
    pairs from stored per-pair values (patching effects, gradient attributions, the run's SAE codes, per-pair
    circuit metrics); no new forwards, no SAE retrained (`stability` varies the SAE seed too)."""

    n_bootstrap: int
    confidence: float
    seed: int
    method: str = "percentile bootstrap over prompt pairs (stored per-pair values; the run's SAE)"


@dataclass(frozen=True)
class CircuitResult:
    """Everything one run found. `to_json()` is the schema-2.1 report (validated); `from_json` reads one back."""

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
    edge_attribution: EdgeAttribution | None = None
    intervals: Intervals | None = None

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


def _optional(value: JsonCodec | None) -> Any:
    return None if value is None else value.to_json()


def _payload(r: CircuitResult) -> dict[str, Any]:
    c = r.config
    return {
        "model": r.model.to_json(),
        "task": {**r.task.to_json(), "performance": r.performance.to_json()},
        "config": c.to_json(),
        "seeds": {"data": c.seed, "sae": c.sae_seed_used, "split": c.sae_seed_used},
        "ground_truth": r.ground_truth.to_json(),
        "methods": {m.name: m.to_json() for m in r.methods},
        "metrics": {m: v.to_json() for m, v in r.metrics.items()},
        "ranked": list(r.circuit.ranked),
        "circuit": list(r.circuit.heads),
        "circuit_rule": r.circuit.rule_json(),
        "published": [p.to_json() for p in r.published],
        "faithfulness": _optional(r.faithfulness),
        "edges": _optional(r.edges),
        "stability": _optional(r.stability),
        "edge_attribution": _optional(r.edge_attribution),
        "intervals": _optional(r.intervals),
        "runtime_s": {m.name: round(m.runtime_s, 4) for m in r.methods},
        "warnings": list(r.warnings),
        "sae_file": r.sae_file,
        **({} if r.sae is None else {"sae": r.sae.to_json()}),
        "created_at": r.created_at,
        "software": dict(r.software),
    }


def _read(cls: Any, data: Any, where: str) -> Any:
    return None if data is None else cls.from_json(data, where)


def _from_payload(d: dict[str, Any]) -> CircuitResult:
    rule = d["circuit_rule"]
    return CircuitResult(
        model=ModelInfo.from_json(d["model"]),
        task=TaskInfo.from_json(d["task"]),
        performance=Performance.from_json(d["task"]["performance"], "task.performance"),
        config=CircuitConfig.from_json(d["config"]),
        ground_truth=GroundTruth.from_json(d["ground_truth"], "ground_truth"),
        methods=tuple(
            MethodScores.from_json(m, b, float(d["runtime_s"][m])) for m, b in d["methods"].items()
        ),
        metrics=_metrics_map(d["metrics"], "metrics"),
        circuit=Circuit(
            tuple(d["ranked"]),
            tuple(d["circuit"]),
            str(rule["method"]),
            str(rule["rule"]),
            rule.get("k"),
            rule.get("threshold"),
        ),
        published=tuple(Published.from_json(p) for p in d["published"]),
        faithfulness=_read(Faithfulness, d.get("faithfulness"), "faithfulness"),
        edges=_read(Edges, d.get("edges"), "edges"),
        stability=_read(Stability, d.get("stability"), "stability"),
        warnings=tuple(d["warnings"]),
        sae_file=d.get("sae_file"),
        sae=None if d.get("sae") is None else SAERecord.from_json(d["sae"]),
        created_at=str(d.get("created_at", "")),
        software={str(k): str(v) for k, v in d.get("software", {}).items()},
        edge_attribution=_read(EdgeAttribution, d.get("edge_attribution"), "edge_attribution"),
        intervals=_read(Intervals, d.get("intervals"), "intervals"),
    )
