"""Loading SAEs in SAELens format: hook mapping, shape / model / hook checks (both shapes named), corrupted files,
the offline pretrained path, the catalog, and the circuit SAE registered as a sae-lens architecture."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from sae_lens import SAE, TopKSAE, TopKSAEConfig
from sae_lens.registry import SAE_CLASS_REGISTRY, SAE_TRAINING_CLASS_REGISTRY

from headscope.circuits.sae import SAEConfig, codes, train_sae
from headscope.errors import HeadscopeError, InputError, ModelUnavailableError
from headscope.features import catalog, discrete, saes
from headscope.features.sites import Site, parse_hook_name
from headscope.models import ModelHandle, hooks


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[Path]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HEADSCOPE_CACHE", str(tmp_path))
        yield tmp_path


def make_sae(
    folder: Path, d_in: int = 64, hook: str = "blocks.1.hook_resid_post", card: dict | None = None
) -> Path:
    torch.manual_seed(0)
    cfg = TopKSAEConfig(d_in=d_in, d_sae=32, k=4)
    cfg.metadata.hook_name = hook
    TopKSAE(cfg).save_model(folder)
    if card is not None:
        (folder / "card.json").write_text(json.dumps(card))
    return folder


def one_line(err: BaseException) -> str:
    text = str(err)
    assert text and "\n" not in text and "Traceback" not in text
    return text


@pytest.mark.parametrize(
    ("name", "site"),
    [
        (hooks.resid(3, "post"), Site("resid_post", 3)),
        (hooks.resid(0, "pre"), Site("resid_pre", 0)),
        (hooks.sublayer_out(2, "attn"), Site("attn_out", 2)),
        (hooks.sublayer_out(5, "mlp"), Site("mlp_out", 5)),
        ("layers.4", Site("resid_post", 4)),
        ("model.layers.4.mlp", Site("mlp_out", 4)),
        ("model.layers.7.self_attn", Site("attn_out", 7)),
    ],
)
def test_hook_names_map_onto_the_handle_names(name: str, site: Site) -> None:
    assert parse_hook_name(name) == site
    assert parse_hook_name(site.hook) == site


def test_unknown_hook_name_is_refused_with_the_supported_ones() -> None:
    with pytest.raises(InputError, match="cannot map"):
        parse_hook_name("blocks.3.attn.hook_pattern")


def test_sae_for_another_width_names_both_shapes(tmp_path: Path, tiny_llama: ModelHandle) -> None:
    folder = make_sae(tmp_path / "wide", d_in=576)
    with pytest.raises(InputError) as e:
        saes.load(tiny_llama, folder)
    msg = one_line(e.value)
    assert "[..., 576]" in msg and "[..., 64]" in msg and "blocks.1.hook_resid_post" in msg


def test_sae_for_a_layer_the_model_lacks_is_refused(tmp_path: Path, tiny_llama: ModelHandle) -> None:
    folder = make_sae(tmp_path / "deep", hook="blocks.12.hook_resid_post")
    with pytest.raises(InputError, match=r"layers 0\.\.1"):
        saes.load(tiny_llama, folder)


def test_sae_for_another_model_is_refused(tmp_path: Path, tiny_llama: ModelHandle) -> None:
    folder = make_sae(tmp_path / "other", card={"model": {"name": "tiny-gpt2", "sha256": None}})
    with pytest.raises(InputError, match="trained on model tiny-gpt2"):
        saes.load(tiny_llama, folder)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "bad_cfg", "missing", "bad_card"])
def test_corrupted_sae_files_give_one_line(tmp_path: Path, tiny_llama: ModelHandle, damage: str) -> None:
    folder = make_sae(tmp_path / "sae", card={"name": "x"})
    weights = folder / "sae_weights.safetensors"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:300])
    elif damage == "garbage":
        weights.write_bytes(b"\x00" * 64)
    elif damage == "bad_cfg":
        (folder / "cfg.json").write_text("{not json")
    elif damage == "missing":
        weights.unlink()
    else:
        (folder / "card.json").write_text("[1, 2")
    with pytest.raises(InputError) as e:
        saes.load(tiny_llama, folder)
    one_line(e.value)


def test_a_good_folder_loads_and_encodes_like_sae_lens(tmp_path: Path, tiny_llama: ModelHandle) -> None:
    folder = make_sae(tmp_path / "good")
    fsae = saes.load(tiny_llama, folder)
    x = torch.randn(5, 64)
    ref = SAE.load_from_disk(folder)
    assert torch.equal(fsae.encode(x), ref.encode(x))
    rows = fsae.decoder_rows
    assert torch.allclose(fsae.decode(torch.eye(32)[3:4]) - fsae.decode(torch.zeros(1, 32)), rows[3:4])
    with pytest.raises(InputError, match=r"features 0\.\.31"):
        fsae.check_feature(32)


def test_pretrained_release_offline_gives_one_clear_line(tiny_llama: ModelHandle) -> None:
    with pytest.raises(ModelUnavailableError) as e:
        saes.from_pretrained(tiny_llama, "gemma-scope-2-270m-pt-res", "layer_5_width_16k_l0_small")
    assert "not in the local Hugging Face cache" in one_line(e.value)
    with pytest.raises(InputError, match="unknown SAE release"):
        saes.from_pretrained(tiny_llama, "no-such-release", "x")


def test_catalog_lists_user_saes_and_refuses_unknown_names(cache: Path, tiny_llama: ModelHandle) -> None:
    make_sae(
        catalog.user_root() / "tiny-llama" / "mine", card={"name": "mine", "hook": "blocks.1.hook_resid_post"}
    )
    names = [e.name for e in catalog.available("tiny-llama")]
    assert names == ["mine"]
    assert catalog.resolve(tiny_llama, "mine") is catalog.resolve(tiny_llama, "mine")  # cached
    with pytest.raises(InputError, match="available: mine"):
        catalog.resolve(tiny_llama, "theirs")
    with pytest.raises(HeadscopeError):
        catalog.resolve(tiny_llama, "pretrained:no-such-release:x")


def test_shipped_saes_are_listed_with_card_figures() -> None:
    entries = [e for e in catalog.available("smollm2-135m") if e.shipped]
    folders = [
        p.name for p in (catalog.shipped_root() / "smollm2-135m").iterdir() if (p / catalog.CFG).is_file()
    ]
    assert folders and sorted(e.name for e in entries) == sorted(folders)  # nothing found is a failure
    for entry in entries:
        row = entry.to_json()
        assert row["shipped"] and row["has_dashboards"], row
        assert row["explained_variance"] is not None and row["explained_variance_chat"] is not None, row
        assert row["l0"] is not None and row["eval_tokens"] >= 12_700, row  # ≥ 100 test-split windows
        assert type(entry).from_json(row) == entry  # the catalog row is a codec result


# -- the circuit SAE as a sae-lens architecture -----------------------------------------------------------------
def test_discrete_sae_is_registered_and_round_trips(tmp_path: Path) -> None:
    assert (
        discrete.ARCHITECTURE in SAE_CLASS_REGISTRY and discrete.ARCHITECTURE in SAE_TRAINING_CLASS_REGISTRY
    )
    x = torch.randn(120, 16, generator=torch.Generator().manual_seed(1))
    module = train_sae(x, SAEConfig(n_latents=12, epochs=30), seed=0).sae
    folder = discrete.save(module, tmp_path / "circuit", hook_name="blocks.0.attn.hook_z", model="tiny-llama")
    generic = SAE.load_from_disk(folder)
    assert isinstance(generic, discrete.DiscreteCircuitSAE)
    assert torch.allclose(generic.encode(x), module.encode(x)) and torch.allclose(
        generic.decode(module.encode(x)), module(x)[0]
    )
    assert torch.equal(generic.codes(x), codes(module, x[None])[0])
    back = discrete.load(folder)
    assert torch.equal(back.encode(x), module.encode(x))
    assert json.loads((folder / "cfg.json").read_text())["architecture"] == "headscope_discrete"
    discrete.register()  # a second registration is a no-op, not sae-lens's duplicate error


def test_discrete_sae_trains_with_the_sae_lens_trainer(tmp_path: Path) -> None:
    from sae_lens import LoggingConfig, SAETrainer
    from sae_lens.config import SAETrainerConfig

    torch.manual_seed(0)
    x = torch.randn(512, 16)
    sae = discrete.DiscreteCircuitTrainingSAE(
        discrete.DiscreteTrainingSAEConfig(d_in=16, d_sae=8, l1_coefficient=0.01)
    )

    def batches() -> Iterator[torch.Tensor]:
        while True:
            yield from x.split(64)

    with torch.no_grad():
        before = float((sae.decode(sae.encode(x)) - x).pow(2).mean())
    cfg = SAETrainerConfig(total_training_samples=64 * 60, train_batch_size_samples=64, lr=1e-2, lr_end=1e-2,
                           logger=LoggingConfig(log_to_wandb=False))  # fmt: skip
    SAETrainer(cfg=cfg, sae=sae, data_provider=batches()).fit()
    with torch.no_grad():
        after = float((sae.decode(sae.encode(x)) - x).pow(2).mean())
    assert after < before
    sae.save_inference_model(tmp_path / "trained")
    assert isinstance(SAE.load_from_disk(tmp_path / "trained"), discrete.DiscreteCircuitSAE)
