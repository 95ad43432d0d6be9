"""The Decoding tab's views: pure functions from a `Comparison` (rebuilt with `Comparison.from_json`) through
`decoding.summary` to the token strips, the speed table, the step trees, the per-token attention entropy and
the heads at the first departure. Tokens are text everywhere (`token_texts`); ids appear only in hover."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from headscope.app.figures import fmt_prob, table
from headscope.app.views import grid_value, strip_row, strip_value, visible_token
from headscope.decoding import Comparison, Trace
from headscope.decoding import summary as ds
from headscope.decoding.trace import Step

KINDS = {"drafted and accepted": "#c8f7c5", "produced by the verifier": "#cfe3ff"}
MAX_BRANCHES = 6  # root-to-leaf paths a step's hover lists (the accepted one first)
SPEED_COLUMNS = (
    ("run", "run"), ("same", "same as greedy"), ("tokens", "tokens"), ("forwards", "forwards"),
    ("mat", "tokens / forward (MAT)"), ("x_forward", "× greedy, per forward"), ("tok_s", "tokens / s"),
    ("x_wall", "× greedy, wall"),
)  # fmt: skip


def texts(c: Comparison, ids: Sequence[int]) -> list[str]:
    """Token texts as written (whitespace kept: `visible_token` marks it where it is shown)."""
    return [c.token_texts.get(int(i), "?") for i in ids]


def _quoted(c: Comparison, ids: Sequence[int]) -> str:
    return " ".join(f"“{html.escape(visible_token(t))}”" for t in texts(c, ids))


# -- the summary line and the speed table ------------------------------------------------------------------------
def summary(c: Comparison) -> str:
    line = f"done: {len(c.results)} run(s) of up to {c.config.max_new_tokens} new tokens on {c.model}"
    if label := ds.intervention_label(c.config):
        line += f"; the runs decode with {label}, against greedy on the unchanged model"
    if slow := ds.slower_than_greedy(c):
        line += f". Slower than greedy in wall time: {', '.join(slow)}"
    return line + "."


def _times(x: float, below: bool) -> str:
    return f"{x:.2f}× — below 1×" if below else f"{x:.2f}×"


def speed_rows(c: Comparison) -> list[dict[str, Any]]:
    """`decoding.summary.speed_rows` as table cells (the ratios written "1.23×", flagged below 1×)."""
    return [
        {"run": r.run, "same": "yes" if r.same_as_greedy else "no", "tokens": r.tokens, "forwards": r.forwards,
         "mat": r.tokens_per_forward, "x_forward": _times(r.x_forward, r.below_1x_forward),
         "tok_s": r.tokens_per_second, "x_wall": _times(r.x_wall, r.below_1x_wall)}
        for r in ds.speed_rows(c)
    ]  # fmt: skip


def speed_table(c: Comparison) -> dict[str, Any]:
    return table(speed_rows(c), SPEED_COLUMNS, digits=2)


# -- token strips --------------------------------------------------------------------------------------------------
def _strip(c: Comparison, run: Trace, label: str, matches: Sequence[bool] | None, at: int | None) -> dict:
    """A run's strip row: each token's kind (drafted and accepted, or the verifier's), its step in hover."""
    ids = list(run.token_ids)
    made = [(j < s.n_draft_accepted, f"step {s.index} · verifier p {fmt_prob(p)}")
            for s in run.steps for j, p in enumerate(s.verifier_probs)]  # fmt: skip
    made = (made + [(False, "")] * len(ids))[: len(ids)]
    kinds = ["drafted and accepted" if drafted else "produced by the verifier" for drafted, _ in made]
    notes = [note for _, note in made]
    if at is not None and at < len(notes):
        notes[at] += " · first departure from greedy"
    marks = [False] * len(ids) if matches is None else [not m for m in matches]
    return strip_row(texts(c, ids), ids, cats=kinds, notes=notes, marks=marks, label=label)


def token_strips(c: Comparison) -> dict[str, Any]:
    """One strip per run, greedy (the reference) first; shading = how each token was made; outlined = differs
    from greedy at that position; hover: position, id, step, the verifier's probability."""
    rows = [_strip(c, c.greedy, "greedy (reference)", None, None)]
    for r in c.results:
        if ds.reference_is_a_row(c) and ds.is_greedy_row(r):
            continue
        same = "same as greedy" if r.identical_to_greedy else f"departs at token {r.diverges_at}"
        label = f"{ds.run_name(r, c.config)} ({same}, {r.tokens_per_target_forward:.2f} tokens per forward)"
        rows.append(_strip(c, r, label, r.matches_greedy, r.diverges_at))
    title = None
    if label := ds.intervention_label(c.config):
        title = f"intervention: {label} — the reference is greedy on the unchanged model"
    caption = "outlined: differs from greedy · hover: position, id, step, probability"
    return strip_value(rows, label="token", categories=KINDS, title=title, caption=caption)


# -- step trees -------------------------------------------------------------------------------------------------
def step_hover(c: Comparison, step: Step) -> str:
    """A step's tree in words: size, the accepted tokens (drafted + the verifier's own), its branches."""
    n, k = len(step.draft_tokens), step.n_draft_accepted
    own = step.accepted[k:]
    lines = [
        f"step {step.index} · {n} drafted node(s) ({step.draft_source}) · {k} accepted"
        f"{' + 1 from the verifier' if own else ''}",
        f"accepted: {_quoted(c, step.accepted[:k]) or '(none)'}{' + ' + _quoted(c, own) if own else ''}",
    ]
    paths = ds.tree_paths(step)
    acc = tuple(step.accepted_path)
    for p in paths[:MAX_BRANCHES]:
        mark = "✓" if acc and p[: len(acc)] == acc else "·"
        lines.append(f"{mark} {_quoted(c, [step.draft_tokens[i] for i in p])}")
    if len(paths) > MAX_BRANCHES:
        lines.append(f"… {len(paths) - MAX_BRANCHES} more branch(es)")
    return "<br>".join(lines)


def step_trees(c: Comparison) -> go.Figure | None:
    """Per drafting run, per step: the drafted nodes (grey) and the accepted length (green: drafted and accepted,
    blue: the verifier's own token); hover shows the step's tree as text with the accepted path ticked. None when
    no run drafted anything."""
    runs = ds.drafting_runs(c)
    if not runs:
        return None
    fig = make_subplots(rows=len(runs), cols=1, subplot_titles=[ds.run_name(r, c.config) for r in runs],
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


def trees_note(c: Comparison) -> str:
    runs = ds.drafting_runs(c)
    if not runs:
        return "No run drafted tokens (greedy and sampling make one token per forward): there are no trees."
    quiet = [ds.run_name(r, c.config) for r in c.results if r not in runs and not ds.is_greedy_row(r)]
    tail = f" {', '.join(quiet)} drafted nothing." if quiet else ""
    return (
        "Each bar pair is one verification forward: grey = drafted nodes (a tree for token_recycling, ngram "
        "and lookahead), green = drafted tokens accepted, blue = the verifier's own token. Hover a step for its "
        "tree (✓ = the accepted path)." + tail
    )


# -- attention entropy -----------------------------------------------------------------------------------------
def entropy_figure(c: Comparison) -> go.Figure | None:
    """Token × head attention entropy (bits) of every run, one at a time (the buttons switch run; one colour
    scale for all), heads labelled "L.H", tokens as text. None when entropy was not recorded."""
    runs = ds.entropy_runs(c)
    if not runs:
        return None
    hi = max((v for run in runs for row in run.bits for v in row if v == v), default=1.0)  # NaN-free maximum
    fig = go.Figure()
    for i, run in enumerate(runs):
        labels = [f"{j} {visible_token(t)}" for j, t in enumerate(texts(c, run.token_ids))]
        hover = [[f"{run.name}<br>token “{html.escape(label)}” (id {tid})<br>head {h}" for h in run.heads]
                 for label, tid in zip(labels, run.token_ids, strict=True)]  # fmt: skip
        fig.add_trace(go.Heatmap(
            z=run.bits, x=run.heads, y=labels, customdata=hover, visible=i == 0, zmin=0, zmax=hi,
            colorscale="Viridis", colorbar={"title": {"text": "bits"}}, name=run.name,
            hovertemplate="%{customdata}: %{z:.2f} bits<extra></extra>"))  # fmt: skip
    buttons = [
        {"label": run.name, "method": "update", "args": [{"visible": [j == i for j in range(len(runs))]}]}
        for i, run in enumerate(runs)
    ]
    fig.update_layout(
        updatemenus=[{"buttons": buttons, "type": "buttons", "direction": "right", "x": 0, "xanchor": "left",
                      "y": 1.0, "yanchor": "bottom", "pad": {"b": 8}, "showactive": True}],
        height=max(340, 16 * max(len(r.bits) for r in runs) + 200), margin={"t": 110, "b": 60},
        title={"text": "attention entropy per generated token and head (bits): pick a run"},
    )  # fmt: skip
    fig.update_yaxes(autorange="reversed", title_text="generated token")
    fig.update_xaxes(title_text="head (layer.head)")
    return fig


# -- the first departure -------------------------------------------------------------------------------------------
def departure(c: Comparison, selected: Sequence[str] = ()) -> tuple[str, dict[str, Any] | None]:
    """Where the first run departs from greedy, in a sentence; and a layer × head grid of each head's entropy
    change (run − greedy) in the row that produced the differing tokens (None: no departure, or no entropy)."""
    d = ds.departure(c)
    if d is None:
        return "Every run produced exactly greedy's tokens: there is no departure to show.", None

    def show(t: int | None) -> str:
        return "(stopped)" if t is None else visible_token(texts(c, [t])[0])

    note = f"**{d.run}** departs from greedy at token {d.position}: “{show(d.token)}” where greedy has "
    note += f"“{show(d.greedy_token)}”."
    if d.change_bits is None:
        return note + " Tick “Record attention entropy” to see which heads changed.", None
    note += " In the row that produced it, the heads whose entropy changed most: "
    note += ", ".join(f"{head} ({change:+.2f} bits)" for head, change in d.top_heads)
    grid = grid_value(
        d.change_bits, title=f"entropy change at the departure ({d.run} − greedy)", unit="bits",
        scale="diverging", model=c.model, selected=list(selected),
        extra=[{"label": "greedy", "unit": "bits", "z": d.greedy_bits}],
    )  # fmt: skip
    return note + ".", grid
