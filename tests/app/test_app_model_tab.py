"""The app, started in-process, called through gradio_client like any API user."""

from __future__ import annotations

import gradio as gr
import plotly.graph_objects as go
import pytest
from gradio_client import Client

from headscope.app.main import demo


def test_model_info_endpoint(client: Client) -> None:
    info = client.predict("tiny-llama", api_name="/model_info")
    assert info["facts"]["n_layers"] == 2 and info["facts"]["n_kv_heads"] == 2
    assert info["identity"]["name"] == "tiny-llama"


def test_unknown_model_is_a_clear_error_and_app_keeps_serving(client: Client) -> None:
    with pytest.raises(Exception, match="not in the list of choices"):
        client.predict("../../etc/passwd", api_name="/model_info")
    assert client.predict("tiny-gpt2", api_name="/model_info")["facts"]["n_heads"] == 4


def test_demo_importable_without_launching() -> None:
    import importlib

    mod = importlib.import_module("headscope.app.main")
    assert mod.demo is demo


def test_server_side_check_refuses_non_catalog_names_too() -> None:
    """Our own check, behind gradio's choice check: a path or hub id never reaches the loader."""
    import gradio as gr

    from headscope.app.model_tab import model_info
    from headscope.app.wiring import handler

    endpoint = handler(model_info, {"model": None}, {"raw": None})  # what Gradio calls
    for bad in ["../../etc/passwd", "org/model", "<script>x</script>"]:
        with pytest.raises(gr.Error, match="unknown model") as err:
            endpoint(bad)
        assert "<script>" not in str(err.value)


def test_outputs_without_a_value_start_hidden_and_show_when_set() -> None:
    """No empty plot frame, placeholder table or empty download box before a run (figures.reveal_when_set)."""
    from headscope.app.figures import _visible_if_set

    outputs = {id(b) for fn in demo.fns.values() for b in fn.outputs}
    empty = [
        b for b in demo.blocks.values() if isinstance(b, gr.Plot) and b.value is None and id(b) in outputs
    ]
    assert len(empty) >= 6  # circuits' four, the feature histogram, the λ sweep, ...
    assert not [b.label for b in empty if b.visible is True]
    sweep = next(b for b in empty if b.label == "λ sweep")
    plotted = sweep.postprocess(go.Figure(go.Scatter(x=[0, 1], y=[1, 2])))
    assert _visible_if_set(plotted)["visible"] is True and _visible_if_set(None)["visible"] is False
