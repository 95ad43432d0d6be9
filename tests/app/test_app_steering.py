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
from headscope.steering.lofit import HeadOffsets

pytestmark = pytest.mark.usefixtures("one_thread")

POS = "good and happy\nlovely day"
NEG = "bad and sad\nawful day"


def test_contrastive_side_by_side(client: Client) -> None:
    plain, steered, summary, result = client.predict(
        "tiny-llama", POS, NEG, 1, 6.0, "all", "mean", "Hello there", 4, api_name="/steer_contrastive"
    )
    assert set(result) == {"layer", "alpha", "unsteered", "steered", "effect"}
    assert len(plain) == len(result["unsteered"]["token_ids"])
    assert "effect" in summary and result["alpha"] == 6.0
    # each shaded token carries its probability
    assert all(0.0 < float(item["class_or_confidence"]) <= 1.0 for item in steered)


def test_sweep(client: Client) -> None:
    _fig, table = client.predict(
        "tiny-llama", POS, NEG, 0, "last", "mean", "Hello", "0, 3", " a", " b", 2, api_name="/steer_sweep"
    )
    rows = table["data"]
    assert [r[0] for r in rows] == [0.0, 3.0] and abs(rows[0][2]) < 1e-6


def test_lofit_train_then_apply_in_session(client: Client) -> None:
    _grid, summary, result = client.predict("tiny-llama", "antonyms", 2, 2, 0, api_name="/steer_lofit_train")
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
    ],
)
def test_contrastive_bad_input(client: Client, args: tuple, message: str) -> None:
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
    ("alpha", "message"), [(float("nan"), "finite"), (1000.0, "alpha must be in"), ("x", "number")]
)
def test_contrastive_checks_alpha_server_side(alpha: object, message: str) -> None:
    with pytest.raises(gr.Error, match=message):
        steer_contrastive("tiny-llama", POS, NEG, 0, alpha, "last", "mean", "Hi", 2)  # type: ignore[arg-type]
