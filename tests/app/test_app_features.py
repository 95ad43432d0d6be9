"""Features tab through gradio_client on a tiny model with a tiny SAE in the (patched) user catalog: top features
as tokens with hover, a feature page, steering side by side with a vector file, attribution, and bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from gradio_client import Client
from sae_lens import TopKSAE, TopKSAEConfig

from headscope import assets
from headscope.features import catalog, index, saes
from headscope.models import ModelHandle
from headscope.steering import vectors

pytestmark = pytest.mark.usefixtures("one_thread")
SAE = "tiny-app-sae"
TEXT = "The cat sat on the mat, and the dog sat by the door."


@pytest.fixture(scope="module")
def tiny_sae(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A random TopK SAE for tiny-llama (no training needed to test wiring), indexed, in a patched user root."""
    root = tmp_path_factory.mktemp("app_saes")
    folder = root / "tiny-llama" / SAE
    torch.manual_seed(0)
    cfg = TopKSAEConfig(d_in=64, d_sae=48, k=6)
    cfg.metadata.hook_name = "blocks.1.hook_resid_post"
    TopKSAE(cfg).save_model(folder)
    card = {"name": SAE, "model": {"name": "tiny-llama", "sha256": None}, "hook": cfg.metadata.hook_name,
            "kind": "resid_post", "layer": 1, "eval": {"explained_variance": 0.5, "ce_loss_score": 0.9}}  # fmt: skip
    saes.write_card(folder, card)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(catalog, "user_root", lambda: root)
        handle = ModelHandle.load("tiny-llama", device="cpu")
        index.build(
            handle, saes.load(handle, folder), index.IndexConfig(tokens=1200, ctx=64, corpus="excerpt")
        )
        yield SAE


def test_top_features_show_tokens_as_text(client: Client, tiny_sae: str) -> None:
    summary, strip, per_token, _file, raw = client.predict(
        "tiny-llama", tiny_sae, TEXT, 4, api_name="/features_top"
    )
    assert "explained variance" in summary and tiny_sae in summary
    assert set(raw) >= {"tokens", "token_ids", "top", "explained_variance", "reconstruction"}
    (row,) = strip["rows"]
    assert row["tokens"] == raw["tokens"] and all(isinstance(t, str) for t in row["tokens"])
    assert len(row["notes"]) == len(raw["tokens"]) and row["notes"][1].startswith("#")
    assert per_token["headers"][1] == "feature" and len(per_token["data"]) <= 4


def test_feature_page(client: Client, tiny_sae: str) -> None:
    header, contexts, _hist, promoted, suppressed, on_text, _file, page = client.predict(
        "tiny-llama", tiny_sae, 3, TEXT, api_name="/features_page"
    )
    assert "Feature 3" in header and page["feature"] == 3
    assert contexts["rows"] and all(any(r["marks"]) for r in contexts["rows"])
    assert len(promoted["data"]) == 10 and len(suppressed["data"]) == 10
    assert on_text["rows"][0]["label"] == "your text"


def test_steer_side_by_side_with_a_vector_file(client: Client, tiny_sae: str) -> None:
    status, gens, table, vector, _file, payload = client.predict(
        "tiny-llama", tiny_sae, 3, 0.6, "add", "last", "Hello there", 4, api_name="/features_steer"
    )
    assert "done" in status and [r["label"] for r in gens["rows"]] == ["unsteered", "steered"]
    assert set(payload["steered"]) == {"text", "token_ids", "tokens", "probs"}
    assert isinstance(payload["effect"], float)
    assert table["data"][0][2] == pytest.approx(payload["effect"], abs=1e-4) and len(table["data"]) == 3
    assert table["data"][1][2] == pytest.approx(payload["cost"]["perplexity_steered"], rel=1e-3)
    meta, tensors = vectors.from_bytes(Path(vector).read_bytes())
    assert meta.method == "feature" and meta.alpha == 0.6 and meta.source["feature"] == 3
    assert meta.hook_sites == ("blocks.1.hook_resid_post",) and tensors["direction"].shape == (64,)
    # the file applied as a steering vector (`steer contrastive apply`'s path): same α and positions, same text
    from headscope.app.state import STORE
    from headscope.steering.comparison import SideBySideConfig
    from headscope.steering.contrastive import compare_vector
    from headscope.steering.direction import SteerConfig
    from headscope.steering.generate import GenConfig

    handle = STORE.get("tiny-llama")
    sv, _ = vectors.to_vector(meta, tensors, handle)
    again = compare_vector(
        handle, sv, ["Hello there"], SteerConfig(0.6, "last"), SideBySideConfig(GenConfig(4))
    )
    assert list(again.steered.token_ids) == payload["steered"]["token_ids"]
    clamp = client.predict(
        "tiny-llama", tiny_sae, 3, 5.0, "clamp", "last", "Hello there", 3, api_name="/features_steer"
    )
    assert clamp[3] is None and clamp[-1]["mode"] == "clamp"


def test_attribution_with_check(client: Client, tiny_sae: str) -> None:
    status, line, table, _file, payload = client.predict(
        "tiny-llama", tiny_sae, "The dog ran to the", "e", "a", True, api_name="/features_attribute"
    )
    assert "done" in status and "sign agreement" in line and payload["check"]["features"]
    assert table["headers"][0] == "feature" and len(table["data"]) == len(payload["features"])


@pytest.mark.parametrize(
    ("args", "api", "needle"),
    [
        (("tiny-llama", "/etc", TEXT, 4), "/features_top", "no SAE named"),
        (("tiny-llama", SAE, "x" * 5000, 4), "/features_top", "limit"),
        (("tiny-llama", SAE, TEXT, 99), "/features_top", "maximum|k must be"),
        (("tiny-llama", SAE, 4800, TEXT), "/features_page", "does not exist"),
        (("tiny-llama", SAE, 3, 1e6, "add", "last", "Hi", 4), "/features_steer", "alpha"),
    ],
)
def test_bad_input_is_one_line(client: Client, tiny_sae: str, args: tuple, api: str, needle: str) -> None:
    with pytest.raises(Exception, match=needle):
        client.predict(*args, api_name=api)


def test_nan_alpha_is_refused_by_the_server_check() -> None:
    # JSON cannot carry NaN, so an API caller cannot send it; the check itself refuses it all the same.
    from headscope.app.features_tab import _steer_cfg
    from headscope.errors import InputError

    for bad in (float("nan"), float("inf"), "abc"):
        with pytest.raises(InputError, match="alpha"):
            _steer_cfg(3, bad, "add", "last")


def test_tab_lists_the_shipped_saes_of_the_default_model() -> None:
    from headscope.app.features_tab import sae_rows

    rows = sae_rows("smollm2-135m")
    assert json.dumps(rows)  # JSON-able for the table
    # Oracle: the SAE folders the package ships for the model, listed from the file system (not empty).
    folders = assets.path("saes") / "smollm2-135m"
    shipped = sorted(p.name for p in folders.iterdir() if (p / "cfg.json").is_file())
    assert shipped, "the package ships SAEs for the default model"
    assert sorted(r["name"] for r in rows if r["shipped"]) == shipped
