"""`CircuitConfig`: what one circuit run does, validated once (headscope.checks: strings, fractions, NaN and inf
give one InputError line). Kept apart from the finder so result.py and report.py can read it without a cycle."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from headscope import checks
from headscope.circuits.sae import SAEConfig
from headscope.circuits.tasks import TASKS
from headscope.circuits.variants import DEFAULT_VARIANT, check_variant
from headscope.codec import JsonCodec
from headscope.errors import InputError

# The methods a run scores against its ground truth, in report order (defined once: finder, report, CLI, app).
METHODS: tuple[str, ...] = ("sae_node", "sae_edge", "attribution_patching", "eap_ig")
# Methods whose scores are signed effect estimates: they are ranked by magnitude.
SIGNED_METHODS: frozenset[str] = frozenset({"attribution_patching", "eap_ig"})
GROUND_TRUTH_METHOD = "activation_patching"
Reduce = Literal["mean", "last"]


def _int_pair(value: Any, name: str) -> tuple[int, int]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise InputError(f"{name} must be (start, stop), got {value!r}")
    start, stop = (checks.integer(v, name, 0, 10_000) for v in value)
    if start >= stop:
        raise InputError(f"{name} must be (start, stop) with start < stop, got {value!r}")
    return start, stop


@dataclass(frozen=True)
class CircuitConfig(JsonCodec):
    """Read back from a report's `config` (`from_json`): keys older or newer versions wrote are ignored."""

    json_ignore_unknown = True

    task: str = "ioi"
    n_examples: int = 24  # positive/negative pairs
    seed: int = 0
    n_train: int = 10  # SAE training examples, drawn from the shuffled positive + negative pool
    reduce: Reduce = "mean"
    sae: SAEConfig = field(default_factory=SAEConfig)
    circuit_k: int | None = None  # top-k heads by SAE node score; None: 10 % of all heads
    circuit_threshold: float | None = None  # or: heads with node score ≥ this (exclusive with circuit_k)
    gt_frac: float = 0.03  # ground truth: |patching effect| ≥ gt_frac · |clean − corrupted|
    layers: tuple[int, int] | None = None  # analyse only layers [start, stop) (all: None); others score 0
    sae_seed: int | None = None  # SAE init and training split; None: `seed` (the bench varies it alone)
    ig_steps: int = 5  # EAP-IG interpolation steps
    faithfulness: bool = True  # faithfulness curves (MIB-style) for every method
    edges: bool = False  # path-patching edge ground truth and the edge metrics
    edge_heads: int = (
        20  # edges: all earlier→later pairs among this many top ground-truth heads (+ as many random)
    )
    stability: bool = False  # bootstrap over pairs and SAE seeds
    n_bootstrap: int = 200
    stability_seeds: int = 5  # SAE seeds retrained for stability
    sae_variant: str = DEFAULT_VARIANT  # the SAE variant behind sae_node / sae_edge (circuits/variants.py)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "task", checks.choice(self.task, "task", [*TASKS, "custom"]))
        set_(self, "n_examples", checks.integer(self.n_examples, "n_examples", 2, 512))
        set_(self, "seed", checks.integer(self.seed, "seed", 0, 2**31 - 1))
        set_(self, "n_train", checks.integer(self.n_train, "n_train", 2, 1024))
        set_(self, "reduce", checks.choice(self.reduce, "reduce", ("mean", "last")))
        if not isinstance(self.sae, SAEConfig):
            raise InputError(f"sae must be an SAEConfig, got {type(self.sae).__name__}")
        if self.circuit_k is not None and self.circuit_threshold is not None:
            raise InputError("give circuit_k or circuit_threshold, not both")
        set_(self, "circuit_k", checks.optional_integer(self.circuit_k, "circuit_k", 1, 100_000))
        if self.circuit_threshold is not None:
            set_(self, "circuit_threshold", checks.number(self.circuit_threshold, "circuit_threshold"))
        set_(self, "gt_frac", checks.number(self.gt_frac, "gt_frac", 0, 1, lo_open=True))
        if self.gt_frac >= 1:
            raise InputError(f"gt_frac must be in (0, 1), got {self.gt_frac!r}")
        if self.layers is not None:
            set_(self, "layers", _int_pair(self.layers, "layers"))
        set_(self, "sae_seed", checks.optional_integer(self.sae_seed, "sae_seed", 0, 2**31 - 1))
        set_(self, "ig_steps", checks.integer(self.ig_steps, "ig_steps", 1, 64))
        for name in ("faithfulness", "edges", "stability"):
            checks.flag(getattr(self, name), name)
        set_(self, "edge_heads", checks.integer(self.edge_heads, "edge_heads", 2, 200))
        set_(self, "n_bootstrap", checks.integer(self.n_bootstrap, "n_bootstrap", 10, 10_000))
        set_(self, "stability_seeds", checks.integer(self.stability_seeds, "stability_seeds", 1, 50))
        set_(self, "sae_variant", check_variant(self.sae_variant))

    @property
    def sae_seed_used(self) -> int:
        return self.seed if self.sae_seed is None else self.sae_seed

    def layer_list(self, n_layers: int) -> list[int]:
        if self.layers is None:
            return list(range(n_layers))
        if self.layers[1] > n_layers:
            raise InputError(f"layers {list(self.layers)} exceed the model's {n_layers} layers")
        return list(range(*self.layers))
