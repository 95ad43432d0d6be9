"""Circuits tab through gradio_client: run on a tiny model with a custom task, download, re-upload, compare."""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
import pytest
from gradio_client import Client, handle_file

from headscope.app.circuits_tab import circuits_view

CUSTOM = json.dumps(
    {
        "name": "letters",
        "positive": [
            {"prompt": "abcabcab", "answer": "c", "wrong": "a"},
            {"prompt": "xyzxyzxy", "answer": "z", "wrong": "x"},
            {"prompt": "pqrpqrpq", "answer": "r", "wrong": "p"},
        ],
        "negative": [{"prompt": "abcdefgh"}, {"prompt": "xyzuvwst"}, {"prompt": "pqrstuvw"}],
    }
)


@pytest.fixture(scope="module")
def run(client: Client) -> tuple:
    return client.predict("tiny-llama", "custom", CUSTOM, 6, 0, 10, "mean", api_name="/circuits_run")


def test_run_returns_views_report_and_file(run: tuple) -> None:
    text, maps, roc, circuit, report, path = run
    assert "custom" in text and "ROC-AUC" in text
    assert report["model"]["name"] == "tiny-llama" and report["schema_version"] == "2.0"
    assert circuit["circuit"] == report["circuit"] and maps and roc
    assert json.loads(Path(path).read_text())["circuit"] == report["circuit"]


def test_upload_view_and_compare(client: Client, run: tuple) -> None:
    path = run[5]
    text, _, _, circuit, diff = client.predict(handle_file(path), None, api_name="/circuits_view")
    assert "tiny-llama" in text and diff is None and circuit["circuit"] == run[4]["circuit"]
    *_, diff = client.predict(handle_file(path), handle_file(path), api_name="/circuits_view")
    assert diff["heads_added"] == [] and diff["heads_removed"] == []


def test_bad_input_is_a_clear_error(client: Client, tmp_path: Path) -> None:
    with pytest.raises(Exception, match=r"not in the list of choices|task must be"):
        client.predict("tiny-llama", "nope", "", 6, 0, 10, "mean", api_name="/circuits_run")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema_version": "0.1"}))
    with pytest.raises(Exception, match="schema_version"):
        client.predict(handle_file(str(bad)), None, api_name="/circuits_view")
    with pytest.raises(Exception, match="2 tokens"):
        spec = json.loads(CUSTOM)
        spec["positive"][0]["answer"] = "cd"
        client.predict("tiny-llama", "custom", json.dumps(spec), 6, 0, 10, "mean", api_name="/circuits_run")


def test_view_takes_bytes_not_paths() -> None:
    """Server side: an upload is bytes (or pasted text) with a size limit; a path string is just bad JSON."""
    with pytest.raises(gr.Error, match="not valid JSON"):
        circuits_view("/etc/passwd", None)
    with pytest.raises(gr.Error, match="larger than"):
        circuits_view(b" " * 3_000_000, None)
    with pytest.raises(gr.Error, match="upload report A"):
        circuits_view(None, None)
