"""The handler shape (app/wiring.py): named inputs in, named outputs out, what Gradio sees."""

from __future__ import annotations

import inspect
from typing import Any

import gradio as gr
import pytest

from headscope.app.wiring import Ctx, handler
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
