"""The Decoding tab through gradio_client, like any API user, on the tiny models."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from gradio_client import Client

from headscope.models import ModelHandle

ARGS = dict(
    chat=False, max_new_tokens=8, temperature=0.0, seed=0, max_draft=4, window=4, draft_model="tiny-gpt2",
    regex="[0-9]{3}", grammar="(none)", method="awrs", particles=1, entropy=True, action="none", lam=1.0,
)  # fmt: skip
# (the shared selection is session state: API callers set it with /selection_set, it is not an argument)
ORDER = ("chat", "strategies", "max_new_tokens", "temperature", "seed", "max_draft", "window", "draft_model",
         "regex", "grammar", "method", "particles", "entropy", "action", "lam")  # fmt: skip
ID_LIST = re.compile(r"\[\s*\d+\s*(,\s*\d+\s*){2,}\]")


def call(
    client: Client, strategies: list[str], model: str = "tiny-llama", prompt: str = "abc abc ab", **over
):
    args = {**ARGS, "strategies": strategies, **over}
    return client.predict(model, prompt, *(args[k] for k in ORDER), api_name="/decode_compare")


def test_decode_compare_endpoint(client: Client) -> None:
    status, strip, note, _grid, heatmap, _bars, download, details = call(
        client, ["greedy", "ngram", "jacobi", "lookahead", "speculative", "constrained"]
    )
    rows = {r["name"]: r for r in details["strategies"]}
    assert all(
        rows[n]["identical_to_greedy"] for n in ("greedy", "ngram", "jacobi", "lookahead", "speculative")
    )
    assert rows["constrained"]["constraint_evals_per_token"] > 0
    assert status.startswith("done")
    labels = [r["label"] for r in strip["rows"]]
    assert labels[0] == "greedy (reference)" and len(labels) == 6  # greedy's own row once, as the reference
    assert not any("identical to greedy" in label for label in labels)
    assert all("id" not in r["tokens"] and not ID_LIST.search(" ".join(r["tokens"])) for r in strip["rows"])
    assert set(strip["categories"]) == {"drafted and accepted", "produced by the verifier"}  # the legend
    spec = next(r for r in strip["rows"] if r["label"].startswith("speculative"))
    assert spec["ids"] == rows["speculative"]["token_ids"]  # ids ride along for the hover only
    assert "Every run matches greedy" in note or "departs" in note
    assert json.loads(Path(download).read_text()) == details
    figure = json.loads(heatmap["plot"])
    assert figure["data"][0]["type"] == "heatmap" and len(figure["data"][0]["x"]) == 2 * 4  # "L.H" per head


def test_ablating_the_selected_heads_marks_where_greedy_changes(app_url: str) -> None:
    facts = ModelHandle.load("tiny-gpt2", device="cpu").facts
    client = Client(app_url, verbose=False)  # a session of its own: the selection is per session
    with pytest.raises(Exception, match="select heads first"):
        call(client, ["greedy"], action="dial")
    client.predict("*.*", "tiny-gpt2", api_name="/selection_set")
    _, strip, note, grid, _heatmap, _bars, _file, details = call(
        client, ["greedy"], model="tiny-gpt2", prompt="hello world", action="ablate", max_new_tokens=16
    )
    row = details["strategies"][0]
    assert details["intervention"] == row["intervention"] == "ablate heads 0.*, 1.* (mean over the prompt)"
    assert not row["identical_to_greedy"] and details["reference"]["token_ids"] == details["greedy_token_ids"]
    assert strip["title"].startswith("intervention: ablate heads") and any(strip["rows"][1]["marks"])
    assert f"departs from greedy at token {row['diverges_at']}" in note
    assert grid["kind"] == "head_grid" and len(grid["z"]) == facts.n_layers and grid["scale"] == "diverging"


def test_bad_inputs_are_clear_errors_and_the_app_keeps_serving(client: Client) -> None:
    with pytest.raises(Exception, match="invalid regex"):
        call(client, ["constrained"], regex="[0-9")
    with pytest.raises(Exception, match=r"max new tokens|maximum value 128"):
        call(client, ["greedy"], max_new_tokens=129)
    *_, details = call(client, ["greedy"])
    assert len(details["strategies"][0]["token_ids"]) == 8


@pytest.mark.parametrize(
    ("index", "bad", "message"),
    [
        (1, "x" * 5000, "the limit is 4,000"),
        (4, 1000, "max new tokens"),
        (4, "abc", "max new tokens must be a number"),
        (4, float("nan"), "max new tokens"),
        (4, 1.7, "max new tokens must be an integer"),
        (5, float("inf"), "temperature"),
        (6, 2.5, "seed must be an integer"),
        (7, "3.5", "max draft length must be an integer"),
        (13, 0, "SMC particles"),
        (16, 5, "λ must be in"),
        (15, "erase", "heads action must be one of"),
        (3, ["greedy", "rm -rf"], "unknown strategy"),
        (9, "../etc/passwd", "unknown draft model"),
        (0, "org/model", "unknown model"),
    ],
)
def test_server_side_limits_without_gradio(index: int, bad: object, message: str) -> None:
    """Direct calls (as an API caller bypassing the UI's sliders) hit the same checks: one readable line each."""
    import gradio as gr

    from headscope.app.decoding_tab import decode_compare

    base = ["tiny-llama", "x", False, ["greedy"], 8, 0.0, 0, 4, 4, "(none)", "", "(none)", "awrs", 1, False, "none",
            1.0, None]  # fmt: skip
    args = list(base)
    args[index] = bad
    with pytest.raises(gr.Error, match=message) as err:
        decode_compare(*args)
    assert "internal error" not in str(err.value) and "\n" not in str(err.value)


def test_speculative_without_a_draft_model_is_refused_before_the_job() -> None:
    import gradio as gr

    from headscope.app.decoding_tab import decode_compare

    with pytest.raises(gr.Error, match="speculative needs a draft model"):
        decode_compare(
            "tiny-llama", "x", False, ["speculative"], 8, 0.0, 0, 4, 4, "(none)", "", "(none)", "awrs"
        )


def test_the_job_command_is_the_cli_running_the_same_config() -> None:
    """A remote runner executes `command`: the CLI must parse it back into the config the tab built."""
    import argparse
    from dataclasses import replace

    from headscope.app.decoding_tab import cli_command, make_config
    from headscope.cli import decoding as cli

    cfg = make_config(12, 0.7, 3, 5, 4, "", "json_object", "mask", 2, True, "0.1, 1.*", "dial", 0.5)
    cfg = replace(cfg, draft_model="tiny-gpt2")
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(cli_command("say it", True, ["greedy", "constrained"], cfg))
    assert cli._config(args) == cfg and args.chat and args.prompt == "say it"
    assert args.strategies == "greedy,constrained"
