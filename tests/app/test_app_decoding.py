"""The Decoding tab through gradio_client, like any API user, on the tiny models."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from gradio_client import Client

ARGS = dict(
    chat=False, max_new_tokens=8, temperature=0.0, seed=0, max_draft=4, window=4, draft_model="tiny-gpt2",
    regex="[0-9]{3}", grammar="(none)", method="awrs", particles=1, entropy=True, heads="", action="ablate",
    lam=1.0,
)  # fmt: skip
ORDER = ("chat", "strategies", "max_new_tokens", "temperature", "seed", "max_draft", "window", "draft_model",
         "regex", "grammar", "method", "particles", "entropy", "heads", "action", "lam")  # fmt: skip


def call(
    client: Client, strategies: list[str], model: str = "tiny-llama", prompt: str = "abc abc ab", **over
):
    args = {**ARGS, "strategies": strategies, **over}
    return client.predict(model, prompt, *(args[k] for k in ORDER), api_name="/decode_compare")


def test_decode_compare_endpoint(client: Client) -> None:
    view, heatmap, _plot, details, download = call(
        client, ["greedy", "ngram", "jacobi", "lookahead", "speculative", "constrained"]
    )
    rows = {r["name"]: r for r in details["strategies"]}
    assert all(
        rows[n]["identical_to_greedy"] for n in ("greedy", "ngram", "jacobi", "lookahead", "speculative")
    )
    assert rows["constrained"]["constraint_evals_per_token"] > 0
    assert "drafted, accepted" in view and "<b>speculative</b>" in view
    assert "the reference" in view and "identical to greedy" not in view  # greedy's own row
    assert not re.search(r"\[\s*\d+\s*(,\s*\d+\s*)+\]", re.sub(r"<[^>]+>", "", view))  # no id lists on screen
    assert "id " in view and "position " in view  # ids and positions on hover only
    assert json.loads(Path(download).read_text()) == details
    figure = json.loads(heatmap["plot"])
    assert figure["data"][0]["type"] == "heatmap"
    assert len(figure["data"][0]["x"]) == 2 * 4  # every head of tiny-llama, "L.H"


def test_ablating_heads_marks_where_greedy_changes(client: Client) -> None:
    view, _heatmap, _plot, details, _ = call(
        client, ["greedy"], model="tiny-gpt2", prompt="hello world", heads="*.*", max_new_tokens=16
    )
    row = details["strategies"][0]
    assert details["intervention"] == row["intervention"] == "ablate heads 0.*, 1.* (mean over the prompt)"
    assert not row["identical_to_greedy"] and row["divergence"]["entropy_bits"] is not None
    assert "<b>intervention</b>" in view and "▼" in view and "departs from greedy at token" in view


def test_bad_inputs_are_clear_errors_and_the_app_keeps_serving(client: Client) -> None:
    with pytest.raises(Exception, match="invalid regex"):
        call(client, ["constrained"], regex="[0-9")
    with pytest.raises(Exception, match=r"max new tokens|maximum value 128"):
        call(client, ["greedy"], max_new_tokens=129)
    with pytest.raises(Exception, match="out of range"):
        call(client, ["greedy"], heads="99.99")
    _, _, _, details, _ = call(client, ["greedy"])
    assert len(details["strategies"][0]["token_ids"]) == 8


@pytest.mark.parametrize(
    ("index", "bad", "message"),
    [
        (1, "x" * 5000, "too long"),
        (4, 1000, "max new tokens"),
        (4, "abc", "max new tokens must be a number"),
        (4, float("nan"), "max new tokens"),
        (4, 1.7, "max new tokens must be an integer"),
        (5, float("inf"), "temperature"),
        (6, 2.5, "seed must be an integer"),
        (7, "3.5", "max draft length must be an integer"),
        (13, 0, "SMC particles"),
        (17, 5, "λ must be in"),
        (15, "12", "not L.H"),
        (3, ["greedy", "rm -rf"], "unknown strategy"),
        (9, "../etc/passwd", "unknown draft model"),
        (0, "org/model", "unknown model"),
    ],
)
def test_server_side_limits_without_gradio(index: int, bad: object, message: str) -> None:
    """Direct calls (as an API caller bypassing the UI's sliders) hit the same checks: one readable line each."""
    import gradio as gr

    from headscope.app.decoding_tab import decode_compare

    base = ["tiny-llama", "x", False, ["greedy"], 8, 0.0, 0, 4, 4, "(none)", "", "(none)", "awrs", 1, False, "",
            "ablate", 1.0]  # fmt: skip
    args = list(base)
    args[index] = bad
    with pytest.raises(gr.Error, match=message) as err:
        decode_compare(*args)
    assert "internal error" not in str(err.value) and "\n" not in str(err.value)
