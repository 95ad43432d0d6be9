"""Session files through gradio_client: a bundle of one visitor's state loads into a fresh visitor's session
(model, selection, inputs and results), and the restored selection is the one the server uses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

from headscope.app import locality_tab, main, session
from headscope.app import selection_bar as sel
from headscope.app.wiring import Ctx

MODEL = "tiny-llama"
TEXT = "The cat sat on the mat. Then it slept."


def _values_for(results: dict[tuple[str, str], object]) -> list[object]:
    return [results.get((tab, key)) for tab, key, _ in main.session_parts.flat()]


def test_a_session_file_restores_model_selection_inputs_and_results(app_url: str, tmp_path: Path) -> None:
    a = Client(app_url, verbose=False)
    assert a.predict("0.1, 1.*", MODEL, api_name="/selection_set")[0] == "0.1, 1.*"
    raw = a.predict(
        MODEL, TEXT, 0.6, "distance", "uniform", 3.0, "selected heads only", api_name="/locality_analyse"
    )
    selection = sel.from_text(sel.empty(), "0.1, 1.*", main.STORE.get(MODEL))
    views = locality_tab.draw_entropy({"raw": raw, "selection": selection}, Ctx())
    summary, grid, delta, strip = (views[k] for k in ("summary", "grid", "delta", "strip"))
    # what the browser sends to /session_export: every registered component's value (here: the locality tab)
    values = _values_for({
        ("locality", "text"): TEXT, ("locality", "lam"): 0.6, ("locality", "summary"): summary,
        ("locality", "grid"): grid, ("locality", "delta"): delta, ("locality", "strip"): strip,
        ("locality", "result"): raw,
    })  # fmt: skip
    bundle = session.export_bundle(main.session_parts, MODEL, selection, values)
    path = tmp_path / "session.json"
    path.write_text(json.dumps(bundle))

    b = Client(app_url, verbose=False)
    out = b.predict(handle_file(str(path)), api_name="/session_import")
    assert out[0] == MODEL and out[1] == "0.1, 1.*"
    assert grid in out and delta in out and strip in out and raw in out
    assert session.as_text(summary) in out  # Markdown from a file comes back as text (no link, image or HTML)
    # the restored selection lives in b's server-side session: the dial acts on it
    raw_b = b.predict(
        MODEL, TEXT, 0.6, "distance", "uniform", 3.0, "selected heads only", api_name="/locality_analyse"
    )
    grid_b = locality_tab.draw_entropy({"raw": raw_b, "selection": selection}, Ctx())["grid"]
    assert raw_b["dial"]["heads"] == "0.1, 1.*" and grid_b == grid


def test_a_foreign_file_is_refused_with_one_line(app_url: str, tmp_path: Path) -> None:
    path = tmp_path / "not_a_session.json"
    path.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(Exception, match="not a session file"):
        Client(app_url, verbose=False).predict(handle_file(str(path)), api_name="/session_import")


def test_every_tab_contributes_to_the_session_file() -> None:
    assert {"model", "locality", "localist"} <= set(main.session_parts.parts)
