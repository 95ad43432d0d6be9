"""LoFiT against chance (papers.md §10.5): is the selected set of heads better than as many random heads, trained
with the same budget? A permutation test over R random head sets.

The selection is read at its held-out accuracy (with its bootstrap interval over items); each of the R random
sets is drawn uniformly from the model's heads (seeded, `lofit.random_heads`), gets bias vectors trained exactly as
LoFiT's step 2 trains the selection's (same steps, batch, learning rate, initialisation and data order) and is
scored on the same held-out items. p = (1 + #{random ≥ selected}) / (R + 1); the selection is "better than random
heads" only at p < 0.05 — which R = 20 reaches only when no random set ties or beats it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from headscope.codec import JsonCodec, jfield
from headscope.steering import stats

MIN_RANDOM_SETS = 20  # the bench and the CLI default; fewer are allowed but say less (p ≥ 1/(R + 1))


def verdict(p: float | None) -> str:
    """The sentence the CLI JSON and the app show."""
    if p is None:
        return "not tested against random heads (0 random head sets)"
    if p < stats.ALPHA:
        return f"better than random heads (p = {p:.3g})"
    return f"not distinguishable from random heads (p = {p:.3g})"


@dataclass(frozen=True)
class ChanceTest(JsonCodec):
    """The selection's accuracy with its interval, the random sets' accuracies, the percentile and p."""

    random_sets: int
    k: int  # heads per set, as many as LoFiT tuned
    budget: dict[str, float]  # what every random set was trained with (= LoFiT's step 2)
    selected: stats.Interval  # LoFiT's held-out accuracy, 95 % bootstrap interval over items
    random_heads: tuple[str, ...]  # each set, in the HeadSet grammar
    random_accuracies: tuple[float, ...] = jfield(digits=4)
    random_mean: float = jfield(digits=4)
    percentile: float = jfield(digits=2)  # of the selection among the random sets (ties count half)
    p_value: float = jfield(digits=4)

    json_extra: ClassVar[tuple[str, ...]] = ("better_than_random", "verdict")

    @property
    def better_than_random(self) -> bool:
        return self.p_value < stats.ALPHA

    @property
    def verdict(self) -> str:
        return verdict(self.p_value)

    @staticmethod
    def of(
        selected: stats.Interval,
        random: Sequence[float],
        heads: Sequence[str],
        k: int,
        budget: dict[str, float],
    ) -> ChanceTest:
        acc = tuple(float(a) for a in random)
        return ChanceTest(
            len(acc), k, dict(budget), selected, tuple(heads), acc, float(np.mean(acc)),
            stats.percentile(selected.value, acc), stats.permutation_p(selected.value, acc),
        )  # fmt: skip
