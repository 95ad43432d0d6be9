"""The handler shape (app/wiring.py): named inputs in, named outputs out, what Gradio sees."""

from __future__ import annotations

import inspect
from types import SimpleNamespace
from typing import Any

import gradio as gr
import pytest

from headscope.app.wiring import PRIVATE, Ctx, handler, pick, section
from headscope.errors import InputError


def _double(inputs: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    if inputs["n"] < 0:
        raise InputError("n must be ≥ 0 <b>")
    return {"twice": 2 * inputs["n"], "label": f"{inputs['word']}:{ctx.request}"}


def test_values_travel_by_name_and_unset_outputs_are_skipped() -> None:
    fn = handler(_double, {"n": None, "word": None}, {"label": None, "unused": None, "twice": None})
    label, unused, twice = fn(3, "x", request="R")
    assert (label, twice) == ("x:R", 6)
    assert unused == gr.skip()


def test_one_output_is_returned_bare() -> None:
    fn = handler(lambda i, c: {"only": i["a"] + 1}, {"a": None}, {"only": None})
    assert fn(1) == 2


def test_the_api_sees_named_parameters_and_gradio_finds_request_and_progress() -> None:
    fn = handler(_double, {"n": None, "word": None}, {"twice": None, "label": None})
    params = inspect.signature(fn).parameters
    assert list(params)[:2] == ["n", "word"]
    assert params["request"].annotation is gr.Request
    assert isinstance(params["progress"].default, gr.Progress)
    assert fn.__name__ == "_double"


def test_an_unbound_output_name_is_a_bug_and_user_errors_are_one_escaped_line() -> None:
    fn = handler(_double, {"n": None, "word": None}, {"twice": None})
    with pytest.raises(gr.Error, match="internal error"):  # "label" is not bound: our bug, logged
        fn(1, "x")
    with pytest.raises(gr.Error) as err:
        fn(-1, "x")
    assert "n must be ≥ 0 &lt;b&gt;" in str(err.value)


def test_input_count_must_match() -> None:
    fn = handler(_double, {"n": None, "word": None}, {"twice": None, "label": None})
    with pytest.raises(gr.Error):
        fn(1)


class _Listener:
    """A stand-in for a Gradio listener (`button.click`, `json.change`): records what is bound to it; the event it
    returns has a `success` listener of its own."""

    def __init__(self, name: str, log: list[tuple[Any, ...]]):
        self.name, self.log = name, log

    def __call__(self, fn: Any, inputs: Any, outputs: Any, **event: Any) -> Any:
        self.log.append((self.name, fn, inputs, outputs, event))
        return SimpleNamespace(success=_Listener(f"{self.name}.success", self.log))


def _run(inputs: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    return {"raw": {"n": 2 * inputs["n"]}}


def _draw(inputs: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    return {"view": f"drawn {inputs['raw']['n']}"} if inputs["raw"] else {}


def test_a_section_is_the_endpoint_then_a_private_draw_from_its_json_and_a_session_redraw() -> None:
    log: list[tuple[Any, ...]] = []
    raw, view, rebuilds = SimpleNamespace(change=_Listener("raw.change", log)), object(), []
    session = SimpleNamespace(rebuild=lambda fn, i, o: rebuilds.append((fn, i, o)))
    section(_Listener("click", log), _run, _draw, inputs={"n": "N"}, outputs={"raw": raw}, views={"view": view},
            session=session, api_name="t_run")  # fmt: skip
    (name, endpoint, ins, outs, event), (then, draw, draw_ins, views, draw_event) = log
    assert (name, ins, outs, event) == ("click", ["N"], [raw], {"api_name": "t_run"})
    assert endpoint(3) == {"n": 6}  # the JSON, under the output's name
    assert (then, draw_ins, views, draw_event) == ("click.success", [raw], [view], PRIVATE)
    assert draw({"n": 6}) == "drawn 6"
    [(redraw, redraw_ins, redraw_outs)] = rebuilds
    assert (redraw_ins, redraw_outs, redraw({"n": 1})) == ([raw], [view], "drawn 1")


def test_a_job_section_goes_through_its_controls_and_may_draw_whenever_the_json_changes() -> None:
    log: list[tuple[Any, ...]] = []
    raw, status, view = SimpleNamespace(change=_Listener("raw.change", log)), object(), object()

    def bind_job(trigger: Any, fn: Any, **kw: Any) -> Any:
        log.append(("controls", fn, kw))
        return SimpleNamespace(success=None)  # drawn on change: never chained after the job

    section(_Listener("click", log), _run, _draw, inputs={"n": "N"}, outputs={"raw": raw, "status": status},
            views={"view": view}, draw_inputs=pick({"raw": raw, "x": 1}, "raw"), controls=SimpleNamespace(bind=bind_job),
            on_change=raw, api_name="t_job")  # fmt: skip
    (who, fn, kw), (then, _, draw_ins, views, draw_event) = log
    assert who == "controls" and fn is _run
    assert kw == {"inputs": {"n": "N"}, "outputs": {"raw": raw, "status": status}, "api_name": "t_job"}
    assert (then, draw_ins, views, draw_event) == ("raw.change", [raw], [view], PRIVATE)
