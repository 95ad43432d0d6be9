"""The selection bar: heads (and token positions) picked in one tab and used in every other. The value is a
frozen `Selection` per browser session (headscope/selection.py, its pure functions re-exported here)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr

from headscope.app.state import QUIET, STORE, user_errors
from headscope.errors import InputError

# The selection model, re-exported for the tabs (`sel.head_set(selection, handle)`, `sel.toggle(...)`, ...).
from headscope.selection import (
    HeadSet,
    Selection,
    add,
    as_head_set,
    box,
    clean,
    describe,
    describe_positions,
    from_text,
    heads_of,
    names,
    positions_from_text,
    toggle,
    toggle_position,
    with_heads,
)
from headscope.selection import head_set as head_set

_clean = clean  # the name the tabs and tests use
HeadsFn = Callable[..., "HeadSet | str | Sequence[tuple[int, int]]"]
# Events that change the selection are queued (gradio only fires a gr.State's `change` after queued events) in a
# group of their own without a limit: they never wait behind model work. Redrawing a view is not queued.
CHANGE: dict[str, Any] = {"concurrency_id": "selection", "concurrency_limit": None, "show_progress": "hidden"}


def empty() -> Selection:
    return Selection()


def selected_heads(sel: Any, handle: Any, why: str) -> HeadSet:
    """The selection as a HeadSet of `handle`'s model, refused with one line when it holds no head; `why` says
    what needs heads ("the dial is set to act on the selected heads")."""
    heads = head_set(sel, handle)
    if not heads:
        raise InputError(f"{why}, but no head is selected: select heads first (click cells of a layer × head grid, "
                         "or type them in the bar above)")  # fmt: skip
    return heads


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
        self.clear.click(lambda: shown(empty()), None, self.outputs, api_name="selection_clear", **quick)

    def connect_grid(self, grid: Any) -> None:
        """A `views.HeadGrid`: a click toggles the cell's head, a drag adds the rectangle, and the grid outlines
        the selection whenever it changes."""
        quick = {**CHANGE, "api_visibility": "private"}
        for event in (grid.cell, grid.box):
            event(_on_cell, [self.state, grid, self.model], self.outputs, **quick)
        self.state.change(_highlight, [self.state, grid], [grid], **QUIET)

    def connect_tokens(self, view: Any) -> None:
        """A `views.TokenStrip` / `views.AttentionView`: a click on a token toggles its position."""
        view.token(_on_token, [self.state], self.outputs, **CHANGE, api_visibility="private")
        self.state.change(_highlight_positions, [self.state, view], [view], **QUIET)

    def add_button(self, button: gr.Button, heads_fn: HeadsFn, inputs: Sequence[Any], **event: Any) -> Any:
        """Wire `button` to add heads to the selection: `heads_fn(*inputs)` returns a HeadSet, grammar text or
        (layer, head) pairs of the current model (e.g. the found circuit, the k lowest-entropy heads). Returns
        the event (for `.then`)."""

        @user_errors
        def on_click(sel: Selection, model: str, *values: Any) -> tuple[Selection, str, str]:
            handle = STORE.get(model)
            return shown(add(sel, as_head_set(heads_fn(*values), handle), handle.identity.name))

        opts = {**CHANGE, "api_visibility": "private", **event}
        return button.click(on_click, [self.state, self.model, *inputs], self.outputs, **opts)


def shown(sel: Selection) -> tuple[Selection, str, str]:
    """What the bar's `outputs` are set to for `sel`: the state, the heads text and the positions text."""
    return sel, describe(sel), describe_positions(sel)


@user_errors
def _typed_heads(sel: Selection, text: str, model: str) -> tuple[Selection, str, str]:
    if isinstance(text, str) and text.strip() == describe(sel):
        return shown(_clean(sel))
    if not (text or "").strip():
        return shown(with_heads(sel, HeadSet.empty(1, 1), None))
    return shown(from_text(sel, text, STORE.get(model)))


@user_errors
def _typed_positions(sel: Selection, text: str) -> tuple[Selection, str, str]:
    return shown(positions_from_text(sel, text))


@user_errors
def _on_cell(sel: Selection, grid: Any, model: str, evt: gr.EventData) -> tuple[Selection, str, str]:
    """A HeadGrid's `cell` {layer, head} (toggle that head) or `box` {layers, heads} (add the rectangle)."""
    z = grid.get("z") if isinstance(grid, dict) else None
    if not z:
        raise InputError("this grid is empty: run its view first")
    data, shape, name = evt._data or {}, (len(z), len(z[0])), str(grid.get("model") or model)
    if "layers" in data:
        return shown(box(sel, data.get("layers"), data.get("heads"), *shape, name))
    return shown(toggle(sel, data.get("layer"), data.get("head"), *shape, name))


@user_errors
def _on_token(sel: Selection, evt: gr.EventData) -> tuple[Selection, str, str]:
    return shown(toggle_position(sel, (evt._data or {}).get("position")))


def _highlight(sel: Selection, grid: Any) -> Any:
    if not isinstance(grid, dict) or not grid.get("z"):
        return gr.skip()
    try:
        hs = heads_of(sel)
        same = hs is not None and (len(grid["z"]), len(grid["z"][0])) == (hs.n_layers, hs.n_heads)
        chosen = names(sel) if same else []
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
