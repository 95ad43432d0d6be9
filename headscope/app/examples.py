"""Guidance and worked examples, the same way on every tab. Examples run the tab's own event (never a second
code path) and are not pre-computed at start-up: that would load models nobody asked for."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gradio as gr
from gradio.helpers import Examples


def guide(what: str, how_to_read: str, papers: Sequence[tuple[str, str]] = ()) -> gr.Markdown:
    """One short paragraph: `what` the tab shows, `how_to_read` it, and the paper(s) as (title, url) links."""
    refs = ""
    if papers:
        refs = " Implements " + "; ".join(f"[{title}]({url})" for title, url in papers) + "."
    return gr.Markdown(f"{what} {how_to_read}{refs}", elem_classes=["hs-guide"])


def worked_example(
    rows: Sequence[Sequence[Any]],
    inputs: Sequence[Any],
    run: Callable[..., Any] | None = None,
    run_inputs: Sequence[Any] = (),
    outputs: Sequence[Any] = (),
    *,
    labels: Sequence[str] | None = None,
    label: str = "Worked examples (default model; a click fills the inputs and runs)",
    **event: Any,
) -> Examples:
    """gr.Examples whose click fills `inputs` with a row, then runs `run(*run_inputs) -> outputs` with the tab's
    event options (`**event`: e.g. `**VIEW_EVENT`, `show_progress_on=...`). `run=None`: the caller chains its own
    event on `ex.load_input_event` (a job through `JobControls.bind(ex.load_input_event.then, ...)`)."""
    ex = gr.Examples(
        examples=[list(r) for r in rows], inputs=list(inputs), label=label,
        example_labels=list(labels) if labels else None, api_visibility="private",
    )  # fmt: skip
    if run is not None:
        ex.load_input_event.then(run, list(run_inputs), list(outputs), api_visibility="private", **event)
    return ex
