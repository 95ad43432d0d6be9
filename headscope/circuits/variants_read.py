"""Where a discrete-SAE variant reads each head, and how head outputs are scaled before the shared SAE.

**Read positions** (every one a weighted sum of `blocks.{l}.attn.hook_result`, the head's write into the residual
stream, over each prompt's real positions):
- `mean`: the average over real positions (papers.md §2.2, the reference);
- `last`: the prompt's final token, where the answer is read;
- `named`: the average over the task's named positions: the tokens where a prompt and its own corrupted partner
  differ (IOI: S1, IO, S2; greater-than: the YY digits; docstring: the argument names; induction: the first copy)
  plus the final token. Derived from the pair, so a custom task whose prompts align gets them too; an unpaired task
  has only the final token.
All reads of one batch come from one forward.

**Normalisation** before the shared SAE (`none` as the reference): `head` divides each head's vectors by that
head's RMS norm over all examples, `layer` by its layer's; a constant per head or layer, so it changes which
directions take the codes (high-norm heads no longer dominate the reconstruction loss) and nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from jaxtyping import Float
from torch import Tensor

from headscope.circuits.patching import Batch, Prepared
from headscope.models import ModelHandle, hooks

Read = Literal["mean", "last", "named"]
READS: tuple[str, ...] = ("mean", "last", "named")
Norm = Literal["none", "head", "layer"]
NORMS: tuple[str, ...] = ("none", "head", "layer")


def named_positions(prep: Prepared) -> tuple[Tensor, Tensor]:
    """[batch, pos] boolean masks (clean, corrupt) of each prompt's named positions: where the pair differs, and
    the final token."""
    clean = _final(prep.clean)
    corrupt = _final(prep.corrupt)
    if prep.paired:
        differ = (prep.clean.ids != prep.corrupt.ids) & prep.clean.mask & prep.corrupt.mask
        clean, corrupt = clean | differ, corrupt | differ
    return clean, corrupt


def _final(batch: Batch) -> Tensor:
    at = torch.zeros_like(batch.mask)
    at[torch.arange(batch.ids.shape[0], device=at.device), batch.last] = True
    return at


def _weights(batch: Batch, read: str, named: Tensor | None) -> Tensor | None:
    """[batch, pos] weights of a weighted read; None for `last` (an index, kept exact)."""
    if read == "last":
        return None
    mask = batch.mask if read == "mean" else named
    assert mask is not None
    w = mask.float()
    return w / w.sum(1, keepdim=True)


def read_batch(
    handle: ModelHandle,
    batch: Batch,
    reads: Sequence[str],
    layers: Sequence[int],
    named: Tensor | None = None,
) -> dict[str, Float[Tensor, "batch head_total d_model"]]:
    """Each head's output under every read in `reads`, from one forward; heads flattened layer-major (index
    l·n_heads + h, layers in `layers` order). `mean` and `last` equal `patching.head_outputs` bit for bit."""
    weights = {r: _weights(batch, r, named) for r in reads}
    rows = torch.arange(batch.ids.shape[0], device=batch.ids.device)
    out: dict[str, list[Tensor]] = {r: [] for r in reads}

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
    named = named_positions(prep) if "named" in reads else (None, None)
    sides = [
        read_batch(handle, b, reads, layers, m)
        for b, m in zip((prep.clean, prep.corrupt), named, strict=True)
    ]
    return {r: torch.cat([s[r] for s in sides]) for r in reads}


def normalise(
    x: Float[Tensor, "example head_total d_model"], norm: str, n_heads: int
) -> Float[Tensor, "example head_total d_model"]:
    """Divide each head's (or each layer's) vectors by their RMS norm over all examples; `none`: x itself."""
    if norm == "none":
        return x
    sq = x.pow(2).sum(-1).mean(0)  # [head_total]: mean squared norm per head
    if norm == "layer":
        sq = sq.view(-1, n_heads).mean(1, keepdim=True).expand(-1, n_heads).reshape(-1)
    return x / sq.sqrt().clamp_min(1e-12)[None, :, None]
