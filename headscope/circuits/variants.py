"""Discrete-SAE variants: named, documented configurations of the circuit finder's SAE method, registered beside
the paper's method (`reference`, kept exact) and two baselines without an SAE (issue 23).

A variant says where each head is read (variants_read.py), how head outputs are scaled before the one shared SAE,
how many examples train it and how many latents it has, how a head's code is represented (argmax, top-k, soft) and
how codes become a node score (variants_score.py). Every score is a function of per-example data stored by the run
(`Stored`: latent activations with the trained SAE fixed, or head outputs for the baselines), so
`resampled_scores` rescores a bootstrap resample of examples without retraining.

    v = VARIANTS["reference"]                       # the paper, exactly
    run = fit_variant(x, v.resolve(...), seed=0)    # variants_fit.py: train once, store, score
    resampled_scores(v, run.stored, pos_rows, neg_rows)

Each catalogue entry (bottom of this file) names one change from the paper's method and why it is worth measuring.

`sae_node` is the variant's node score; `sae_edge` is always the paper's edge method (papers.md §2.5) on the
variant's argmax codes. The study (bench/circuits_sae_variants.py) measures every variant on every task.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from headscope import checks
from headscope.circuits.sae import SAEConfig
from headscope.circuits.variants_read import NORMS, READS
from headscope.circuits.variants_score import CODES, SCORES
from headscope.codec import JsonCodec
from headscope.errors import InputError
from headscope.registry import Registry

BASELINE_SCORES = frozenset({"mean_gap", "probe"})


@dataclass(frozen=True)
class SAEVariant:
    """One named configuration. `None` fields take the run's own value (CircuitConfig: reduce, n_train, sae)."""

    name: str
    summary: str  # what it changes, one line
    motivation: str  # papers.md section or the measurement that motivates it
    score: str = "set_difference"
    code: str = "argmax"
    k: int = 1  # topk: codes per (example, head)
    read: str | None = None
    norm: str = "none"
    n_train: int | None = None
    n_latents: int | None = None
    epochs: int | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        for name in ("name", "summary", "motivation"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise InputError(f"{name} must be a non-empty string, got {value!r}")
        set_(self, "score", SCORES.check(self.score, field="score"))
        set_(self, "code", checks.choice(self.code, "code", CODES))
        set_(self, "k", checks.integer(self.k, "k", 1, 64))
        if self.read is not None:
            set_(self, "read", checks.choice(self.read, "read", READS))
        set_(self, "norm", checks.choice(self.norm, "norm", NORMS))
        set_(self, "n_train", checks.optional_integer(self.n_train, "n_train", 2, 1024))
        set_(self, "n_latents", checks.optional_integer(self.n_latents, "n_latents", 2, 4096))
        set_(self, "epochs", checks.optional_integer(self.epochs, "epochs", 1, 10000))

    @property
    def uses_sae(self) -> bool:
        return self.score not in BASELINE_SCORES

    def resolve(self, reduce: str, n_train: int, sae: SAEConfig) -> Resolved:
        """The effective settings of a run with this variant."""
        changes = {k: v for k, v in (("n_latents", self.n_latents), ("epochs", self.epochs)) if v is not None}
        return Resolved(
            self.name, self.score, self.code, self.k, self.read or reduce, self.norm,
            self.n_train or n_train, replace(sae, **changes),
        )  # fmt: skip


@dataclass(frozen=True)
class Resolved:
    """A variant's effective settings in one run (recorded in the report's `sae.config`)."""

    variant: str
    score: str
    code: str
    k: int
    read: str
    norm: str
    n_train: int
    sae: SAEConfig

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SAERecord(JsonCodec):
    """The report's top-level `sae`: which variant produced sae_node / sae_edge, its SAE seed, its effective
    settings (`Resolved`), and where the trained SAE was saved (SAELens format; None: not saved)."""

    variant: str
    seed: int
    config: dict[str, Any]
    path: str | None = None


VARIANTS: Registry[SAEVariant] = Registry("SAE variant")
DEFAULT_VARIANT = "named_separation"  # chosen by the study: why in circuits/README.md


@dataclass(frozen=True)
class VariantChoice(JsonCodec):
    """One entry of a variant menu (the circuits tab's dropdown, `--sae-variant`'s help)."""

    name: str
    summary: str
    default: bool


def variant_choices() -> list[VariantChoice]:
    """The variants a run can use (SAE variants; the baselines are study-only), in registry order, the default
    marked. A menu shows `name` and `summary` and preselects the entry with `default`."""
    return [VariantChoice(n, v.summary, n == DEFAULT_VARIANT) for n, v in VARIANTS.items() if v.uses_sae]


def register(v: SAEVariant) -> SAEVariant:
    return VARIANTS.add(v.name, v)


def check_variant(name: Any) -> str:
    """A registered SAE variant's name (baselines are compared in the study, not run as the SAE method)."""
    name = VARIANTS.check(name, field="sae_variant")
    if not VARIANTS[name].uses_sae:
        raise InputError(f"sae_variant {name!r} is a baseline without an SAE; choose an SAE variant")
    return name


# ---- the catalogue ------------------------------------------------------------------------------------------
P2 = "papers.md §2"
ISSUE = "issue 23's measurement"

register(SAEVariant(
    "reference", "the paper's method exactly: mean over positions, argmax codes, |codes on positives \\ negatives|",
    f"{P2}.2–2.5 (O'Neill & Bui 2024), reimplemented to 4e-14 of the authors' code",
))  # fmt: skip

# ---- continuous scores on the same codes --------------------------------------------------------------------------
register(SAEVariant(
    "mi", "argmax codes scored by the mutual information between a head's code and the label",
    f"{ISSUE}: set differences are integer counts that tie (top ten heads at 10–11 on IOI) and track how varied a "
    "head's codes are rather than how they split the classes; information counts how well a code predicts the label",
    score="mutual_information",
))  # fmt: skip
register(SAEVariant(
    "divergence", "argmax codes scored by the total variation between the positive and negative code histograms",
    f"{ISSUE}: a head whose codes are shared by both classes in different proportions scores 0 by set difference",
    score="divergence",
))  # fmt: skip
register(SAEVariant(
    "rarity", "set difference with each positive-only code weighted by its positives and by −log of its frequency",
    f"{P2}.5 scores every unique code alike; a code common across heads is weaker evidence than a rare one",
    score="rarity",
))  # fmt: skip

# ---- soft and top-k codes -----------------------------------------------------------------------------------------
register(SAEVariant(
    "soft_mi", "normalised latent activations as a soft code, scored by mutual information with the label",
    f"{P2}.4's argmax drops every latent but one; a head spread over two latents changes its code on noise",
    score="mutual_information", code="soft",
))  # fmt: skip
register(SAEVariant(
    "soft_divergence", "soft codes, total variation between the classes' mean code distributions",
    f"{P2}.4 (as soft_mi)", score="divergence", code="soft",
))  # fmt: skip
register(SAEVariant(
    "topk_set", "the set of a head's 3 largest active latents, scored by set difference",
    f"{P2}.4: one code per head hides the second latent a head uses", code="topk", k=3,
))  # fmt: skip
register(SAEVariant(
    "topk_mi", "the 3 largest active latents as a uniform code, scored by mutual information",
    f"{P2}.4 (as topk_set), with a continuous score", score="mutual_information", code="topk", k=3,
))  # fmt: skip

register(SAEVariant(
    "magnitude", "latent activations as a code mass: ‖mean₊ f − mean₋ f‖₁, the classes' latent gap",
    f"{ISSUE}: normalised codes give a head that writes almost nothing the same weight as one that writes a lot; "
    "the no-SAE mean gap (0.81 on IOI) keeps the magnitude", score="divergence", code="magnitude",
))  # fmt: skip
register(SAEVariant(
    "named_magnitude", "the latent gap (as magnitude) of heads read at the task's named positions",
    "magnitude and named combined: measured best of the SAE variants on IOI and docstring in a first pass (seed 0)",
    score="divergence", code="magnitude", read="named",
))  # fmt: skip

register(SAEVariant(
    "separation", "the head's most separating latent: max over latents of |mean₊ f − mean₋ f| / pooled sd",
    f"{ISSUE}: a count or a distance over all 200 latents adds up noise; one latent that tells the classes apart "
    "on most examples is the evidence a researcher reads (measured first on cached SAEs, seed 0)",
    score="separation", code="magnitude",
))  # fmt: skip
register(SAEVariant(
    "named_separation", "separation, heads read at the named positions and centred before the shared SAE",
    "separation with the read and the centring that helped it most on IOI and docstring in a first pass (seed 0)",
    score="separation", code="magnitude", read="named", norm="center",
))  # fmt: skip

# ---- paired contrast ----------------------------------------------------------------------------------------------
register(SAEVariant(
    "paired", "the fraction of prompt pairs whose argmax code changes from the prompt to its own corruption",
    f"{P2}.1 pools the classes; the ground truth patches each prompt with its own partner, so compare pairs",
    score="paired",
))  # fmt: skip
register(SAEVariant(
    "soft_paired", "the mean total variation between a prompt's soft code and its own corruption's",
    "as paired, without the argmax's all-or-nothing change", score="paired", code="soft",
))  # fmt: skip

# ---- normalisation before the shared SAE --------------------------------------------------------------------------
register(SAEVariant(
    "head_norm", "each head's outputs divided by that head's RMS norm before the shared SAE, then as the reference",
    f"{P2}.3: one SAE for all heads, so high-norm heads take most of the 200 codes and the reconstruction loss",
    norm="head",
))  # fmt: skip
register(SAEVariant(
    "centered", "each head's mean output over all examples subtracted before the shared SAE, then as the reference",
    f"{P2}.3: heads write into different subspaces, so the shared SAE's argmax mostly says which head wrote the "
    "vector; centred, a code says how this example's output differs from the head's usual one",
    norm="center",
))  # fmt: skip
register(SAEVariant(
    "layer_norm", "each layer's head outputs divided by the layer's RMS norm, then as the reference",
    "as head_norm, keeping the norm differences between heads of one layer", norm="layer",
))  # fmt: skip

# ---- where the head is read ---------------------------------------------------------------------------------------
register(SAEVariant(
    "last", "head outputs at the final token instead of the mean over positions", f"{P2}.2 averages over every "
    "position, BOS included; the answer is read at the final token (measured: 0.48 on IOI with counts)", read="last",
))  # fmt: skip
register(SAEVariant(
    "named", "head outputs averaged over the task's named positions (where a pair differs) and the final token",
    f"{P2}.2's mean dilutes the few positions where the task happens", read="named",
))  # fmt: skip

# ---- how much the SAE sees and how big it is ----------------------------------------------------------------------
for n in (5, 24, 48):
    register(SAEVariant(
        f"n_train_{n}", f"the SAE trained on {n} examples of the pool instead of 10",
        f"{P2}.7: fewer examples were better or no worse in the paper (measured here: 50 gave 0.64 vs 0.67)",
        n_train=n,
    ))  # fmt: skip
for n in (50, 500):
    register(SAEVariant(
        f"latents_{n}", f"{n} latents instead of 200", f"{P2}.3 fixes 200 codes for 144–270 heads", n_latents=n
    ))  # fmt: skip

# ---- baselines without an SAE -------------------------------------------------------------------------------------
register(SAEVariant(
    "mean_gap", "baseline, no SAE: ‖mean positive − mean negative‖₂ of each head's output",
    f"{ISSUE}: 0.81 on IOI where the reference gets 0.62; an SAE variant earns its place against it",
    score="mean_gap",
))  # fmt: skip
register(SAEVariant(
    "probe", "baseline, no SAE: a ridge probe per head on its output, cross-validated over folds of pairs",
    "the standard test of whether a head's output carries the class", score="probe",
))  # fmt: skip
