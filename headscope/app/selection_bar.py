"""The shared selection: heads (and optionally token positions) picked in one tab and used in every other.

The value lives per browser session in a `gr.State` as a frozen `Selection` (a codec type: session files carry
its JSON `{"heads": "9.4, 12.1", "n_layers": 30, "n_heads": 9, "model": "smollm2-135m", "positions": [3, 7]}`),
where `heads` is `HeadSet`'s canonical text (grammar `L.H`, `L.*`, `*.H`) of the model it was made on; every
`Selection` is checked when made. The pure functions below return a new one (they also accept the JSON form); the
`SelectionBar` shows it under the model picker, lets a visitor type or clear it, and wires sources to it:
clickable layer × head grids (`connect_grid`), token views (`connect_tokens`) and "add" buttons (`add_button`).
Capability code gets a `HeadSet` checked against the model it runs on with `head_set(sel, handle)`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import gradio as gr

from headscope.app.inputs import integer
from headscope.app.state import STORE, user_errors
from headscope.codec import JsonCodec
from headscope.errors import InputError
from headscope.models import ModelHandle
from headscope.selection import HeadSet

MAX_POSITIONS = 64
HeadsFn = Callable[..., "HeadSet | str | Sequence[tuple[int, int]]"]
# Events that change the selection are queued (gradio only fires a gr.State's `change` after queued events) in a
# group of their own without a limit: they never wait behind model work. Redrawing a view is not queued.
CHANGE: dict[str, Any] = {"concurrency_id": "selection", "concurrency_limit": None, "show_progress": "hidden"}
REDRAW: dict[str, Any] = {"queue": False, "show_progress": "hidden", "api_visibility": "private"}


@dataclass(frozen=True)
class Selection(JsonCodec):
    """Heads of one model shape (canonical text; "" for none, then no shape or model) and token positions
    (sorted, unique). Checked when made: a forged value from a session file or an API caller is refused."""

    heads: str = ""
    n_layers: int | None = None
    n_heads: int | None = None
    model: str | None = None
    positions: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if self.heads:
            n_l = integer(self.n_layers, "selection n_layers", 1, 10_000)
            n_h = integer(self.n_heads, "selection n_heads", 1, 10_000)
            hs = HeadSet.parse(str(self.heads), n_l, n_h)
            model = str(self.model) if self.model else None
            for name, value in (("heads", str(hs)), ("n_layers", n_l), ("n_heads", n_h), ("model", model)):
                set_(self, name, value)
        else:
            for name, value in (("heads", ""), ("n_layers", None), ("n_heads", None), ("model", None)):
                set_(self, name, value)
        positions = self.positions
        if not isinstance(positions, list | tuple) or len(positions) > MAX_POSITIONS:
            raise InputError(f"selection positions: a list of at most {MAX_POSITIONS} token positions")
        set_(
            self, "positions", tuple(sorted({integer(p, "token position", 0, 1_000_000) for p in positions}))
        )


def empty() -> Selection:
    return Selection()


def _clean(sel: Any) -> Selection:
    """A selection value from anywhere (state, session file JSON, API caller) as a checked `Selection`."""
    if isinstance(sel, Selection):
        return sel
    if not isinstance(sel, dict):
        return empty()
    return Selection(sel.get("heads") or "", sel.get("n_layers"), sel.get("n_heads"), sel.get("model"),
                     sel.get("positions") or ())  # fmt: skip


def heads_of(sel: Any) -> HeadSet | None:
    """The selected heads in the selection's own shape (None when nothing is selected)."""
    sel = _clean(sel)
    if not sel.heads or sel.n_layers is None or sel.n_heads is None:
        return None
    return HeadSet.parse(sel.heads, sel.n_layers, sel.n_heads)


def head_set(sel: Any, handle: ModelHandle) -> HeadSet:
    """The selected heads checked against `handle`'s shape (an empty set when nothing is selected)."""
    hs = heads_of(sel)
    n_l, n_h = handle.facts.n_layers, handle.facts.n_heads
    if hs is None:
        return HeadSet.empty(n_l, n_h)
    if (hs.n_layers, hs.n_heads) != (n_l, n_h):
        raise InputError(
            f"the selection ({hs}) was made on a {hs.n_layers}×{hs.n_heads} model; "
            f"{handle.identity.name} is {n_l}×{n_h}: clear the selection first"
        )
    return hs


def with_heads(sel: Any, hs: HeadSet, model: str | None) -> Selection:
    """The selection with its heads replaced by `hs` (positions kept)."""
    out = _clean(sel)
    if not hs:
        return replace(out, heads="")
    return replace(out, heads=str(hs), n_layers=hs.n_layers, n_heads=hs.n_heads, model=model)


def _same_shape(sel: Selection, n_layers: int, n_heads: int) -> HeadSet:
    hs = heads_of(sel)
    if hs is None:
        return HeadSet.empty(n_layers, n_heads)
    if (hs.n_layers, hs.n_heads) != (n_layers, n_heads):
        raise InputError(
            f"the selection holds heads of a {hs.n_layers}×{hs.n_heads} model ({sel.model}); "
            f"clear it before selecting heads of a {n_layers}×{n_heads} one"
        )
    return hs


def add(sel: Any, heads: HeadSet, model: str | None) -> Selection:
    """The union of the selection and `heads`."""
    sel = _clean(sel)
    return with_heads(sel, _same_shape(sel, heads.n_layers, heads.n_heads).union(heads), model)


def toggle(sel: Any, layer: Any, head: Any, n_layers: Any, n_heads: Any, model: str | None) -> Selection:
    """A click on a grid cell: the head added, or removed if it was selected."""
    sel = _clean(sel)
    n_l = integer(n_layers, "n_layers", 1, 10_000)
    n_h = integer(n_heads, "n_heads", 1, 10_000)
    cell = (integer(layer, "layer", 0, n_l - 1), integer(head, "head", 0, n_h - 1))
    return with_heads(sel, _same_shape(sel, n_l, n_h).toggle(cell), model)


def box(sel: Any, layers: Any, heads: Any, n_layers: Any, n_heads: Any, model: str | None) -> Selection:
    """A drag over a grid: every head of the rectangle added."""
    n_l = integer(n_layers, "n_layers", 1, 10_000)
    n_h = integer(n_heads, "n_heads", 1, 10_000)
    l0, l1 = sorted(integer(v, "layer", 0, n_l - 1) for v in (layers or [None, None])[:2])
    h0, h1 = sorted(integer(v, "head", 0, n_h - 1) for v in (heads or [None, None])[:2])
    cells = [(a, b) for a in range(l0, l1 + 1) for b in range(h0, h1 + 1)]
    return add(sel, HeadSet.of(cells, n_l, n_h), model)


def from_text(sel: Any, text: Any, handle: ModelHandle) -> Selection:
    """What a visitor typed in the bar ("9.4, 12.*", "*.3"), checked against the model: replaces the heads."""
    if not isinstance(text, str) or len(text) > 4000:
        raise InputError("selected heads: text like '9.4, 12.*, *.3' (at most 4000 characters)")
    return with_heads(sel, handle.head_set(text), handle.identity.name)


def toggle_position(sel: Any, position: Any) -> Selection:
    sel = _clean(sel)
    pos = integer(position, "token position", 0, 1_000_000)
    chosen = set(sel.positions) ^ {pos}
    if len(chosen) > MAX_POSITIONS:
        raise InputError(f"at most {MAX_POSITIONS} token positions can be selected")
    return replace(sel, positions=tuple(chosen))


def positions_from_text(sel: Any, text: Any) -> Selection:
    """'3, 7, 10-12' → positions 3, 7, 10, 11, 12."""
    if not isinstance(text, str) or len(text) > 1000:
        raise InputError("selected positions: text like '3, 7, 10-12'")
    chosen: set[int] = set()
    for part in (p.strip() for p in text.replace(";", ",").split(",")):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        a = integer(lo.strip(), "token position", 0, 1_000_000)
        b = integer(hi.strip(), "token position", 0, 1_000_000) if hi else a
        chosen.update(range(min(a, b), max(a, b) + 1))
        if len(chosen) > MAX_POSITIONS:
            raise InputError(f"at most {MAX_POSITIONS} token positions can be selected")
    return replace(_clean(sel), positions=tuple(chosen))


def describe(sel: Any) -> str:
    """The bar's text: the canonical head list."""
    return _clean(sel).heads


def describe_positions(sel: Any) -> str:
    return ", ".join(str(p) for p in _clean(sel).positions)


def names(sel: Any) -> list[str]:
    """Each selected head as "L.H" (for views that highlight the selection)."""
    hs = heads_of(sel)
    return hs.names() if hs is not None else []


def as_head_set(value: Any, handle: ModelHandle) -> HeadSet:
    """What an "add" source returns (a HeadSet, grammar text, or (layer, head) pairs) as a HeadSet of `handle`."""
    n_l, n_h = handle.facts.n_layers, handle.facts.n_heads
    if isinstance(value, HeadSet):
        if (value.n_layers, value.n_heads) != (n_l, n_h):
            raise InputError(
                f"heads of a {value.n_layers}×{value.n_heads} model; {handle.identity.name} is {n_l}×{n_h}"
            )
        return value
    if isinstance(value, str):
        return handle.head_set(value)
    return HeadSet.of(value, n_l, n_h)


# ---- the bar -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SelectionBar:
    """The compact bar under the model picker; every tab gets it as `ctx.selection`."""

    state: gr.State
    heads_box: gr.Textbox
    positions_box: gr.Textbox
    clear: gr.Button
    model: gr.Dropdown

    @property
    def outputs(self) -> list[Any]:
        """What an event that changes the selection writes: [state, heads box, positions box]."""
        return [self.state, self.heads_box, self.positions_box]

    @classmethod
    def build(cls, model: gr.Dropdown) -> SelectionBar:
        state = gr.State(empty())
        with gr.Row(elem_id="hs-selection-bar"):
            heads_box = gr.Textbox(
                label="Selected heads (L.H, L.*, *.H)", placeholder="click cells of any layer × head grid, or type 9.4, 12.*",
                scale=5, elem_id="hs-selection", max_lines=1,
            )  # fmt: skip
            positions_box = gr.Textbox(
                label="Selected token positions", placeholder="click tokens, or type 3, 7, 10-12",
                scale=2, elem_id="hs-positions", max_lines=1,
            )  # fmt: skip
            clear = gr.Button("Clear", size="sm", scale=0, min_width=80, elem_id="hs-selection-clear")
        bar = cls(state, heads_box, positions_box, clear, model)
        bar._wire()
        return bar

    def _wire(self) -> None:
        quick = CHANGE
        heads_in = [self.state, self.heads_box, self.model]
        # Enter applies what was typed (also the API: /selection_set takes the text and the model); leaving the
        # box does too, unless the text is already the selection's.
        self.heads_box.submit(_typed_heads, heads_in, self.outputs, api_name="selection_set", **quick)
        self.heads_box.blur(_typed_heads, heads_in, self.outputs, api_visibility="private", **quick)
        pos_in = [self.state, self.positions_box]
        self.positions_box.submit(
            _typed_positions, pos_in, self.outputs, api_name="selection_positions", **quick
        )
        self.positions_box.blur(_typed_positions, pos_in, self.outputs, api_visibility="private", **quick)
        self.clear.click(lambda: _show(empty()), None, self.outputs, api_name="selection_clear", **quick)

    def connect_grid(self, grid: Any) -> None:
        """A `views.HeadGrid`: a click toggles the cell's head, a drag adds the rectangle, and the grid outlines
        the selection whenever it changes."""
        quick = {**CHANGE, "api_visibility": "private"}
        grid.cell(_on_cell, [self.state, grid, self.model], self.outputs, **quick)
        grid.box(_on_box, [self.state, grid, self.model], self.outputs, **quick)
        self.state.change(_highlight, [self.state, grid], [grid], **REDRAW)

    def connect_tokens(self, view: Any) -> None:
        """A `views.TokenStrip` / `views.AttentionView`: a click on a token toggles its position."""
        view.token(_on_token, [self.state], self.outputs, **CHANGE, api_visibility="private")
        self.state.change(_highlight_positions, [self.state, view], [view], **REDRAW)

    def add_button(self, button: gr.Button, heads_fn: HeadsFn, inputs: Sequence[Any], **event: Any) -> Any:
        """Wire `button` to add heads to the selection: `heads_fn(*inputs)` returns a HeadSet, grammar text or
        (layer, head) pairs of the current model (e.g. the found circuit, the k lowest-entropy heads). Returns
        the event (for `.then`)."""

        @user_errors
        def on_click(sel: Selection, model: str, *values: Any) -> tuple[Selection, str, str]:
            handle = STORE.get(model)
            return _show(add(sel, as_head_set(heads_fn(*values), handle), handle.identity.name))

        opts = {**CHANGE, "api_visibility": "private", **event}
        return button.click(on_click, [self.state, self.model, *inputs], self.outputs, **opts)


def _show(sel: Selection) -> tuple[Selection, str, str]:
    return sel, describe(sel), describe_positions(sel)


@user_errors
def _typed_heads(sel: Selection, text: str, model: str) -> tuple[Selection, str, str]:
    if isinstance(text, str) and text.strip() == describe(sel):
        return _show(_clean(sel))
    if not (text or "").strip():
        return _show(with_heads(sel, HeadSet.empty(1, 1), None))
    return _show(from_text(sel, text, STORE.get(model)))


@user_errors
def _typed_positions(sel: Selection, text: str) -> tuple[Selection, str, str]:
    return _show(positions_from_text(sel, text))


@user_errors
def _on_cell(sel: Selection, grid: Any, model: str, evt: gr.EventData) -> tuple[Selection, str, str]:
    data, shape = evt._data or {}, _grid_shape(grid)
    return _show(toggle(sel, data.get("layer"), data.get("head"), *shape, _grid_model(grid, model)))


@user_errors
def _on_box(sel: Selection, grid: Any, model: str, evt: gr.EventData) -> tuple[Selection, str, str]:
    data, shape = evt._data or {}, _grid_shape(grid)
    return _show(box(sel, data.get("layers"), data.get("heads"), *shape, _grid_model(grid, model)))


@user_errors
def _on_token(sel: Selection, evt: gr.EventData) -> tuple[Selection, str, str]:
    return _show(toggle_position(sel, (evt._data or {}).get("position")))


def _grid_shape(grid: Any) -> tuple[int, int]:
    z = (grid or {}).get("z") if isinstance(grid, dict) else None
    if not z:
        raise InputError("this grid is empty: run its view first")
    return len(z), len(z[0])


def _grid_model(grid: Any, fallback: str) -> str:
    return str(grid.get("model") or fallback) if isinstance(grid, dict) else fallback


def _highlight(sel: Selection, grid: Any) -> Any:
    if not isinstance(grid, dict) or not grid.get("z"):
        return gr.skip()
    try:
        chosen = names(sel) if (len(grid["z"]), len(grid["z"][0])) == _shape_of(sel) else []
    except InputError:
        chosen = []
    return {**grid, "selected": chosen}


def _highlight_positions(sel: Selection, view: Any) -> Any:
    if not isinstance(view, dict) or not view.get("tokens"):
        return gr.skip()
    try:
        return {**view, "positions": list(_clean(sel).positions)}
    except InputError:
        return gr.skip()


def _shape_of(sel: Selection) -> tuple[int, int] | None:
    hs = heads_of(sel)
    return None if hs is None else (hs.n_layers, hs.n_heads)
