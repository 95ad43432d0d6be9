"""The Decoding tab through gradio_client, like any API user, on the tiny models."""

from __future__ import annotations

import pytest
from gradio_client import Client

ARGS = dict(
    chat=False, max_new_tokens=8, temperature=0.0, seed=0, max_draft=4, window=4,
    draft_model="tiny-gpt2", regex="[0-9]{3}", grammar="(none)", method="awrs",
)  # fmt: skip


def call(client: Client, strategies: list[str], **over):
    args = {**ARGS, **over}
    return client.predict(
        "tiny-llama", "abc abc ab", args["chat"], strategies, args["max_new_tokens"], args["temperature"],
        args["seed"], args["max_draft"], args["window"], args["draft_model"], args["regex"], args["grammar"],
        args["method"], api_name="/decode_compare",
    )  # fmt: skip


def test_decode_compare_endpoint(client: Client) -> None:
    view, _plot, details = call(client, ["greedy", "ngram", "jacobi", "speculative", "constrained"])
    rows = {r["name"]: r for r in details["strategies"]}
    assert all(rows[n]["identical_to_greedy"] for n in ("greedy", "ngram", "jacobi", "speculative"))
    assert rows["constrained"]["constraint_evals_per_token"] > 0
    assert "drafted, accepted" in view and "<b>speculative</b>" in view


def test_bad_inputs_are_clear_errors_and_the_app_keeps_serving(client: Client) -> None:
    with pytest.raises(Exception, match="invalid regex"):
        call(client, ["constrained"], regex="[0-9")
    with pytest.raises(Exception, match=r"max new tokens|maximum value 128"):
        call(client, ["greedy"], max_new_tokens=129)
    _, _, details = call(client, ["greedy"])
    assert len(details["strategies"][0]["token_ids"]) == 8


def test_server_side_limits_without_gradio() -> None:
    """Direct calls (as an API caller bypassing the UI's sliders) hit the same checks."""
    import gradio as gr

    from headscope.app.decoding_tab import decode_compare

    base = ["tiny-llama", "x", False, ["greedy"], 8, 0.0, 0, 4, 4, "(none)", "", "(none)", "awrs"]
    for i, bad in [
        (1, "x" * 5000),
        (4, 1000),
        (3, ["greedy", "rm -rf"]),
        (9, "../etc/passwd"),
        (0, "org/model"),
    ]:
        args = list(base)
        args[i] = bad
        with pytest.raises(gr.Error):
            decode_compare(*args)
