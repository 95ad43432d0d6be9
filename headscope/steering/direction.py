"""`SteeringVector`: a direction, where it is added, and the scale α is measured against.

α is relative, never a raw multiplier: the hook adds α · r · v/‖v‖, where r is the mean norm of the activation at
the site over the texts that defined the vector (position 0 excluded, see `activations`). α = 0.5 adds a vector
half as long as a typical residual at that layer, whatever the layer's scale (SmolLM2's residual norm grows from
~50 at layer 0 to ~600 at layer 27, so a raw α means something different at each layer). At the heads' outputs
(`hook_z`) each head has its own r and its own unit direction.

Sites: a residual-type hook (`blocks.L.hook_resid_post`; an SAE's hook for feature vectors) carrying one d_model
vector, or a `HeadSet` carrying one d_head vector per head at `blocks.l.attn.hook_z` (the heads' outputs before
`o_proj`). Anything that turns a direction into a steering vector (contrastive means, an SAE feature's decoder
row) builds one of these, so saving, applying and costing are shared.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from headscope import checks
from headscope.errors import InputError
from headscope.models import hooks
from headscope.models.handle import Hooks, ModelHandle
from headscope.selection import HeadSet
from headscope.steering.hooks import POSITIONS, Position, add_hook, head_add_hooks

MAX_ALPHA = 10.0  # |α| ≤ 10: ten times the typical residual norm is far past anything fluent
DEFAULT_ALPHA = 0.2  # see README "Defaults": fluent on SmolLM2 (perplexity ratio ≤ 2, distinct ≥ 0.5)
DEFAULT_POSITION: Position = "last"


def check_alpha(alpha: Any) -> float:
    return checks.number(alpha, "alpha", -MAX_ALPHA, MAX_ALPHA)


@dataclass(frozen=True)
class SteerConfig:
    """How strongly (α, relative to the activation norm at the site) and where in the sequence to add."""

    alpha: float = DEFAULT_ALPHA
    position: Position = DEFAULT_POSITION

    def __post_init__(self) -> None:
        object.__setattr__(self, "alpha", check_alpha(self.alpha))
        checks.choice(self.position, "position", POSITIONS)


def activations(handle: ModelHandle, text: str, names: Sequence[str]) -> dict[str, Tensor]:
    """Activations of one text at `names`, position 0 dropped.

    Position 0 is the attention sink: in SmolLM2 its residual norm is ~24,000 past layer 10 against ~150 at other
    positions, so a mean that includes it measures text length more than content (it made a sentiment vector's
    norm 186 instead of 35). A text needs at least two tokens."""
    ids = handle.tokenize(text)
    if ids.shape[1] < 2:
        raise InputError(f"{text!r} is one token; a text needs at least two (position 0 is left out)")
    _, cache = handle.run_with_cache(ids, list(names))
    return {n: cache[n][0, 1:].float() for n in names}


def _unit_rows(v: Tensor) -> Tensor:
    norm = v.norm(dim=-1, keepdim=True)
    return torch.where(norm > 0, v / norm.clamp_min(1e-30), torch.zeros_like(v))


@dataclass(frozen=True)
class SteeringVector:
    """direction: [d_model] at `hook`, or [k, d_head] at the heads' `hook_z` (rows in `heads` order).
    ref_norm: [] or [k], the activation norm α is relative to. source: how it was made (for files and reports)."""

    direction: Float[Tensor, "*k d"]
    ref_norm: Float[Tensor, "*k"]
    method: str
    hook: str | None = None
    heads: HeadSet | None = None
    source: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.hook is None) == (self.heads is None):
            raise InputError("a steering vector sits at one hook or at a set of heads, not both or neither")
        if not bool(torch.isfinite(self.direction).all()) or float(self.direction.norm()) == 0.0:
            raise InputError(
                "the steering direction is zero or not finite (are the two text sets identical?)"
            )

    @property
    def layer(self) -> int | None:
        return hooks.layer_of(self.hook) if self.hook is not None else None

    @property
    def sites(self) -> tuple[str, ...]:
        if self.heads is not None:
            return tuple(hooks.z(layer) for layer in self.heads.layers)
        return (str(self.hook),)

    def added(self, alpha: float) -> Tensor:
        """What the hooks add: α · r · v/‖v‖ (per head row at the heads)."""
        return alpha * self.ref_norm.unsqueeze(-1) * _unit_rows(self.direction)

    @property
    def natural_alpha(self) -> float:
        """The α that adds the raw direction itself, ‖v‖ / r (mean over heads): the contrast's own size."""
        return float((self.direction.norm(dim=-1) / self.ref_norm.clamp_min(1e-30)).mean())

    def hooks(self, steer: SteerConfig, start: int) -> Hooks:
        delta = self.added(steer.alpha)
        if self.heads is not None:
            return head_add_hooks(list(self.heads), delta, self.heads.n_heads, steer.position, start)
        return [add_hook(str(self.hook), delta, steer.position, start)]

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method, "sites": list(self.sites), "layer": self.layer,
            "heads": None if self.heads is None else str(self.heads),
            "direction_norm": round(float(self.direction.norm(dim=-1).mean()), 4),
            "ref_norm": round(float(self.ref_norm.mean()), 4), "natural_alpha": round(self.natural_alpha, 4),
            **self.source,
        }  # fmt: skip


def reference_texts(n: int = 8) -> list[str]:
    """Texts for r when a direction comes without texts of its own (an SAE feature's decoder row): the first
    sentence of each of the first `n` articles of the shipped Wikipedia excerpt (short enough for any model's
    context), so the same model always gives the same r."""
    from headscope.data import excerpt_articles

    return [a.text.split(". ")[0].strip() + "." for a in excerpt_articles()[:n]]


def readout_change(
    handle: ModelHandle,
    hook: str,
    fwd_hooks: Hooks,
    ids: Int[Tensor, "1 pos"],
    lo: int,
    readout: Callable[[Tensor], Tensor],
) -> float:
    """Mean over positions lo… of readout(activation at `hook` with `fwd_hooks`) − readout(without), on the
    same tokens. `readout` maps [pos, d_model] to [pos]."""
    _, clean = handle.run_with_cache(ids, [hook])
    _, steered = handle.run_with_cache(ids, [hook], fwd_hooks=fwd_hooks)
    with torch.inference_mode():
        diff = readout(steered[hook][0, lo:].float()) - readout(clean[hook][0, lo:].float())
    return float(diff.mean())


def readout_effect(
    handle: ModelHandle,
    sv: SteeringVector,
    steer: SteerConfig,
    ids: Int[Tensor, "1 pos"],
    start: int,
    readout: Callable[[Tensor], Tensor],
) -> float:
    """What steering does to a readout of the activation at the vector's own hook (e.g. an SAE feature's
    activation): the mean over the steered positions of readout(steered) − readout(unsteered), on the same tokens.
    `start` is the prompt's last position, as for the hooks."""
    if sv.hook is None:
        raise InputError("a readout effect needs a vector at one residual-type hook, not at heads")
    lo = 0 if steer.position == "all" else start
    return readout_change(handle, sv.hook, sv.hooks(steer, start), ids, lo, readout)


def reference_norm(handle: ModelHandle, texts: Sequence[str], hook: str) -> Tensor:
    """Mean ‖activation‖ at a residual-type hook over the texts' positions (position 0 excluded)."""
    norms = [activations(handle, t, [hook])[hook].norm(dim=-1) for t in texts]
    return torch.cat(norms).mean()


def from_direction(
    handle: ModelHandle,
    direction: Float[Tensor, " d_model"],
    hook: str,
    texts: Sequence[str],
    *,
    method: str,
    source: dict[str, Any] | None = None,
) -> SteeringVector:
    """A d_model direction at a residual-type hook (e.g. an SAE feature's decoder row), α measured against the
    mean activation norm at that hook over `texts`."""
    handle.check_hook_names([hook])
    if tuple(direction.shape) != (handle.facts.d_model,):
        raise InputError(
            f"a direction has shape {tuple(direction.shape)}; this model needs ({handle.facts.d_model},)"
        )
    ref = reference_norm(handle, texts, hook)
    return SteeringVector(direction.detach().float().to(handle.device), ref, method, hook=hook,
                          source=dict(source or {}))  # fmt: skip
