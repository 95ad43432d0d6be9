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
from headscope.app import features_tab as tab
from headscope.app import features_views as fv
from headscope.app.wiring import Ctx
from headscope.cli.features import to_argv
from headscope.features import catalog, index, saes
from headscope.features.evaluate import EvalConfig
from headscope.features.summary import FeatureOnText
from headscope.models import ModelHandle
from headscope.steering import vectors

pytestmark = pytest.mark.usefixtures("one_thread")
SAE = "tiny-app-sae"
ROOTS: dict[str, Path] = {}


def catalog_root(name: str) -> Path:
    return ROOTS[name]


TEXT = "The cat sat on the mat, and the dog sat by the door."


@pytest.fixture(scope="module")
def tiny_sae(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A random TopK SAE for tiny-llama (no training needed to test wiring), indexed, in a patched user root."""
    root = tmp_path_factory.mktemp("app_saes")
    ROOTS[SAE] = root
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
    raw = client.predict("tiny-llama", tiny_sae, TEXT, 4, api_name="/features_top")
    keys = {"tokens", "token_ids", "top", "explained_variance", "fires_on"}
    assert raw["sae"] == tiny_sae and set(raw["top"]) == keys
    out = tab.draw_top({"top_raw": raw}, Ctx())
    assert "explained variance" in out["summary"] and tiny_sae in out["summary"]
    (row,) = out["strip"]["rows"]
    assert row["tokens"] == raw["top"]["tokens"] and all(isinstance(t, str) for t in row["tokens"])
    assert len(row["notes"]) == len(row["tokens"]) and row["notes"][1].startswith("#")
    assert out["per_token"]["headers"][1].startswith("feature") and len(out["per_token"]["data"]) <= 4
    # each feature reads as what its top held-out contexts fire on (the dashboard's), in the table and the hover
    reads = {
        f["feature"]: ", ".join(fv.visible_token(t) for t in f["tokens"]) for f in raw["top"]["fires_on"]
    }
    assert out["per_token"]["headers"][-1].startswith("fires on")
    assert [r[-1] for r in out["per_token"]["data"]] == [reads[r[1]] for r in out["per_token"]["data"]]
    hover = " ".join(row["notes"])
    # one hover line per top feature (strip.js splits a note at its line breaks)
    lines = [ln for n in row["notes"] if n != "no active feature" for ln in n.split("\n")]
    assert lines and all(ln.startswith("#") for ln in lines)
    assert max(len(n.split("\n")) for n in row["notes"]) <= 4
    assert any(f"({', '.join(v.split(', ')[:3])})" in hover for v in reads.values() if v)
    # the colour range leaves position 0 (the attention sink) out, and marks it
    firsts = [r[0]["activation"] if r else 0.0 for r in raw["top"]["top"]]
    assert out["strip"]["vmax"] == pytest.approx(max(firsts[1:]), abs=1e-6) and row["marks"][0]
    assert not any(row["marks"][1:]) and "position 0" in out["strip"]["caption"]


def test_a_feature_id_in_a_table_opens_its_page() -> None:
    value = {
        "headers": ["rank", "feature (click: its page)", "activation"],
        "data": [[1, 17, 0.5], [2, 4, 0.25]],
    }
    assert [fv.feature_of_row(value, r) for r in (0, 1, 2)] == [17, 4, None]


def test_a_feature_silent_on_the_text_says_so() -> None:
    silent = fv.on_text_strip(7, FeatureOnText(("<s>", "a", "b"), (1, 2, 3), (4.0, 0.0, 0.0)))
    assert silent["caption"].startswith("Feature 7 is not active on this text past position 0;")
    assert (silent["vmin"], silent["vmax"]) == (0.0, 1.0)
    active = fv.on_text_strip(7, FeatureOnText(("<s>", "a", "b"), (1, 2, 3), (40.0, 0.0, 2.5)))
    assert "not active" not in active["caption"] and (active["vmin"], active["vmax"]) == (0.0, 2.5)


def test_feature_page(client: Client, tiny_sae: str) -> None:
    raw = client.predict("tiny-llama", tiny_sae, 3, TEXT, api_name="/features_page")
    assert raw["page"]["feature"] == 3 and raw["on_text"]["tokens"]
    out = tab.draw_page({"page_raw": raw}, Ctx())
    assert "Feature 3" in out["header"]
    assert out["contexts"]["rows"] and all(any(r["marks"]) for r in out["contexts"]["rows"])
    assert len(out["promoted"]["data"]) == 10 and len(out["suppressed"]["data"]) == 10
    assert out["on_text"]["rows"][0]["label"] == "your text"


def test_eval_on_the_text_matches_the_cli(
    client: Client, tiny_sae: str, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = client.predict("tiny-llama", tiny_sae, "the text above", 512, TEXT, api_name="/features_eval")
    assert raw["sae"] == tiny_sae and raw["position_0"].startswith("excluded") and raw["source"] == "text"
    out = tab.draw_eval({"eval_raw": raw}, Ctx())
    assert "Position 0: excluded" in out["eval_caption"]
    rows = {r[0]: r[1] for r in out["eval_table"]["data"]}
    assert rows["explained variance"] == pytest.approx(
        raw["explained_variance"], abs=1e-4
    )  # the table rounds
    assert rows["CE loss score"] == (
        raw["ce_loss_score"] if raw["ce_loss_score"] is not None else "not meaningful"
    )
    # the job's command is the CLI's: the same JSON from `headscope features eval`
    from headscope.cli import main

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(catalog, "user_root", lambda: catalog_root(tiny_sae))
        capsys.readouterr()
        assert (
            main(
                [*to_argv(EvalConfig(max_tokens=512), sae=tiny_sae, text=TEXT, model="tiny-llama"), "--json"]
            )
            == 0
        )
    assert json.loads(capsys.readouterr().out) == raw


def test_steer_side_by_side_with_a_vector_file(client: Client, tiny_sae: str) -> None:
    payload = client.predict(
        "tiny-llama", tiny_sae, 3, 0.6, "add", "last", "Hello there", 4, api_name="/features_steer"
    )
    changes = [t["change"] for t in payload["tokens"]]
    assert isinstance(payload["effect"], float) and len(changes) == len(payload["steered"]["tokens"])
    out = tab.draw_steer({"steer_raw": payload}, Ctx())
    table = out["steer_table"]
    assert table["data"][0][2] == pytest.approx(payload["effect"], abs=1e-4) and len(table["data"]) == 4
    assert table["data"][2][2] == pytest.approx(payload["cost"]["perplexity_steered"], rel=1e-3)
    # shaded as the Steering tab shades: probabilities (blues) and the change (diverging, −1…+1)
    assert (out["plain"]["scale"], out["steered"]["scale"]) == ("blues", "diverging")
    assert out["steered"]["vmin"] == -1.0 and out["steered"]["rows"][0]["values"] == changes
    vector = tab.steer_vector({"model": "tiny-llama", "sae": tiny_sae, "steer_raw": payload}, Ctx())["vector"]
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
    assert clamp["mode"] == "clamp"
    assert tab.steer_vector({"model": "tiny-llama", "sae": tiny_sae, "steer_raw": clamp}, Ctx()) == {
        "vector": None
    }


def test_attribution_with_check(client: Client, tiny_sae: str) -> None:
    payload = client.predict(
        "tiny-llama", tiny_sae, "The dog ran to the", "e", "a", True, api_name="/features_attribute"
    )
    assert payload["check"]["features"]
    out = tab.draw_attribute({"attr_raw": payload}, Ctx())
    assert "sign agreement" in out["attr_line"]
    assert out["attr_table"]["headers"][0].startswith("feature") and len(out["attr_table"]["data"]) == len(
        payload["features"]
    )
    first = fv.feature_of_row(out["attr_table"], 0)
    assert first == payload["features"][0]["feature"]
    reads = {r["feature"]: ", ".join(fv.visible_token(t) for t in r["tokens"]) for r in payload["fires_on"]}
    assert out["attr_table"]["headers"][-1].startswith("fires on") and set(reads) == {
        f["feature"] for f in payload["features"]
    }
    assert [row[-1] for row in out["attr_table"]["data"]] == [
        reads[f["feature"]] for f in payload["features"]
    ]


@pytest.mark.parametrize(
    ("args", "api", "needle"),
    [
        (("tiny-llama", "/etc", TEXT, 4), "/features_top", "no SAE named"),
        (("tiny-llama", SAE, "x" * 5000, 4), "/features_top", "limit"),
        (("tiny-llama", SAE, TEXT, 99), "/features_top", "maximum|k must be"),
        (("tiny-llama", SAE, 4800, TEXT), "/features_page", "does not exist"),
        (("tiny-llama", SAE, 3, 1e6, "add", "last", "Hi", 4), "/features_steer", "alpha"),
        (("tiny-llama", SAE, "wiki", 512, TEXT), "/features_eval", "held-out set|not in the list of choices"),
        (("tiny-llama", SAE, "chat", 10**6, TEXT), "/features_eval", "tokens|maximum value 25600"),
    ],
)
def test_bad_input_is_one_line(client: Client, tiny_sae: str, args: tuple, api: str, needle: str) -> None:
    with pytest.raises(Exception, match=needle):
        client.predict(*args, api_name=api)


def test_nan_alpha_is_refused_by_the_server_check() -> None:
    # JSON cannot carry NaN, so an API caller cannot send it; the check itself refuses it all the same.
    from headscope.errors import InputError

    for bad in (float("nan"), float("inf"), "abc"):
        with pytest.raises(InputError, match="alpha"):
            tab._steer_cfg({"feature": 3, "alpha": bad, "mode": "add", "position": "last"})


def test_tab_lists_the_shipped_saes_of_the_default_model() -> None:
    from headscope.app.features_tab import sae_rows

    rows = sae_rows("smollm2-135m")
    assert json.dumps(rows)  # JSON-able for the table
    # Oracle: the SAE folders the package ships for the model, listed from the file system (not empty).
    folders = assets.path("saes") / "smollm2-135m"
    shipped = sorted(p.name for p in folders.iterdir() if (p / "cfg.json").is_file())
    assert shipped, "the package ships SAEs for the default model"
    assert sorted(r["name"] for r in rows if r["shipped"]) == shipped
