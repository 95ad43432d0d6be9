"""The Attention & locality tab through gradio_client, plus its server-side input checks called directly."""

from __future__ import annotations

import gradio as gr
import numpy as np
import pytest
from gradio_client import Client

from headscope.app import locality_tab as tab

TEXT = "The cat sat on the mat. Then it slept, and the sun set."


def test_analyse_endpoint(client: Client) -> None:
    _, shading, summary = client.predict(
        "tiny-llama", TEXT, 0.5, "distance", "progressive", 3.0, api_name="/locality_analyse"
    )
    assert np.array(summary["entropy_bits"]).shape == (2, 4)
    assert np.array(summary["induction_score"]).shape == (2, 4)
    assert summary["dial"]["lambda"] == 0.5 and summary["target"] == "local"
    assert shading.count("<span") == summary["n_tokens"]


def test_analyse_lambda_zero_matches_cli_report(client: Client) -> None:
    from headscope.app.state import STORE
    from headscope.probes.report import entropy_report

    _, _, summary = client.predict(
        "tiny-gpt2", TEXT, 0.0, "window", "uniform", 1.0, api_name="/locality_analyse"
    )
    report = entropy_report(STORE.get("tiny-gpt2"), TEXT, backend="eager")
    np.testing.assert_allclose(summary["entropy_bits"], report["entropy_bits"], atol=1e-5)


def test_pattern_endpoint(client: Client) -> None:
    _, data = client.predict(
        "tiny-llama", TEXT, 0.0, "distance", "uniform", 1.0, 1, 3, api_name="/locality_pattern"
    )
    a = np.array(data["pattern"])
    assert a.shape == (data["n_tokens"], data["n_tokens"])
    np.testing.assert_allclose(a.sum(-1), 1.0, atol=1e-4)
    assert np.allclose(np.triu(a, 1), 0.0)


def test_sweep_endpoint(client: Client) -> None:
    _, payload = client.predict("tiny-llama", TEXT, "block", "uniform", 1.0, api_name="/locality_sweep")
    assert [r["lambda"] for r in payload["rows"]] == list(tab.SWEEP_LAMBDAS)
    assert payload["rows"][0]["kl"] == 0.0 and payload["target"] == "block"


def test_bad_input_over_the_api_is_a_clear_error(client: Client) -> None:
    with pytest.raises(Exception, match="text is empty"):
        client.predict("tiny-llama", "   ", 0.5, "distance", "uniform", 1.0, api_name="/locality_analyse")
    with pytest.raises(Exception, match="pattern viewer takes at most 256 tokens"):
        client.predict(
            "tiny-llama", "w" * 300, 0.0, "distance", "uniform", 1.0, 0, 0, api_name="/locality_pattern"
        )
    assert client.predict("tiny-llama", TEXT, 0.0, "distance", "uniform", 1.0, api_name="/locality_analyse")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("tiny-llama", TEXT, float("nan"), "distance", "uniform", 1.0), "lambda must be in"),
        (("tiny-llama", TEXT, 1.5, "distance", "uniform", 1.0), "lambda must be in"),
        (("tiny-llama", TEXT, 0.5, "distance", "progressive", 0.5), "beta must be in"),
        (("tiny-llama", TEXT, 0.5, "distance", "explicit", 1.0), "schedule must be one of"),
        (("tiny-llama", TEXT, 0.5, "global", "uniform", 1.0), "mode must be one of"),
        (("tiny-llama", TEXT, "x", "distance", "uniform", 1.0), "lambda must be a number"),
        (("tiny-llama", None, 0.5, "distance", "uniform", 1.0), "text is empty"),
        (("tiny-llama", "a" * 20_001, 0.5, "distance", "uniform", 1.0), "at most 20000"),
        (("../etc/passwd", TEXT, 0.5, "distance", "uniform", 1.0), "unknown model"),
    ],
)
def test_analyse_validates_server_side(args: tuple, message: str) -> None:
    with pytest.raises(gr.Error, match=message):
        tab.analyse(*args)


def test_pattern_validates_layer_and_head() -> None:
    with pytest.raises(gr.Error, match="layer must be in"):
        tab.pattern("tiny-llama", TEXT, 0.0, "distance", "uniform", 1.0, 5, 0)
    with pytest.raises(gr.Error, match="head must be in"):
        tab.pattern("tiny-llama", TEXT, 0.0, "distance", "uniform", 1.0, 0, float("nan"))
