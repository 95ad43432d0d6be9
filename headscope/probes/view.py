"""What the app's Attention & locality tab shows, as typed results: the entropy view (every probe metric per
layer × head under a dial, the same at λ = 0 when the dial is on, per-token entropy of all heads or of the shown
heads) and the pattern view (full N×N patterns of a few heads). The app draws both from their JSON and does no
tensor work itself; a job runner can hand `EntropyView.to_json()` across a process boundary.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import numpy as np
from jaxtyping import Float

from headscope import checks
from headscope.attention.locality import LocalityDial
from headscope.codec import JsonCodec, jfield
from headscope.errors import InputError
from headscope.models.handle import ModelHandle
from headscope.probes.probe import (
    ProbeConfig,
    ProbeSummary,
    head_patterns,
    model_induction_scores,
    probe_attention,
)
from headscope.progress import Progress
from headscope.selection import HeadSet, pattern_text

MAX_VIEW_TOKENS = 2048  # the eager probes hold N×N patterns per layer: the app asks for at most 1024


def uniform_ceiling_bits(n: int) -> float:
    """Mean over queries of log2(i + 1): the mean entropy of uniform causal attention over n tokens."""
    return sum(math.log2(i) for i in range(1, n + 1)) / n if n > 0 else 0.0


@dataclass(frozen=True)
class ViewConfig(JsonCodec):
    """`headscope locality view`: the dial (its λ included; λ > 0 adds the λ = 0 baseline), the heads whose
    per-token entropy is kept (pattern text, "9.4, 12.*"; None: the strip averages every head) and the token
    limit (a longer text is refused, never cut)."""

    dial: LocalityDial = field(default_factory=LocalityDial)
    shown: str | None = None
    max_tokens: int = 1024

    def __post_init__(self) -> None:
        if not isinstance(self.dial, LocalityDial):
            raise InputError(f"dial must be a LocalityDial, got {type(self.dial).__name__}")
        object.__setattr__(self, "shown", pattern_text(self.shown) or None)
        object.__setattr__(
            self, "max_tokens", checks.integer(self.max_tokens, "max_tokens", 2, MAX_VIEW_TOKENS)
        )

    def shown_heads(self, handle: ModelHandle) -> HeadSet | None:
        return HeadSet.parse(self.shown, handle.facts.n_layers, handle.facts.n_heads) if self.shown else None


@dataclass(frozen=True, eq=False)
class EntropyView(JsonCodec):
    """`probes`: per-head means under `dial` (with the model's induction scores); `baseline`: the same text at
    λ = 0 (None when the dial is off); `shown_heads` / `shown_token_entropy_bits`: the mean per-token entropy over
    those heads (None: see `probes.token_entropy_bits`, over every head). `delta_bits` and the ceiling are
    derived, never read back."""

    probes: ProbeSummary
    dial: LocalityDial
    baseline: ProbeSummary | None = None
    shown_heads: tuple[tuple[int, int], ...] = ()
    shown_token_entropy_bits: tuple[float, ...] | None = jfield(digits=6, default=None)

    json_extra = ("n_tokens", "uniform_ceiling_bits")

    @property
    def n_tokens(self) -> int:
        return self.probes.n_tokens

    @property
    def uniform_ceiling_bits(self) -> float:
        return uniform_ceiling_bits(self.n_tokens)

    @property
    def delta_bits(self) -> Float[np.ndarray, "layer head"] | None:
        """Entropy under the dial minus entropy at λ = 0, per head (None without a baseline)."""
        if self.baseline is None:
            return None
        return np.asarray(self.probes.entropy_bits) - np.asarray(self.baseline.entropy_bits)

    def token_entropy(self) -> tuple[list[float], int | None]:
        """Per-token entropy over the shown heads (and how many) or over every head (None)."""
        if self.shown_token_entropy_bits is not None and self.shown_heads:
            return list(self.shown_token_entropy_bits), len(self.shown_heads)
        return [float(x) for x in np.asarray(self.probes.token_entropy_bits)], None

    def head_rows(self, selected: Iterable[str] = ()) -> list[dict[str, float | int | str | None]]:
        """One row per head (row-major): every probe metric, the change against λ = 0 (None without a baseline),
        the induction score (None when not measured) and "✓" for the heads named in `selected` ("9.4")."""
        p, marked = self.probes, set(selected)
        metrics = {
            "entropy_bits": p.entropy_bits,
            "delta_bits": self.delta_bits,
            "pointer_fidelity": p.pointer_fidelity,
            "previous_token_score": p.previous_token_score,
            "induction_score": p.induction_score,
            "mean_distance": p.mean_distance,
        }
        grids = {m: None if g is None else np.asarray(g, dtype=float).tolist() for m, g in metrics.items()}
        n_l, n_h = np.shape(p.entropy_bits)
        return [
            {"layer": layer, "head": head}
            | {m: None if g is None else g[layer][head] for m, g in grids.items()}
            | {"selected": "✓" if f"{layer}.{head}" in marked else ""}
            for layer in range(n_l)
            for head in range(n_h)
        ]

    def rank_heads(self, k: int, *, by: str = "entropy") -> list[tuple[int, int]]:
        """The k lowest-entropy heads (`by="entropy"`) or the k heads the dial changes most (`by="delta"`:
        largest |entropy − entropy at λ = 0|; none without a baseline). Ties in row-major order; NaN skipped."""
        if by not in ("entropy", "delta"):
            raise InputError(f"rank heads by 'entropy' or 'delta', got {by!r}")
        grid = self.probes.entropy_bits if by == "entropy" else self.delta_bits
        if grid is None:
            return []
        values = np.asarray(grid, dtype=float)
        key = values if by == "entropy" else -np.abs(values)
        cells = [(float(key[lh]), lh) for lh in np.ndindex(values.shape) if math.isfinite(values[lh])]
        return [(int(layer), int(head)) for _, (layer, head) in sorted(cells)[: max(k, 0)]]


def entropy_view(
    handle: ModelHandle,
    text: str,
    dial: LocalityDial,
    *,
    max_tokens: int | None = None,
    shown: HeadSet | None = None,
    progress: Progress | None = None,
) -> EntropyView:
    """Probe `text` (tokenised as the model does, refused beyond `max_tokens`) under `dial`, and at λ = 0 when
    λ > 0; induction scores come from the per-model cache. `shown`: heads whose per-token entropy is kept."""
    say = progress or (lambda stage, frac: None)
    tokens = handle.tokenize(text, max_tokens=max_tokens)
    dial.check(handle)
    n = int(tokens.shape[1])
    cfg = ProbeConfig(target="block" if dial.mode == "block" else "local", induction=False)
    say(f"{n} tokens at λ = {dial.lam:g}", 0.1)
    probes = probe_attention(handle, tokens, cfg=cfg, dial=dial)
    probes = replace(probes, induction=model_induction_scores(handle))
    base = None
    if dial.lam > 0:
        say("the same text at λ = 0 (the baseline)", 0.6)
        base = probe_attention(handle, tokens, cfg=cfg, dial=dial.with_lambda(0.0)).summary()
    shown_ent = None
    if shown:
        shown_ent = tuple(np.stack([probes.entropy_bits[a, b] for a, b in shown]).mean(0).tolist())
    return EntropyView(probes.summary(), dial, base, tuple(shown) if shown else (), shown_ent)


def _arrays(value: list) -> tuple[np.ndarray, ...]:
    return tuple(np.asarray(p, dtype=np.float64) for p in value)


@dataclass(frozen=True, eq=False)
class PatternView(JsonCodec):
    """Full attention patterns ([query, key] softmax weights) of a few heads on one text, under `dial`."""

    model: str
    token_ids: tuple[int, ...]
    str_tokens: tuple[str, ...]
    heads: tuple[tuple[int, int], ...]
    patterns: tuple[Float[np.ndarray, "query key"], ...] = jfield(digits=6, decode=_arrays)
    dial: LocalityDial | None = None


def pattern_view(
    handle: ModelHandle,
    text: str,
    heads: Iterable[tuple[int, int]],
    *,
    dial: LocalityDial | None = None,
    max_tokens: int | None = None,
) -> PatternView:
    """`head_patterns` of `text` (tokenised as the model does) for the viewer."""
    tokens = handle.tokenize(text, max_tokens=max_tokens)
    got = head_patterns(handle, tokens, heads, dial=dial)
    ids = tuple(int(i) for i in tokens[0].tolist())
    return PatternView(
        handle.identity.name, ids, tuple(handle.str_tokens(list(ids))), tuple(got), tuple(got.values()), dial
    )
