"""Where a discrete-SAE variant reads each head, and how head outputs are scaled before the shared SAE.

**Read positions** (every one a weighted sum of `blocks.{l}.attn.hook_result`, the head's write into the residual
stream, over each prompt's real positions):
- `mean`: the average over real positions (papers.md §2.2, the reference);
- `last`: the prompt's final token, where the answer is read;
- `named`: the average over the task's named positions: the tokens where a prompt and its own corrupted partner
  differ (IOI: S1, IO, S2; greater-than: the YY digits; docstring: the argument names; induction: the first copy)
  plus the final token. Derived from the pair, so a custom task whose prompts align gets them too; an unpaired task
  has only the final token;
- `context`: the average over the tokens a pair shares after its first difference (there a head's output differs
  only through the context: IOI's "gave a … to", greater-than's " to the year XX", induction's second copy) plus
  the final token; an unpaired task has only the final token.
All reads of one batch come from one forward.

**Normalisation** before the shared SAE (`none` as the reference): `head` divides each head's vectors by that
head's RMS norm over all examples, `layer` by its layer's; a constant per head or layer, so it changes which
directions take the codes (high-norm heads no longer dominate the reconstruction loss) and nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from jaxtyping import Float
from torch import Tensor

from headscope.circuits.patching import Batch, Prepared
from headscope.models import ModelHandle, hooks

Read = Literal["mean", "last", "named", "context"]
READS: tuple[str, ...] = ("mean", "last", "named", "context")
Norm = Literal["none", "head", "layer", "center", "center_head"]
NORMS: tuple[str, ...] = ("none", "head", "layer", "center", "center_head")
Masks = tuple[Tensor, Tensor]  # [batch, pos] boolean (clean, corrupt)


def _final(batch: Batch) -> Tensor:
    at = torch.zeros_like(batch.mask)
    at[torch.arange(batch.ids.shape[0], device=at.device), batch.last] = True
    return at


def _differ(prep: Prepared) -> Tensor:
    return (prep.clean.ids != prep.corrupt.ids) & prep.clean.mask & prep.corrupt.mask


def named_positions(prep: Prepared) -> Masks:
    """Each prompt's named positions: where the pair differs, and the final token."""
    clean, corrupt = _final(prep.clean), _final(prep.corrupt)
    if prep.paired:
        differ = _differ(prep)
        clean, corrupt = clean | differ, corrupt | differ
    return clean, corrupt


def context_positions(prep: Prepared) -> Masks:
    """Each prompt's context positions: tokens the pair shares that come after its first difference (their head
    outputs differ only through what came before), and the final token."""
    clean, corrupt = _final(prep.clean), _final(prep.corrupt)
    if prep.paired:
        differ = _differ(prep)
        after = (differ.cumsum(1) > 0) & ~differ & prep.clean.mask & prep.corrupt.mask
        clean, corrupt = clean | after, corrupt | after
    return clean, corrupt


def _masks(prep: Prepared, read: str) -> Masks | None:
    """Position masks of a weighted read; None for `last` (an index, kept exact)."""
    if read == "last":
        return None
    if read == "mean":
        return prep.clean.mask, prep.corrupt.mask
    return named_positions(prep) if read == "named" else context_positions(prep)


def _weights(mask: Tensor | None) -> Tensor | None:
    if mask is None:
        return None
    w = mask.float()
    return w / w.sum(1, keepdim=True)


def read_batch(
    handle: ModelHandle, batch: Batch, weights: dict[str, Tensor | None], layers: Sequence[int]
) -> dict[str, Float[Tensor, "batch head_total d_model"]]:
    """Each head's output under every read (`weights`: read → [batch, pos] weights, None for the last token),
    from one forward; heads flattened layer-major (index l·n_heads + h, layers in `layers` order). `mean` and
    `last` equal `patching.head_outputs` bit for bit."""
    rows = torch.arange(batch.ids.shape[0], device=batch.ids.device)
    out: dict[str, list[Tensor]] = {r: [] for r in weights}

    def keep(act: Tensor, hook: Any) -> Tensor:
        for r, w in weights.items():
            red = act[rows, batch.last] if w is None else torch.einsum("bphd,bp->bhd", act, w)
            out[r].append(red.detach().float())
        return act

    handle.forward(batch.ids, fwd_hooks=[(hooks.attn(layer, "result"), keep) for layer in layers])
    return {r: torch.cat(v, dim=1) for r, v in out.items()}


def read_heads(
    handle: ModelHandle, prep: Prepared, reads: Sequence[str], layers: Sequence[int]
) -> dict[str, Float[Tensor, "example head_total d_model"]]:
    """Positives then negatives (examples 0..B−1, B..), every read from one forward per side."""
    masks = {r: _masks(prep, r) for r in reads}
    sides = [
        read_batch(handle, b, {r: _weights(None if m is None else m[i]) for r, m in masks.items()}, layers)
        for i, b in enumerate((prep.clean, prep.corrupt))
    ]
    return {r: torch.cat([s[r] for s in sides]) for r in reads}


@dataclass(frozen=True)
class HeadScaling:
    """What a normalisation did to each head's vectors: x' = (x − shift) / scale (None: that part not done).
    Saved with the SAE, whose inputs are x'."""

    shift: Tensor | None = None  # [head_total, d_model]
    scale: Tensor | None = None  # [head_total]

    def apply(self, x: Float[Tensor, "example head_total d_model"]) -> Tensor:
        if self.shift is not None:
            x = x - self.shift[None]
        return x if self.scale is None else x / self.scale[None, :, None]


def head_scaling(x: Float[Tensor, "example head_total d_model"], norm: str, n_heads: int) -> HeadScaling:
    """`head` / `layer`: divide by each head's / each layer's RMS norm over all examples; `center`: subtract each
    head's mean over all examples (both classes, no label); `center_head`: both, centring first."""
    if norm == "none":
        return HeadScaling()
    shift = x.mean(0) if norm.startswith("center") else None
    if norm == "center":
        return HeadScaling(shift=shift)
    xc = x if shift is None else x - shift[None]
    sq = xc.pow(2).sum(-1).mean(0)  # [head_total]: mean squared norm per head
    if norm == "layer":
        sq = sq.view(-1, n_heads).mean(1, keepdim=True).expand(-1, n_heads).reshape(-1)
    return HeadScaling(shift=shift, scale=sq.sqrt().clamp_min(1e-12))


def normalise(
    x: Float[Tensor, "example head_total d_model"], norm: str, n_heads: int
) -> Float[Tensor, "example head_total d_model"]:
    """x as the SAE sees it under `norm` (`none`: x itself)."""
    return head_scaling(x, norm, n_heads).apply(x)
