"""The Decoding tab's views: pure functions from a `headscope.decoding.Comparison` (rebuilt with
`Comparison.from_json(payload)`) to what the tab shows — the token strips, the speed table against greedy, the
step trees, the per-token attention entropy of every run and the heads at the first departure.

Tokens are text everywhere (the comparison's `token_texts`); ids appear only in hover. Under a head intervention
the rows are named for it ("greedy" is the unchanged model, "greedy + ablation of 9.4" the changed one)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from headscope.app.figures import fmt_num, fmt_prob, table
from headscope.app.views import grid_value, strip_row, strip_value, visible_token
from headscope.decoding import Comparison, DecodeConfig, StrategyResult, Trace
from headscope.decoding.trace import Step

KINDS = {"drafted and accepted": "#c8f7c5", "produced by the verifier": "#cfe3ff"}
MAX_BRANCHES = 6  # root-to-leaf paths a step's hover lists (the accepted one first)
SPEED_COLUMNS = (
    ("run", "run"), ("same", "same as greedy"), ("tokens", "tokens"), ("forwards", "forwards"),
    ("mat", "tokens / forward (MAT)"), ("x_forward", "× greedy, per forward"), ("tok_s", "tokens / s"),
    ("x_wall", "× greedy, wall"),
)  # fmt: skip


# -- names and text ----------------------------------------------------------------------------------------------
def intervention_label(cfg: DecodeConfig) -> str | None:
    """The intervention as a row suffix: "ablation of 9.4", "zero-ablation of 9.4", "dial λ=0.5 of 9.4"."""
    if cfg.ablate_heads is not None:
        return f"{'ablation' if cfg.ablation == 'mean' else 'zero-ablation'} of {cfg.ablate_heads}"
    if cfg.dial is not None:
        return f"dial λ={fmt_num(cfg.dial.lam, 2)} of {cfg.dial.heads_text or 'every head'}"
    return None


def run_name(run: Trace, cfg: DecodeConfig) -> str:
    label = intervention_label(cfg) if run.intervention else None
    return f"{run.strategy} + {label}" if label else run.strategy


def texts(c: Comparison, ids: Sequence[int]) -> list[str]:
    """Token texts as written (whitespace kept: `visible_token` marks it where it is shown)."""
    return [c.token_texts.get(int(i), "?") for i in ids]


def _quoted(c: Comparison, ids: Sequence[int]) -> str:
    return " ".join(f"“{html.escape(visible_token(t))}”" for t in texts(c, ids))


def _reference(c: Comparison) -> tuple[Trace, bool]:
    """Greedy on the unchanged model, and whether it is also one of the rows."""
    return c.greedy, c.reference is None


# -- the summary line and the speed table ------------------------------------------------------------------------
def summary(c: Comparison) -> str:
    slow = [run_name(r, c.config) for r in c.results if r.below_1x_wall and not _is_greedy_row(r)]
    line = f"done: {len(c.results)} run(s) of up to {c.config.max_new_tokens} new tokens on {c.model}"
    if label := intervention_label(c.config):
        line += f"; the runs decode with {label}, against greedy on the unchanged model"
    if slow:
        line += f". Slower than greedy in wall time: {', '.join(slow)}"
    return line + "."


def _is_greedy_row(r: StrategyResult) -> bool:
    return r.strategy == "greedy" and r.intervention is None


def _times(x: float, below: bool) -> str:
    return f"{x:.2f}× — below 1×" if below else f"{x:.2f}×"


def speed_rows(c: Comparison) -> list[dict[str, Any]]:
    """One row per run (greedy's own first when it is not a row): MAT and tokens/s, each also as a ratio to the
    greedy run of the same comparison, flagged below 1×."""
    ref, shown = _reference(c)
    rows = [] if shown else [_speed_row("greedy", ref, True, 1.0, 1.0, False, False)]
    for r in c.results:
        rows.append(
            _speed_row(run_name(r, c.config), r, r.identical_to_greedy, r.speedup_per_forward, r.speedup_wall,
                       r.below_1x_per_forward, r.below_1x_wall)
        )  # fmt: skip
    return rows


def _speed_row(
    name: str, t: Trace, same: bool, x_fwd: float, x_wall: float, slow_fwd: bool, slow_wall: bool
) -> dict[str, Any]:
    return {
        "run": name, "same": "yes" if same else "no", "tokens": len(t.token_ids), "forwards": t.target_forwards,
        "mat": t.tokens_per_target_forward, "x_forward": _times(x_fwd, slow_fwd), "tok_s": t.tokens_per_second,
        "x_wall": _times(x_wall, slow_wall),
    }  # fmt: skip


def speed_table(c: Comparison) -> dict[str, Any]:
    return table(speed_rows(c), SPEED_COLUMNS, digits=2)


# -- token strips --------------------------------------------------------------------------------------------------
def _kinds_and_notes(run: Trace) -> tuple[list[str], list[str]]:
    kinds, notes = [], []
    for step in run.steps:
        for j, p in enumerate(step.verifier_probs):
            drafted = j < step.n_draft_accepted
            kinds.append("drafted and accepted" if drafted else "produced by the verifier")
            notes.append(f"step {step.index} · verifier p {fmt_prob(p)}")
    return kinds, notes


def _strip(c: Comparison, run: Trace, label: str, matches: Sequence[bool] | None, at: int | None) -> dict:
    ids = list(run.token_ids)
    kinds, notes = _kinds_and_notes(run)
    notes = (notes + [""] * len(ids))[: len(ids)]
    if at is not None and at < len(notes):
        notes[at] += " · first departure from greedy"
    marks = [False] * len(ids) if matches is None else [not m for m in matches]
    return strip_row(texts(c, ids), ids, cats=(kinds + ["produced by the verifier"] * len(ids))[: len(ids)],
                     notes=notes, marks=marks, label=label)  # fmt: skip


def token_strips(c: Comparison) -> dict[str, Any]:
    """One strip per run, greedy (the reference) first; shading = how each token was made; outlined = differs
    from greedy at that position; hover: position, id, step, the verifier's probability."""
    ref, shown = _reference(c)
    rows = [_strip(c, ref, "greedy (reference)", None, None)]
    for r in c.results:
        if shown and _is_greedy_row(r):
            continue
        same = "same as greedy" if r.identical_to_greedy else f"departs at token {r.diverges_at}"
        label = f"{run_name(r, c.config)} ({same}, {r.tokens_per_target_forward:.2f} tokens per forward)"
        rows.append(_strip(c, r, label, r.matches_greedy, r.diverges_at))
    title = None
    if label := intervention_label(c.config):
        title = f"intervention: {label} — the reference is greedy on the unchanged model"
    caption = "outlined: differs from greedy · hover: position, id, step, probability"
    return strip_value(rows, label="token", categories=KINDS, title=title, caption=caption)


# -- step trees -------------------------------------------------------------------------------------------------
def tree_paths(step: Step) -> list[tuple[int, ...]]:
    """The drafted tree's root-to-leaf paths (node indices), the accepted path's leaf first; a chain is one."""
    n = len(step.draft_tokens)
    parents = step.draft_parents if step.draft_parents is not None else tuple(range(-1, n - 1))
    leaves = [i for i in range(n) if i not in set(parents)]
    paths = []
    for leaf in leaves:
        path, node = [], leaf
        while node >= 0:
            path.append(node)
            node = parents[node]
        paths.append(tuple(reversed(path)))
    acc = tuple(step.accepted_path)
    return sorted(paths, key=lambda p: (p[: len(acc)] != acc or not acc, -len(p)))


def step_hover(c: Comparison, step: Step) -> str:
    """A step's tree in words: size, the accepted tokens (drafted + the verifier's own), its branches."""
    n, k = len(step.draft_tokens), step.n_draft_accepted
    own = step.accepted[k:]
    lines = [
        f"step {step.index} · {n} drafted node(s) ({step.draft_source}) · {k} accepted"
        f"{' + 1 from the verifier' if own else ''}",
        f"accepted: {_quoted(c, step.accepted[:k]) or '(none)'}{' + ' + _quoted(c, own) if own else ''}",
    ]
    paths = tree_paths(step)
    acc = tuple(step.accepted_path)
    for p in paths[:MAX_BRANCHES]:
        mark = "✓" if acc and p[: len(acc)] == acc else "·"
        lines.append(f"{mark} {_quoted(c, [step.draft_tokens[i] for i in p])}")
    if len(paths) > MAX_BRANCHES:
        lines.append(f"… {len(paths) - MAX_BRANCHES} more branch(es)")
    return "<br>".join(lines)


def drafting_runs(c: Comparison) -> list[StrategyResult]:
    return [r for r in c.results if any(s.draft_tokens for s in r.steps)]


def step_trees(c: Comparison) -> go.Figure | None:
    """Per drafting run, per step: the drafted nodes (grey) and the accepted length (green: drafted and accepted,
    blue: the verifier's own token); hover shows the step's tree as text with the accepted path ticked. None when
    no run drafted anything."""
    runs = drafting_runs(c)
    if not runs:
        return None
    fig = make_subplots(rows=len(runs), cols=1, subplot_titles=[run_name(r, c.config) for r in runs],
                        vertical_spacing=min(0.12, 0.5 / len(runs)))  # fmt: skip
    for row, r in enumerate(runs, start=1):
        x = [s.index for s in r.steps]
        hover = [step_hover(c, s) for s in r.steps]
        bars = (
            ("drafted nodes", [len(s.draft_tokens) for s in r.steps], "#d0d0d0"),
            ("accepted drafted tokens", [s.n_draft_accepted for s in r.steps], "#5cb85c"),
            ("+ the verifier's token", [len(s.accepted) - s.n_draft_accepted for s in r.steps], "#6fa8dc"),
        )
        for i, (name, y, colour) in enumerate(bars):
            fig.add_trace(go.Bar(
                x=x, y=y, name=name, marker_color=colour, legendgroup=name, showlegend=row == 1,
                offsetgroup="tree" if i == 0 else "accepted", base=None if i < 2 else bars[1][1],
                customdata=hover, hovertemplate="%{customdata}<extra></extra>"), row, 1)  # fmt: skip
        fig.update_yaxes(title_text="tokens", row=row, col=1)
    fig.update_xaxes(title_text="decoding step (one target forward)", row=len(runs), col=1)
    fig.update_layout(
        barmode="group", height=140 + 190 * len(runs), margin={"t": 60, "b": 40},
        title={"text": "step trees: drafted nodes and accepted length per step (hover: the tree)"},
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 1, "xanchor": "right"},
    )  # fmt: skip
    return fig


# -- attention entropy -----------------------------------------------------------------------------------------
def entropy_runs(c: Comparison) -> list[tuple[str, Trace, np.ndarray]]:
    """(name, run, entropy [token, layer, head]) for greedy and every run that recorded it."""
    ref, shown = _reference(c)
    runs: list[tuple[str, Trace]] = [("greedy (reference)", ref)]
    runs += [(run_name(r, c.config), r) for r in c.results if not (shown and _is_greedy_row(r))]
    out = []
    for name, run in runs:
        ent = run.attention_entropy
        arr = None if ent is None else np.asarray(ent, dtype=np.float64)
        if arr is not None and arr.size:
            out.append((name, run, arr))
    return out


def entropy_figure(c: Comparison) -> go.Figure | None:
    """Token × head attention entropy (bits) of every run, one at a time (the buttons switch run; one colour
    scale for all), heads labelled "L.H", tokens as text. None when entropy was not recorded."""
    runs = entropy_runs(c)
    if not runs:
        return None
    hi = max(float(np.nanmax(e)) for _, _, e in runs)
    fig = go.Figure()
    for i, (name, run, ent) in enumerate(runs):
        n_tok, n_layers, n_heads = ent.shape
        heads = [f"{layer}.{h}" for layer in range(n_layers) for h in range(n_heads)]
        labels = [f"{j} {visible_token(t)}" for j, t in enumerate(texts(c, run.token_ids[:n_tok]))]
        hover = [[f"{name}<br>token “{html.escape(labels[j])}” (id {run.token_ids[j]})<br>head {h}" for h in heads]
                 for j in range(n_tok)]  # fmt: skip
        fig.add_trace(go.Heatmap(
            z=ent.reshape(n_tok, -1), x=heads, y=labels, customdata=hover, visible=i == 0, zmin=0, zmax=hi,
            colorscale="Viridis", colorbar={"title": {"text": "bits"}}, name=name,
            hovertemplate="%{customdata}: %{z:.2f} bits<extra></extra>"))  # fmt: skip
    n_rows = max(e.shape[0] for _, _, e in runs)
    buttons = [
        {"label": name, "method": "update", "args": [{"visible": [j == i for j in range(len(runs))]}]}
        for i, (name, _, _) in enumerate(runs)
    ]
    fig.update_layout(
        updatemenus=[{"buttons": buttons, "type": "buttons", "direction": "right", "x": 0, "xanchor": "left",
                      "y": 1.0, "yanchor": "bottom", "pad": {"b": 8}, "showactive": True}],
        height=max(340, 16 * n_rows + 200), margin={"t": 110, "b": 60},
        title={"text": "attention entropy per generated token and head (bits): pick a run"},
    )  # fmt: skip
    fig.update_yaxes(autorange="reversed", title_text="generated token")
    fig.update_xaxes(title_text="head (layer.head)")
    return fig


# -- the first departure -------------------------------------------------------------------------------------------
def departure(c: Comparison, selected: Sequence[str] = ()) -> tuple[str, dict[str, Any] | None]:
    """Where the first run departs from greedy, in a sentence; and a layer × head grid of each head's entropy
    change (run − greedy) in the row that produced the differing tokens (None: no departure, or no entropy)."""
    r = next((r for r in c.results if r.divergence is not None), None)
    if r is None or r.divergence is None:
        return "Every run produced exactly greedy's tokens: there is no departure to show.", None
    d, name = r.divergence, run_name(r, c.config)

    def show(t: int | None) -> str:
        return "(stopped)" if t is None else visible_token(texts(c, [t])[0])

    note = f"**{name}** departs from greedy at token {d.position}: “{show(d.token)}” where greedy has "
    note += f"“{show(d.greedy_token)}”."
    if d.entropy_bits is None or d.greedy_entropy_bits is None:
        return note + " Tick “Record attention entropy” to see which heads changed.", None
    greedy = np.asarray(d.greedy_entropy_bits, dtype=np.float64)
    delta = np.asarray(d.entropy_bits, dtype=np.float64) - greedy
    n_heads = delta.shape[1]
    top = np.argsort(-np.abs(delta), axis=None)[:3]
    note += " In the row that produced it, the heads whose entropy changed most: " + ", ".join(
        f"{i // n_heads}.{i % n_heads} ({delta.flat[i]:+.2f} bits)" for i in top
    )
    grid = grid_value(
        delta, title=f"entropy change at the departure ({name} − greedy)", unit="bits", scale="diverging",
        model=c.model, selected=list(selected),
        extra=[{"label": "greedy", "unit": "bits", "z": greedy}],
    )  # fmt: skip
    return note + ".", grid


def trees_note(c: Comparison) -> str:
    runs = drafting_runs(c)
    if not runs:
        return "No run drafted tokens (greedy and sampling make one token per forward): there are no trees."
    quiet = [run_name(r, c.config) for r in c.results if r not in runs and not _is_greedy_row(r)]
    tail = f" {', '.join(quiet)} drafted nothing." if quiet else ""
    return (
        "Each bar pair is one verification forward: grey = drafted nodes (a tree for token_recycling, ngram "
        "and lookahead), green = drafted tokens accepted, blue = the verifier's own token. Hover a step for its "
        "tree (✓ = the accepted path)." + tail
    )
