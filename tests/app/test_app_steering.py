"""Steering tab through gradio_client: every number shown equals the library's result for the same inputs (whose own
oracles are in tests/unit/test_steering_*.py); the selection drives the heads site and LoFiT; vectors download and
upload; bad input is one line, refused (never cut) on the server."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pytest
import torch
from gradio_client import Client, handle_file

from headscope.app.steering_tab import LOFIT_SCOPES, SITES, steer_contrastive, steer_lofit_apply, steer_sweep
from headscope.models import ModelHandle
from headscope.steering import vectors
from headscope.steering.contrastive import ContrastiveConfig, compare, contrastive_vector
from headscope.steering.direction import SteerConfig
from headscope.steering.generate import GenConfig
from headscope.steering.lofit import HeadOffsets

pytestmark = pytest.mark.usefixtures("one_thread")

POS = "good and happy\nlovely day"
NEG = "bad and sad\nawful day"
MODEL = "tiny-llama"


def _steer(c: Client, site: str = SITES[0], alpha: float = 1.5, **kw: object) -> tuple:
    args = {"layer": 1, "position": "all", "pooling": "mean", "prompt": "Hello there", "new": 4, **kw}
    return c.predict(MODEL, POS, NEG, site, args["layer"], alpha, args["position"], args["pooling"], args["prompt"],
                     args["new"], api_name="/steer_contrastive")  # fmt: skip


def test_contrastive_side_by_side_equals_the_library(client: Client, tiny_llama: ModelHandle) -> None:
    _status, line, left, right, costs, download, _raw_file, raw = _steer(client)
    sv = contrastive_vector(tiny_llama, POS.splitlines(), NEG.splitlines(), ContrastiveConfig(1))
    ref = compare(tiny_llama, sv, "Hello there", POS.splitlines(), NEG.splitlines(), SteerConfig(1.5, "all"),
                  GenConfig(4))  # fmt: skip
    assert raw == {"model": MODEL, **ref.to_json()}
    # the strips: tokens as text, unsteered shaded by p, steered by p(steered) − p(unsteered) on a fixed −1…+1 scale
    (row_u,), (row_s,) = left["rows"], right["rows"]
    assert row_u["tokens"] == list(ref.unsteered.tokens) and row_u["ids"] == list(ref.unsteered.token_ids)
    assert row_u["values"] == pytest.approx(list(ref.unsteered.probs), abs=1e-6)
    assert (left["vmin"], left["vmax"], right["vmin"], right["vmax"]) == (0.0, 1.0, -1.0, 1.0)
    assert row_s["values"] == pytest.approx([t["change"] for t in raw["tokens"]], abs=1e-6)
    assert right["label"] == "p(token | steered) − p(token | unsteered)"
    # the effect beside its cost, as numbers
    table = {r[0]: r[1:] for r in costs["data"]}
    assert table["distinct-token ratio"][1] == pytest.approx(ref.cost.distinct_steered, abs=1e-4)
    effect_row = next(v for k, v in table.items() if k.startswith("effect"))
    assert effect_row[1] == pytest.approx(ref.effect, abs=1e-4)
    assert "layer **1**" in line and "α = 1.5" in line and "cost" in line
    meta, tensors = vectors.from_bytes(Path(download).read_bytes())
    back, steer = vectors.to_vector(meta, tensors, tiny_llama)
    assert torch.equal(back.direction, sv.direction) and steer == SteerConfig(1.5, "all")
    assert Path(download).name == "contrastive-tiny-llama-L1.safetensors"


def test_heads_site_and_lofit_use_the_selection(app_url: str, tiny_llama: ModelHandle) -> None:
    c = Client(app_url, verbose=False)
    with pytest.raises(Exception, match="no head is selected"):
        _steer(c, SITES[1])
    assert c.predict("1.1, 1.3", MODEL, api_name="/selection_set") == ("1.1, 1.3", "")
    *_, raw = _steer(c, SITES[1])
    assert raw["site"] == "heads" and raw["heads"] == "1.1, 1.3" and raw["layer"] is None
    hs = tiny_llama.head_set("1.1, 1.3")
    sv = contrastive_vector(tiny_llama, POS.splitlines(), NEG.splitlines(), ContrastiveConfig(heads=hs))
    ref = compare(tiny_llama, sv, "Hello there", None, None, SteerConfig(1.5, "all"), GenConfig(4))
    assert raw["steered"] == ref.to_json()["steered"]
    _, line, grid, scores, download, _, raw_lofit = c.predict(
        MODEL, "antonyms", 1, 2, 0, LOFIT_SCOPES[1], api_name="/steer_lofit_train"
    )
    assert raw_lofit["restricted_to"] == "1.1, 1.3" and raw_lofit["heads"] in ("1.1", "1.3")
    assert raw_lofit["heads"] in line
    assert grid["marks"] == {raw_lofit["heads"]: "●"} and grid["selected"] == ["1.1", "1.3"]
    meta, tensors = vectors.from_bytes(Path(download).read_bytes())
    assert meta.to_json()["heads"] == raw_lofit["heads"] and meta.restricted_to == "1.1, 1.3"
    assert vectors.to_offsets(meta, tensors, tiny_llama).biases.shape == (1, 16)
    assert [r[0] for r in scores["data"]][1] == f"LoFiT heads {raw_lofit['heads']}"
    with pytest.raises(Exception, match="at most 2, the selection's size"):
        c.predict(MODEL, "antonyms", 3, 2, 0, LOFIT_SCOPES[1], api_name="/steer_lofit_train")


def test_an_uploaded_vector_file_steers_like_the_saved_vector(
    client: Client, tiny_llama: ModelHandle, tmp_path: Path
) -> None:
    """A vector file made elsewhere (here: a direction through `from_direction`, as an SAE feature would be)."""
    from headscope.models import hooks
    from headscope.steering.direction import from_direction

    direction = torch.linspace(-1, 1, tiny_llama.facts.d_model)
    sv = from_direction(tiny_llama, direction, hooks.resid(0, "post"), ["some reference text"], method="feature",
                        source={"sae": "demo", "feature": 3})  # fmt: skip
    path = tmp_path / "feature.safetensors"
    path.write_bytes(vectors.to_bytes(*vectors.vector_meta(tiny_llama, sv, SteerConfig(0.5))))
    *_, line, left, right, costs, _, _, raw = client.predict(
        MODEL, handle_file(str(path)), 1.0, "last", "Hello there", 3, api_name="/steer_uploaded"
    )
    ref = compare(tiny_llama, sv, "Hello there", None, None, SteerConfig(1.0, "last"), GenConfig(3))
    assert raw == {"model": MODEL, **ref.to_json()} and raw["effect"] is None
    assert left["rows"][0]["ids"] == list(ref.unsteered.token_ids)
    # the strip carries values rounded to 5 digits
    assert right["rows"][0]["values"] == pytest.approx(list(ref.cost.p_change), abs=1e-5)
    assert line.startswith("Uploaded feature vector.") and "α = 1" in line
    assert [r[0] for r in costs["data"]] == ["perplexity under the unsteered model", "distinct-token ratio"]
    gpt2 = ModelHandle.load("tiny-gpt2", device="cpu")
    with pytest.raises(Exception, match="made for model tiny-llama"):
        client.predict("tiny-gpt2", handle_file(str(path)), 1.0, "last", "Hi", 2, api_name="/steer_uploaded")
    assert gpt2.facts.d_model == tiny_llama.facts.d_model  # refused for the model, not for a shape


def test_sweep_rows_are_the_librarys(client: Client) -> None:
    _, _fig, table, _, raw = client.predict(
        MODEL,
        POS,
        NEG,
        SITES[0],
        0,
        "last",
        "mean",
        "Hello",
        "0, 0.5",
        " a",
        " b",
        2,
        api_name="/steer_sweep",
    )
    rows = table["data"]
    assert (
        [r[0] for r in rows] == [0.0, 0.5] and rows[0][1] == 0.0 and rows[0][2] == 1.0
    )  # α 0: no change, no cost
    assert [r["alpha"] for r in raw["rows"]] == [0.0, 0.5] and raw["token_pair"] == [" a", " b"]


def test_lofit_train_then_apply_in_session(client: Client, tiny_llama: ModelHandle) -> None:
    _, _, _, _, download, _, result = client.predict(
        MODEL, "antonyms", 2, 2, 0, LOFIT_SCOPES[0], api_name="/steer_lofit_train"
    )
    meta, _tensors = vectors.from_bytes(Path(download).read_bytes())
    assert meta.to_json()["heads"] == result["heads"] and meta.method == "lofit"
    assert Path(download).name == "lofit-tiny-llama-2heads.safetensors"
    _, line, left, right, costs, _, applied = client.predict(
        MODEL, None, "hot ->", 3, api_name="/steer_lofit_apply"
    )
    assert applied["heads"] == result["heads"] and result["heads"] in line
    assert left["rows"][0]["ids"] == applied["unsteered"]["token_ids"]
    assert right["rows"][0]["values"] == pytest.approx([t["change"] for t in applied["tokens"]], abs=1e-6)
    assert [r[0] for r in costs["data"]] == ["perplexity under the unsteered model", "distinct-token ratio"]


def test_uploaded_vectors_for_another_model_are_refused(client: Client, tmp_path: Path) -> None:
    gpt2 = ModelHandle.load("tiny-gpt2", device="cpu")
    off = HeadOffsets(((0, 0),), torch.ones(1, gpt2.facts.d_head))
    path = tmp_path / "v.safetensors"
    path.write_bytes(vectors.to_bytes(*vectors.lofit_meta(gpt2, off, "h")))
    with pytest.raises(Exception, match="made for model tiny-gpt2"):
        client.predict(MODEL, handle_file(str(path)), "hi", 2, api_name="/steer_lofit_apply")
    *_, info = client.predict("tiny-gpt2", handle_file(str(path)), "hi", 2, api_name="/steer_lofit_apply")
    assert info["heads"] == "0.0"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"pos": ""}, "the positive list is empty"),
        ({"layer": 5}, r"layer must be an integer in \[0, 1\]"),
        ({"alpha": 1000.0}, "maximum"),  # gradio's own slider check; ours is tested below
        ({"neg": "x" * 30_000}, "the limit is 20,000"),
        ({"prompt": "x" * 2001}, "the limit is 2,000"),
        ({"layer": 1.5}, "layer must be an integer"),
    ],
)
def test_contrastive_bad_input(client: Client, change: dict, message: str) -> None:
    args = {"pos": POS, "neg": NEG, "layer": 0, "alpha": 0.5, "prompt": "Hi", **change}
    with pytest.raises(Exception, match=message):
        client.predict(MODEL, args["pos"], args["neg"], SITES[0], args["layer"], args["alpha"], "last", "mean",
                       args["prompt"], 2, api_name="/steer_contrastive")  # fmt: skip


def test_apply_checks_bytes_server_side() -> None:
    with pytest.raises(gr.Error, match="limit"):
        steer_lofit_apply(MODEL, None, b"x" * (vectors.MAX_FILE_BYTES + 1), "hi", 2)
    with pytest.raises(gr.Error, match="train head offsets first"):
        steer_lofit_apply(MODEL, None, None, "hi", 2)
    with pytest.raises(gr.Error, match="new tokens"):
        steer_lofit_apply(MODEL, None, b"\x00" * 64, "hi", 10_000)


@pytest.mark.parametrize(
    ("alpha", "message"), [(float("nan"), "alpha must be in"), (1000.0, "alpha must be in"), ("x", "number")]
)
def test_contrastive_checks_alpha_server_side(alpha: object, message: str) -> None:
    with pytest.raises(gr.Error, match=message):
        steer_contrastive(MODEL, POS, NEG, SITES[0], 0, alpha, "last", "mean", "Hi", 2, None)  # type: ignore[arg-type]


def test_sweep_refuses_long_tokens_instead_of_cutting() -> None:
    with pytest.raises(gr.Error, match="token A is 60 characters long; the limit is 50"):
        steer_sweep(MODEL, POS, NEG, SITES[0], 0, "last", "mean", "Hi", "0", "a" * 60, "b", 2, None)
    with pytest.raises(gr.Error, match="α values: give between 1 and 11"):
        steer_sweep(
            MODEL, POS, NEG, SITES[0], 0, "last", "mean", "Hi", ",".join("0" * 12), " a", " b", 2, None
        )
