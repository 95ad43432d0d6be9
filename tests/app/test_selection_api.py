"""The selection grammar on the server, through gradio_client: each client has its own selection."""

from __future__ import annotations

import pytest
from gradio_client import Client


def test_selection_is_parsed_on_the_server_and_kept_per_session(app_url: str) -> None:
    a, b = Client(app_url, verbose=False), Client(app_url, verbose=False)
    assert a.predict("1.*, *.0", "tiny-llama", api_name="/selection_set") == ("0.0, 1.*", "")
    assert a.predict("3, 10-12", api_name="/selection_positions") == ("0.0, 1.*", "3, 10, 11, 12")
    assert b.predict("0.3", "tiny-llama", api_name="/selection_set") == ("0.3", "")
    # a's selection is untouched by b's, and clearing empties both fields
    raw = a.predict(
        "tiny-llama",
        "The cat sat.",
        0.0,
        "distance",
        "uniform",
        1.0,
        "all heads",
        api_name="/locality_analyse",
    )
    assert raw["shown_heads"] == [[0, 0], [1, 0], [1, 1], [1, 2], [1, 3]]  # the view used a's own selection
    assert a.predict(api_name="/selection_clear") == ("", "")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("9.4", r"layer 9 in '9.4' is out of range \(the model has layers 0..1\)"),
        ("0.7", "head 7 in '0.7' is out of range"),
        ("3", r"'3' is not L.H, L.\* or \*.H \(a bare head index now reads '\*.3'"),
        ("x" * 5000, "at most 4000 characters"),
    ],
)
def test_bad_selections_are_one_line_errors(app_url: str, text: str, message: str) -> None:
    with pytest.raises(Exception, match=message):
        Client(app_url, verbose=False).predict(text, "tiny-llama", api_name="/selection_set")
