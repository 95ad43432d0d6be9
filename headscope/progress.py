"""The one progress protocol: `progress(stage, fraction)`, fraction in [0, 1] of the whole call.

Every capability function that takes long accepts `progress: Progress | None`. Code that counts steps reports
through `steps(progress, "λ point")`, which turns `(done, total)` into `("λ point 3/11", 3/11)`; a function that
calls another for part of its work hands it `part(progress, lo, hi)`. A progress callback may raise (a job's
Cancel does, through `batch.Reporter`): capability code lets that propagate. Consumers: the CLI draws a tqdm bar
(`cli.common.progress_bar`), a job relays it to its follower (`batch.Reporter`).

It lives with the shared modules (not in batch/) because capabilities, below batch in the layer order, use it.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str, float], None]  # (stage, fraction of the whole call in [0, 1])
StepCounter = Callable[[int, int], None]  # (done, total), made by `steps`


def silent(stage: str, fraction: float) -> None:
    """A progress that shows nothing."""


def part(progress: Progress | None, lo: float, hi: float) -> Progress:
    """`progress` for a sub-call that does the [lo, hi] share of the work (its fraction 0..1 mapped there)."""
    if progress is None:
        return silent
    return lambda stage, fraction: progress(stage, lo + (hi - lo) * min(1.0, max(0.0, fraction)))


def steps(progress: Progress | None, stage: str, lo: float = 0.0, hi: float = 1.0) -> StepCounter:
    """The adapter for step counts: `tick(done, total)` reports `"<stage> done/total"` at lo..hi."""
    say = part(progress, lo, hi)

    def tick(done: int, total: int) -> None:
        say(f"{stage} {done}/{total}", done / max(total, 1))

    return tick
