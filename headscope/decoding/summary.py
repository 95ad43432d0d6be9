"""A `Comparison` summarised for people, in plain values (no tensors): each run's name under a head intervention,
the speed-up table against greedy (per forward and wall time, flagged below 1×), each step's drafted tree as
root-to-leaf paths, every run's per-token attention entropy as a token × head matrix, and which heads changed at
the first departure from greedy. The app's views draw these; `headscope decode compare` prints the same table.

Under an intervention greedy — the reference — ran on the unchanged model, so the rows are named for it: "greedy"
is the unchanged model, "greedy + ablation of 9.4" the changed one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from headscope.decoding.compare import Comparison, StrategyResult
from headscope.decoding.config import DecodeConfig
from headscope.decoding.trace import Step, Trace

TOP_HEADS = 3  # heads named in the departure's sentence


@dataclass(frozen=True)
class SpeedRow:
    """One run against the greedy run of the same comparison: MAT (tokens per target forward) and tokens per
    second, each also as a ratio to greedy's, flagged when below 1×."""

    run: str
    same_as_greedy: bool
    tokens: int
    forwards: int
    tokens_per_forward: float
    x_forward: float
    below_1x_forward: bool
    tokens_per_second: float
    x_wall: float
    below_1x_wall: bool


@dataclass(frozen=True)
class EntropyRun:
    """A run's attention entropy (bits): `bits[token][k]` for head `heads[k]` ("layer.head")."""

    name: str
    token_ids: tuple[int, ...]
    heads: tuple[str, ...]
    bits: tuple[tuple[float, ...], ...]


@dataclass(frozen=True)
class Departure:
    """Where the first departing run leaves greedy; with entropy recorded, each head's entropy (bits) in the row
    that produced the differing tokens — greedy's, and the change (run − greedy) — [layer][head], and the heads
    that changed most ("L.H", change)."""

    run: str
    position: int
    token: int | None
    greedy_token: int | None
    greedy_bits: tuple[tuple[float, ...], ...] | None = None
    change_bits: tuple[tuple[float, ...], ...] | None = None
    top_heads: tuple[tuple[str, float], ...] = ()


def intervention_label(cfg: DecodeConfig) -> str | None:
    """The intervention as a row suffix: "ablation of 9.4", "zero-ablation of 9.4", "dial λ=0.50 of 9.4"."""
    if cfg.ablate_heads is not None:
        return f"{'ablation' if cfg.ablation == 'mean' else 'zero-ablation'} of {cfg.ablate_heads}"
    if cfg.dial is not None:
        return f"dial λ={cfg.dial.lam:.2f} of {cfg.dial.heads_text or 'every head'}"
    return None


def run_name(run: Trace, cfg: DecodeConfig) -> str:
    label = intervention_label(cfg) if run.intervention else None
    return f"{run.strategy} + {label}" if label else run.strategy


def is_greedy_row(r: StrategyResult) -> bool:
    """The row that is greedy on the unchanged model (the reference itself)."""
    return r.strategy == "greedy" and r.intervention is None


def reference_is_a_row(c: Comparison) -> bool:
    return c.reference is None


def speed_rows(c: Comparison) -> list[SpeedRow]:
    """One row per run, greedy's own first when it is not one of the runs."""
    g = c.greedy
    rows = (
        []
        if reference_is_a_row(c)
        else [
            SpeedRow(
                "greedy",
                True,
                len(g.token_ids),
                g.target_forwards,
                g.tokens_per_target_forward,
                1.0,
                False,
                g.tokens_per_second,
                1.0,
                False,
            )
        ]
    )
    for r in c.results:
        rows.append(
            SpeedRow(
                run_name(r, c.config),
                r.identical_to_greedy,
                len(r.token_ids),
                r.target_forwards,
                r.tokens_per_target_forward,
                r.speedup_per_forward,
                r.below_1x_per_forward,
                r.tokens_per_second,
                r.speedup_wall,
                r.below_1x_wall,
            )
        )
    return rows


def slower_than_greedy(c: Comparison) -> list[str]:
    """The runs (not greedy's own) slower than greedy in wall time."""
    return [run_name(r, c.config) for r in c.results if r.below_1x_wall and not is_greedy_row(r)]


def tree_paths(step: Step) -> list[tuple[int, ...]]:
    """The drafted tree's root-to-leaf paths (node indices), the accepted path's leaf first; a chain is one."""
    n = len(step.draft_tokens)
    parents = step.draft_parents if step.draft_parents is not None else tuple(range(-1, n - 1))
    inner = set(parents)
    paths = []
    for leaf in (i for i in range(n) if i not in inner):
        path, node = [], leaf
        while node >= 0:
            path.append(node)
            node = parents[node]
        paths.append(tuple(reversed(path)))
    acc = tuple(step.accepted_path)
    return sorted(paths, key=lambda p: (p[: len(acc)] != acc or not acc, -len(p)))


def drafting_runs(c: Comparison) -> list[StrategyResult]:
    return [r for r in c.results if any(s.draft_tokens for s in r.steps)]


def shown_runs(c: Comparison) -> list[tuple[str, Trace]]:
    """Greedy (the reference) first, then every other run, named."""
    runs: list[tuple[str, Trace]] = [("greedy (reference)", c.greedy)]
    shown = reference_is_a_row(c)
    return runs + [(run_name(r, c.config), r) for r in c.results if not (shown and is_greedy_row(r))]


def entropy_runs(c: Comparison) -> list[EntropyRun]:
    """Every run (greedy first) that recorded attention entropy, as token × head matrices."""
    out = []
    for name, run in shown_runs(c):
        ent = run.attention_entropy
        if ent is None or ent.numel() == 0:
            continue
        n_tok, n_layers, n_heads = ent.shape
        heads = tuple(f"{layer}.{h}" for layer in range(n_layers) for h in range(n_heads))
        rows = tuple(tuple(row) for row in ent.double().reshape(n_tok, -1).tolist())
        out.append(EntropyRun(name, tuple(run.token_ids[:n_tok]), heads, rows))
    return out


def departure(c: Comparison) -> Departure | None:
    """The first run that departs from greedy (None: every run made greedy's tokens)."""
    r = next((r for r in c.results if r.divergence is not None), None)
    if r is None or r.divergence is None:
        return None
    d = r.divergence
    base = Departure(run_name(r, c.config), d.position, d.token, d.greedy_token)
    if d.entropy_bits is None or d.greedy_entropy_bits is None:
        return base
    greedy = d.greedy_entropy_bits.double()
    change = d.entropy_bits.double() - greedy
    n_heads = change.shape[1]
    flat = change.flatten()
    top = flat.abs().argsort(descending=True, stable=True)[:TOP_HEADS].tolist()
    return Departure(
        base.run,
        base.position,
        base.token,
        base.greedy_token,
        _rows(greedy.tolist()),
        _rows(change.tolist()),
        tuple((f"{i // n_heads}.{i % n_heads}", float(flat[i])) for i in top),
    )


def _rows(matrix: Sequence[Sequence[float]]) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(row) for row in matrix)
