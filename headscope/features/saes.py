"""SAEs in SAELens's on-disk format, bound to a loaded model: load, check, encode/decode, the effective decoder rows.

A folder holds `cfg.json` + `sae_weights.safetensors` (written by sae-lens's `save_model` /
`save_inference_model`, read by `SAE.load_from_disk`) and, when headscope made it, `card.json` (training and
evaluation figures) and the dashboards (`index.py`). Binding an SAE to a handle checks, before anything runs:
- the hook point maps onto one of the handle's hook names (`sites.py`) and its layer exists;
- d_in equals the width of the model at that hook (both shapes named when not);
- the card's model (name and weights hash), when there is one, is the loaded model;
- the SAE needs no run-time input normalisation (its decoder is then affine, which steering and attribution use).
A corrupted or truncated file, a missing one, or a config sae-lens cannot read gives one `InputError` line.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from headscope.errors import InputError, ModelUnavailableError
from headscope.features import discrete as _discrete  # noqa: F401  (registers the circuit SAE's architecture)
from headscope.features.folder import MAX_SAE_BYTES as MAX_SAE_BYTES  # re-exported: callers read folders here
from headscope.features.folder import load_folder, read_card
from headscope.features.folder import write_card as write_card
from headscope.features.sites import Site, parse_hook_name
from headscope.models.handle import ModelHandle


@dataclass(frozen=True)
class FeatureSAE:
    """An sae-lens SAE bound to a site of a loaded model (fp32 on the model's device)."""

    name: str
    sae: Any  # sae_lens.SAE (typed loosely: sae-lens's generics confuse pyright)
    site: Site
    card: dict[str, Any] = field(default_factory=dict)
    folder: Path | None = None

    @property
    def hook(self) -> str:
        return self.site.hook

    @property
    def d_sae(self) -> int:
        return int(self.sae.cfg.d_sae)

    @property
    def d_in(self) -> int:
        return int(self.sae.cfg.d_in)

    @property
    def architecture(self) -> str:
        return str(self.sae.cfg.architecture())

    def encode(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... latent"]:
        return self.sae.encode(x.to(self.sae.dtype))

    def decode(self, f: Float[Tensor, "... latent"]) -> Float[Tensor, "... d_model"]:
        return self.sae.decode(f)

    def reconstruct(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        return self.decode(self.encode(x)).to(x.dtype)

    @functools.cached_property
    def decoder_rows(self) -> Float[Tensor, "latent d_model"]:
        """Row i = what feature i adds per unit of activation: decode(e_i) − decode(0). For every architecture
        here the decoder is affine, so this is exact (it folds a TopK SAE's decoder-norm rescaling, for example)."""
        with torch.no_grad():
            eye = torch.eye(self.d_sae, dtype=self.sae.dtype, device=self.sae.device)
            zero = torch.zeros(1, self.d_sae, dtype=self.sae.dtype, device=self.sae.device)
            return (self.decode(eye) - self.decode(zero)).float()

    def direction(self, feature: int) -> Float[Tensor, " d_model"]:
        """Feature i's decoder row scaled to unit norm (a steering direction)."""
        row = self.decoder_rows[self.check_feature(feature)]
        return row / row.norm().clamp_min(1e-12)

    def check_feature(self, feature: Any) -> int:
        if isinstance(feature, bool) or not isinstance(feature, int) or not 0 <= feature < self.d_sae:
            raise InputError(
                f"feature {feature!r} does not exist: SAE {self.name} has features 0..{self.d_sae - 1}"
            )
        return feature

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "hook": self.hook, "kind": self.site.kind, "layer": self.site.layer,
                "d_in": self.d_in, "d_sae": self.d_sae, "architecture": self.architecture}  # fmt: skip


def bind(handle: ModelHandle, sae: Any, name: str, card: dict[str, Any] | None = None,
         folder: Path | None = None) -> FeatureSAE:  # fmt: skip
    """Check that `sae` fits `handle` (hook, layer, width, model) and bind it to the handle's hook name."""
    card = card or {}
    hook_name = card.get("hook") or sae.cfg.metadata.hook_name
    site = parse_hook_name(hook_name)
    d_model = handle.facts.d_model
    if not 0 <= site.layer < handle.facts.n_layers:
        raise InputError(
            f"SAE {name} reads {hook_name} (layer {site.layer}); model {handle.identity.name} has layers "
            f"0..{handle.facts.n_layers - 1}"
        )
    if int(sae.cfg.d_in) != d_model:
        raise InputError(
            f"SAE {name} expects activations of shape [..., {sae.cfg.d_in}] at {hook_name}; model "
            f"{handle.identity.name} gives [..., {d_model}] there"
        )
    _check_model(handle, card, name)
    if getattr(sae.cfg, "reshape_activations", "none") != "none":
        raise InputError(
            f"SAE {name} reshapes per-head activations ({sae.cfg.reshape_activations}); not supported"
        )
    if getattr(sae.cfg, "normalize_activations", "none") != "none":
        raise InputError(
            f"SAE {name} normalises its inputs at run time ({sae.cfg.normalize_activations}); headscope reads "
            "SAEs with normalize_activations='none' (fold the scaling into the weights first)"
        )
    return FeatureSAE(name, sae.to(handle.device), site, card, folder)


def _check_model(handle: ModelHandle, card: dict[str, Any], name: str) -> None:
    model = card.get("model") or {}
    theirs, ours = model.get("sha256"), handle.identity.sha256
    if (model.get("name") and model.get("name") != handle.identity.name) or (
        theirs and ours and theirs != ours
    ):
        raise InputError(
            f"SAE {name} was trained on model {model.get('name')} (sha256 {str(theirs)[:12]}); refusing it on "
            f"{handle.identity.name} (sha256 {str(ours)[:12]})"
        )


def load(handle: ModelHandle, folder: str | Path, name: str | None = None) -> FeatureSAE:
    """An SAE folder (SAELens format, optionally with headscope's card) bound to `handle`."""
    path = Path(folder)
    card = read_card(path)
    sae = load_folder(path, str(handle.device))
    return bind(handle, sae, name or card.get("name") or path.name, card, path)


def from_pretrained(handle: ModelHandle, release: str, sae_id: str) -> FeatureSAE:
    """A released SAE (`SAE.from_pretrained`) — only from the local Hugging Face cache: no hub is reachable here."""
    repo_id = _release_repo(release, sae_id)
    if not _hub_cached(repo_id):
        raise ModelUnavailableError(
            f"SAE release {release!r} ({repo_id}) is not in the local Hugging Face cache and no hub is reachable "
            "from here; copy a saved SAE folder and pass its path instead"
        )
    from sae_lens import SAE

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sae = SAE.from_pretrained(release, sae_id, device=str(handle.device))
    except Exception as e:
        first = (str(e).splitlines() or [type(e).__name__])[0][:160]
        raise ModelUnavailableError(f"SAE {release}/{sae_id} could not be loaded offline: {first}") from None
    return bind(handle, sae.eval().requires_grad_(False), f"{release}/{sae_id}", {}, None)


def _release_repo(release: str, sae_id: str) -> str:
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    directory = get_pretrained_saes_directory()
    if release not in directory:
        raise InputError(
            f"unknown SAE release {release!r} (sae-lens's directory lists {len(directory)} releases)"
        )
    saes = directory[release].saes_map
    if sae_id not in saes:
        raise InputError(f"release {release!r} has no SAE {sae_id!r} (e.g. {', '.join(list(saes)[:3])})")
    return directory[release].repo_id


def _hub_cached(repo_id: str) -> bool:
    from huggingface_hub import constants

    return (Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}").is_dir()
