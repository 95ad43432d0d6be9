"""Steering tab through gradio_client: contrastive side by side, α sweep, LoFiT train → apply, uploads, bad input."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pytest
import torch
from gradio_client import Client, handle_file

from headscope.app.steering_tab import steer_contrastive, steer_lofit_apply
from headscope.models import ModelHandle
from headscope.steering import vectors
from headscope.steering.contrastive import ContrastiveConfig, compare, contrastive_vector
from headscope.steering.direction import SteerConfig
from headscope.steering.generate import GenConfig
from headscope.steering.lofit import HeadOffsets

pytestmark = pytest.mark.usefixtures("one_thread")

POS = "good and happy\nlovely day"
NEG = "bad and sad\nawful day"


def test_contrastive_side_by_side(client: Client, tiny_llama: ModelHandle) -> None:
    plain, steered, summary, result, download = client.predict(
        "tiny-llama", POS, NEG, 1, 1.5, "all", "mean", "Hello there", 4, api_name="/steer_contrastive"
    )
    sv = contrastive_vector(tiny_llama, POS.splitlines(), NEG.splitlines(), ContrastiveConfig(1))
    ref = compare(tiny_llama, sv, "Hello there", POS.splitlines(), NEG.splitlines(), SteerConfig(1.5, "all"),
                  GenConfig(4)).to_json()  # fmt: skip
    assert result == ref
    assert [item["token"] for item in plain] == [t.replace(" ", "·") for t in tiny_llama.str_tokens(
        ref["unsteered"]["token_ids"])]  # fmt: skip
    # each steered token is shaded by its probability change, steered − unsteered
    assert [float(item["class_or_confidence"]) for item in steered] == pytest.approx(
        [t["change"] for t in ref["tokens"]], abs=1e-3
    )
    assert "effect" in summary and "perplexity" in summary
    meta, tensors = vectors.from_bytes(Path(download).read_bytes())
    back, steer = vectors.to_vector(meta, tensors, tiny_llama)
    assert torch.equal(back.direction, sv.direction) and steer == SteerConfig(1.5, "all")


def test_sweep(client: Client) -> None:
    _fig, table = client.predict(
        "tiny-llama", POS, NEG, 0, "last", "mean", "Hello", "0, 3", " a", " b", 2, api_name="/steer_sweep"
    )
    rows = table["data"]
    assert (
        [r[0] for r in rows] == [0.0, 3.0] and rows[0][2] == 0.0 and rows[0][3] == 1.0
    )  # α 0: no change, no cost


def test_lofit_train_then_apply_in_session(client: Client, tiny_llama: ModelHandle) -> None:
    _grid, summary, result, download = client.predict(
        "tiny-llama", "antonyms", 2, 2, 0, api_name="/steer_lofit_train"
    )
    meta, tensors = vectors.from_bytes(Path(download).read_bytes())
    assert meta.to_json()["heads"] == result["heads"] and meta.method == "lofit"
    assert vectors.to_offsets(meta, tensors, tiny_llama).biases.shape == (2, 16)
    assert len(result["selected_heads"]) == 2 and "trainable parameters" in summary
    plain, steered, info = client.predict("tiny-llama", None, "hot ->", 3, api_name="/steer_lofit_apply")
    assert [tuple(h) for h in info["heads"]] == [(h["layer"], h["head"]) for h in result["selected_heads"]]
    assert len(plain) == len(info["unsteered"]["token_ids"]) and len(steered) >= 1


def test_uploaded_vectors_for_another_model_are_refused(client: Client, tmp_path: Path) -> None:
    gpt2 = ModelHandle.load("tiny-gpt2", device="cpu")
    off = HeadOffsets(((0, 0),), torch.ones(1, gpt2.facts.d_head))
    path = tmp_path / "v.safetensors"
    path.write_bytes(vectors.to_bytes(*vectors.lofit_meta(gpt2, off, "h")))
    with pytest.raises(Exception, match="made for model tiny-gpt2"):
        client.predict("tiny-llama", handle_file(str(path)), "hi", 2, api_name="/steer_lofit_apply")
    _, _, info = client.predict("tiny-gpt2", handle_file(str(path)), "hi", 2, api_name="/steer_lofit_apply")
    assert info["heads"] == [[0, 0]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("", NEG, 0, 1.0), "positive list is empty"),
        ((POS, NEG, 5, 1.0), "layer 5 is out of range"),
        ((POS, NEG, 0, 1000.0), "maximum"),  # gradio's own slider check; ours is tested below
        ((POS, "x" * 30_000, 0, 1.0), "longer than"),
        ((POS, NEG, 0, 1.5), None),  # accepted: within gradio's slider and our range
    ],
)
def test_contrastive_bad_input(client: Client, args: tuple, message: str | None) -> None:
    if message is None:
        client.predict("tiny-llama", *args, "last", "mean", "Hi", 2, api_name="/steer_contrastive")
        return
    with pytest.raises(Exception, match=message):
        client.predict("tiny-llama", *args, "last", "mean", "Hi", 2, api_name="/steer_contrastive")


def test_apply_checks_bytes_server_side() -> None:
    with pytest.raises(gr.Error, match="limit"):
        steer_lofit_apply("tiny-llama", None, b"x" * (vectors.MAX_FILE_BYTES + 1), "hi", 2)
    with pytest.raises(gr.Error, match="train head offsets first"):
        steer_lofit_apply("tiny-llama", None, None, "hi", 2)
    with pytest.raises(gr.Error, match="max new tokens"):
        steer_lofit_apply("tiny-llama", None, b"\x00" * 64, "hi", 10_000)


@pytest.mark.parametrize(
    ("alpha", "message"), [(float("nan"), "alpha must be in"), (1000.0, "alpha must be in"), ("x", "number")]
)
def test_contrastive_checks_alpha_server_side(alpha: object, message: str) -> None:
    with pytest.raises(gr.Error, match=message):
        steer_contrastive("tiny-llama", POS, NEG, 0, alpha, "last", "mean", "Hi", 2)  # type: ignore[arg-type]


def test_sweep_refuses_long_tokens_instead_of_cutting() -> None:
    from headscope.app.steering_tab import steer_sweep

    with pytest.raises(gr.Error, match="token A is 60 characters; the limit is 50"):
        steer_sweep("tiny-llama", POS, NEG, 0, "last", "mean", "Hi", "0", "a" * 60, "b", 2)
