"""The Localist models tab through gradio_client: shipped table, attention comparison, bad input."""

from __future__ import annotations

import math

import gradio as gr
import pytest
from gradio_client import Client

from headscope.app import localist_tab as tab
from headscope.app.wiring import Ctx, handler
from headscope.models import ModelHandle

TEXT = "The river rises in the hills. It flows south. A mill stands on its bank."


def test_sweep_table_endpoint(client: Client) -> None:
    table = client.predict(api_name="/localist_sweep_table")
    lams = sorted(r["lambda"] for r in table["rows"] if r["schedule"] == "uniform" and r["n_layers"] == 2)
    assert lams == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert table["paper"]["entropy_bits_lambda0"] == 7.18 and "best_tradeoff_lambda" in table["summary"]


def test_compare_endpoint_entropies_equal_a_recomputation(client: Client) -> None:
    raw = client.predict("localist-2l-lambda1.0", TEXT, 1, 2, api_name="/localist_compare")
    v = tab.draw({"raw": raw}, Ctx())  # the page draws from the JSON in a follow-up event
    summary, grid, grid0, att, path = (v[k] for k in ("summary", "grid", "grid0", "attention", "file"))
    got = {r["model"]: r for r in raw["readings"]}
    assert set(got) == {"localist-2l-lambda1.0", "localist-2l-lambda0"}
    for name, reading in got.items():
        handle = ModelHandle.load(name, device="cpu", allow_external=False)
        _, cache = handle.run_with_cache(handle.tokenize(TEXT), ["blocks.1.attn.hook_pattern"])
        row = cache["blocks.1.attn.hook_pattern"][0, 2]  # head 2, [q, k]
        want = sum(-sum(p * math.log2(p) for p in r.tolist() if p > 0) for r in row) / row.shape[0]
        assert reading["entropy_bits"][1][2] == pytest.approx(want, abs=1e-4)
    # the views show the same numbers on one colour scale, and the chosen head's pattern of both models
    assert grid["z"][1][2] == pytest.approx(got["localist-2l-lambda1.0"]["entropy_bits"][1][2], abs=1e-3)
    assert grid0["z"][1][2] == pytest.approx(got["localist-2l-lambda0"]["entropy_bits"][1][2], abs=1e-3)
    assert (grid["zmin"], grid["zmax"]) == (grid0["zmin"], grid0["zmax"]) and grid["marks"] == {"1.2": "◆"}
    assert [h["label"] for h in att["heads"]] == ["λ = 1.0 · L1 H2", "λ = 0 · L1 H2"]
    assert len(att["ids"]) == len(att["tokens"]) and "bits" in summary and path.endswith(".json")


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("smollm2-135m", TEXT, 0, 0), "shipped localist"),
        (("localist-2l-lambda0.6", "", 0, 0), "empty"),
        (("localist-2l-lambda0.6", TEXT, 2, 0), r"layer must be an integer in \[0, 1\]"),
        (("localist-2l-lambda0.6", TEXT, 0, 1.5), r"head must be an integer in \[0, 3\], got 1.5"),
        (("localist-2l-lambda0.6", TEXT, "abc", 0), "layer must be a number"),
        (("localist-2l-lambda0.6", "x" * 2001, 0, 0), "2,001 characters long; the limit is 2,000"),
    ],
)
def test_bad_input_is_a_clear_error(args: tuple, match: str) -> None:
    names = ("model", "text", "layer", "head")
    with pytest.raises(gr.Error, match=match) as err:
        handler(tab.compare, dict.fromkeys(names), {"raw": None})(*args)
    assert "\n" not in str(err.value)


def test_app_keeps_serving_after_a_bad_call(client: Client) -> None:
    # our range line, not gradio's ("Value 7 is greater than maximum value 1"): the field has no gradio bound
    with pytest.raises(Exception, match=r"layer must be an integer in \[0, 1\], got 7"):
        client.predict("localist-2l-lambda0.6", TEXT, 7, 0, api_name="/localist_compare")
    assert client.predict(api_name="/localist_sweep_table")["rows"]
