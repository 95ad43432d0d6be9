"""Where an SAE reads: its site kind and layer, mapped onto the handle's hook names (built by `models.hooks` only).

An SAE saved by SAELens names its hook in `cfg.metadata.hook_name` in TransformerLens's address space
(`blocks.6.hook_resid_post`, `blocks.6.hook_attn_out`, ...), which is the handle's own. SAEs from other tools name
Hugging Face modules instead (`layers.6`, `model.layers.6.mlp`, ...); those are mapped too, so any SAE becomes
(kind, layer) → one handle hook name, and an unknown name is refused with the names we do know.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from headscope.errors import InputError
from headscope.models import hooks

Kind = Literal["resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out"]
KINDS: tuple[str, ...] = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")
TRAIN_KINDS: tuple[str, ...] = ("resid_post", "attn_out", "mlp_out")  # what `features train --hook` offers
# Hugging Face module names used by non-TransformerLens SAE tools: the output of a decoder layer is resid_post.
_HF = re.compile(r"^(?:model\.)?(?:layers|h|blocks)\.(\d+)(?:\.(mlp|self_attn|attn))?$")
_HF_KIND = {None: "resid_post", "mlp": "mlp_out", "self_attn": "attn_out", "attn": "attn_out"}


@dataclass(frozen=True)
class Site:
    kind: Kind
    layer: int

    @property
    def hook(self) -> str:
        """The handle's hook name for this site."""
        if self.kind == "attn_out":
            return hooks.sublayer_out(self.layer, "attn")
        if self.kind == "mlp_out":
            return hooks.sublayer_out(self.layer, "mlp")
        return hooks.resid(self.layer, self.kind.removeprefix("resid_"))

    def check(self, n_layers: int) -> Site:
        if not 0 <= self.layer < n_layers:
            raise InputError(f"layer {self.layer} is out of range: the model has layers 0..{n_layers - 1}")
        return self

    def __str__(self) -> str:
        return f"{self.kind}@{self.layer}"


def site(kind: str, layer: int) -> Site:
    if kind not in KINDS:
        raise InputError(f"hook must be one of {', '.join(KINDS)}, got {kind!r}")
    if isinstance(layer, bool) or not isinstance(layer, int) or layer < 0:
        raise InputError(f"layer must be an integer ≥ 0, got {layer!r}")
    return Site(kind, layer)  # type: ignore[arg-type]


def parse_hook_name(name: str) -> Site:
    """An SAE's hook name (TransformerLens or Hugging Face style) as a Site; unknown names are refused."""
    if not isinstance(name, str) or not name:
        raise InputError("the SAE names no hook point (cfg.metadata.hook_name is empty)")
    layer = hooks.layer_of(name)
    if layer is not None:
        for kind in KINDS:
            if Site(kind, layer).hook == name:  # type: ignore[arg-type]
                return Site(kind, layer)  # type: ignore[arg-type]
    m = _HF.match(name)
    if m:
        return Site(_HF_KIND[m.group(2)], int(m.group(1)))  # type: ignore[arg-type]
    raise InputError(
        f"the SAE reads hook {name!r}, which headscope cannot map; supported: "
        "blocks.L.hook_resid_pre|resid_mid|resid_post|attn_out|mlp_out (or layers.L[.mlp|.self_attn])"
    )
