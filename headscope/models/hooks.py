"""The one builder of hook names: every capability addresses activations through these functions.

Names are TransformerLens's own (built by `transformer_lens.utilities.get_act_name`, the field's canonical
builder), so a name here is exactly what `TransformerBridge.hook_dict` holds. No module writes
`f"blocks.{l}...."` itself; a new site is added here once.

Sites:
- attention, per head: `attn(l, "pattern" | "attn_scores" | "q" | "k" | "v" | "z" | "result" | "rot_q" | "rot_k")`
  (`z(l)` and `pattern(l)`/`scores(l)` are shorthands);
- residual stream: `resid(l, "pre" | "mid" | "post")`;
- sublayers: `sublayer_out(l, "attn" | "mlp")`, `sublayer_in(l, "q" | "k" | "v" | "attn" | "mlp")`.
"""

from __future__ import annotations

import re
from typing import Literal

from transformer_lens.utilities import get_act_name

from headscope.errors import InputError

AttnSite = Literal["pattern", "attn_scores", "q", "k", "v", "z", "result", "rot_q", "rot_k"]
ResidSite = Literal["pre", "mid", "post"]
Sublayer = Literal["attn", "mlp"]
InputSite = Literal["q", "k", "v", "attn", "mlp"]
ATTN_SITES: tuple[str, ...] = ("pattern", "attn_scores", "q", "k", "v", "z", "result", "rot_q", "rot_k")
RESID_SITES: tuple[str, ...] = ("pre", "mid", "post")
SUBLAYERS: tuple[str, ...] = ("attn", "mlp")
INPUT_SITES: tuple[str, ...] = ("q", "k", "v", "attn", "mlp")
_LAYERED = re.compile(r"^blocks\.(\d+)\.(.+)$")


def _layer(layer: int) -> int:
    if isinstance(layer, bool) or not isinstance(layer, int) or layer < 0:
        raise InputError(f"layer must be an integer ≥ 0, got {layer!r}")
    return layer


def _choice(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise InputError(f"{what} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def attn(layer: int, site: AttnSite | str) -> str:
    """`blocks.{l}.attn.hook_{site}`: per-head attention activations."""
    return get_act_name(_choice(site, ATTN_SITES, "attention site"), _layer(layer))


def pattern(layer: int) -> str:
    return attn(layer, "pattern")


def scores(layer: int) -> str:
    """Pre-softmax scores: already scaled by 1/√d_head and causally masked (TransformerLens 3.9)."""
    return attn(layer, "attn_scores")


def z(layer: int) -> str:
    return attn(layer, "z")


def resid(layer: int, where: ResidSite | str) -> str:
    """`blocks.{l}.hook_resid_{pre|mid|post}`."""
    return get_act_name(f"resid_{_choice(where, RESID_SITES, 'residual site')}", _layer(layer))


def sublayer_out(layer: int, kind: Sublayer | str) -> str:
    """`blocks.{l}.hook_{attn|mlp}_out`: what the sublayer writes into the residual stream."""
    return get_act_name(f"{_choice(kind, SUBLAYERS, 'sublayer')}_out", _layer(layer))


def sublayer_in(layer: int, kind: InputSite | str) -> str:
    """`blocks.{l}.hook_{q|k|v}_input` / `hook_{attn|mlp}_in` (the split inputs are gated by the bridge)."""
    kind = _choice(kind, INPUT_SITES, "input site")
    return get_act_name(f"{kind}_input" if kind in ("q", "k", "v") else f"{kind}_in", _layer(layer))


def layer_of(name: str) -> int | None:
    """The block index a hook name addresses (None for model-level hooks such as `hook_embed`)."""
    m = _LAYERED.match(name)
    return int(m.group(1)) if m else None


def site_of(name: str) -> str:
    """The part after `blocks.{l}.` (e.g. `attn.hook_z`, `hook_resid_post`), or the whole name."""
    m = _LAYERED.match(name)
    return m.group(2) if m else name
