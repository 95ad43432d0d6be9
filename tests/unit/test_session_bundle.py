"""Session files: each component type survives export → JSON text → import, and a file cannot smuggle markup,
paths or foreign models in."""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
import pandas as pd
import plotly.graph_objects as go
import pytest
from gradio.components.plot import PlotData

from headscope.app import selection_bar as sel
from headscope.app import session
from headscope.app.figures import Plot
from headscope.app.views import HeadGrid, grid_value
from headscope.errors import InputError


def _through_text(component, value):
    """As the bundle carries it: encode, dump to JSON text, load, decode."""
    return session.decode(component, json.loads(json.dumps(session.encode(component, value))))


def test_plain_values_and_views_round_trip() -> None:
    grid = grid_value([[1.0, 2.0]], title="t", unit="bits", selected=["0.1"])
    assert _through_text(HeadGrid(), grid) == grid
    assert _through_text(gr.Textbox(), "The cat") == "The cat"
    assert _through_text(gr.Number(), 0.6) == 0.6
    assert _through_text(gr.JSON(), {"a": [1, 2]}) == {"a": [1, 2]}


def test_state_bytes_round_trip() -> None:
    value = {"vector": b"\x00\x01safetensors", "name": "v"}
    assert _through_text(gr.State(), value) == value


def test_figures_keep_their_data_and_gain_the_export_config() -> None:
    fig = go.Figure(go.Scatter(x=[0, 1], y=[2, 3]))
    data = PlotData(type="plotly", plot=str(fig.to_json()))
    back = _through_text(Plot(), data)
    restored = json.loads(back.plot)
    assert restored["data"][0]["y"] == [2, 3]
    assert restored["config"]["toImageButtonOptions"]["format"] == "svg"


def test_tables_round_trip_as_headers_and_rows() -> None:
    df = pd.DataFrame([[0, 1.5], [1, None]], columns=["λ", "entropy (bits)"])
    back = _through_text(gr.Dataframe(), df)
    assert back == {"headers": ["λ", "entropy (bits)"], "data": [[0, 1.5], [1, None]]}


def test_files_travel_as_bytes_with_a_safe_name(tmp_path: Path) -> None:
    f = tmp_path / "circuit_report.json"
    f.write_text('{"ok": true}')
    back = _through_text(gr.File(), str(f))
    assert Path(back).name == "circuit_report.json" and Path(back).read_text() == '{"ok": true}'
    evil = session.decode(gr.File(), [{"name": "../../etc/passwd", "b64": "eA=="}])
    assert Path(evil).name == "passwd" and "etc" not in Path(evil).parent.name


def test_markup_is_never_loaded_or_registered() -> None:
    with pytest.raises(InputError, match="markup"):
        session.decode(gr.HTML(), "<img src=x onerror=alert(1)>")
    with pytest.raises(TypeError, match=r"plain gr\.HTML"):
        session.SessionParts().add("tab", view=gr.HTML())
    with pytest.raises(InputError, match="must be data"):
        session.decode(HeadGrid(), "<b>x</b>")


def _bundle(**over) -> bytes:
    b = {
        "format": "headscope-session",
        "version": 1,
        "model": "tiny-llama",
        "selection": sel.empty().to_json(),
        "tabs": {},
    }
    b.update(over)
    return json.dumps(b).encode()


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"not json", "invalid JSON"),
        (_bundle(format="other"), "format"),
        (_bundle(version=2), "version 2"),
        (_bundle(model="../../etc/passwd"), "not in the catalog"),
        (_bundle(model="org/some-model"), "not in the catalog"),
        (_bundle(tabs=[]), "'tabs'"),
        (b" " * (session.MAX_SESSION_BYTES + 1), "larger than"),
    ],
)
def test_bad_session_files_are_one_line_errors(data: bytes, match: str) -> None:
    with pytest.raises(InputError, match=match):
        session.read_bundle(data)


def test_import_leaves_components_the_file_does_not_mention() -> None:
    parts = session.SessionParts()
    text, lam = gr.Textbox(), gr.Number()
    parts.add("tab", text=text, lam=lam)
    selection = sel.toggle(sel.empty(), 1, 2, 2, 4, "tiny-llama")
    bundle = session.read_bundle(_bundle(selection=selection.to_json(), tabs={"tab": {"text": "hello"}}))
    values = session.import_values(parts, bundle)
    assert values[:4] == ["tiny-llama", selection, "1.2", ""]
    assert values[4] == "hello" and isinstance(values[5], type(gr.skip()))


def test_export_then_import_restores_the_same_values() -> None:
    parts = session.SessionParts()
    comps = {"text": gr.Textbox(), "grid": HeadGrid(), "table": gr.Dataframe(), "state": gr.State()}
    parts.add("tab", **comps)
    grid = grid_value([[0.5]], title="g", unit="bits")
    values = ["txt", grid, pd.DataFrame([[1, 2]], columns=["a", "b"]), {"v": b"\x01"}]
    selection = sel.toggle(sel.empty(), 0, 0, 1, 1, "tiny-llama")
    bundle = session.export_bundle(parts, "tiny-llama", selection, values)
    back = session.import_values(parts, session.read_bundle(json.dumps(bundle).encode()))
    assert back[1] == selection
    assert back[4:] == ["txt", grid, {"headers": ["a", "b"], "data": [[1, 2]]}, {"v": b"\x01"}]
