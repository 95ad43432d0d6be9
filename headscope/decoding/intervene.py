"""Ablating and/or dialling heads while decoding (`decode compare --heads 9.4,12.* --heads-action ablate|dial`;
`DecodeConfig.ablate_heads` / `DecodeConfig.dial`).

Both act inside the decoding attention function (`live.py`), so they cost nothing on layers outside the set and
keep the KV-cached, hook-free fast path:

- **ablate** replaces the selected heads' outputs — TransformerLens's `hook_z`, the per-head attention output
  before the output projection — by their **mean over the prompt** in an un-intervened run (default), or by zero.
  Mean ablation is the default because it removes what the head says about *this* token while keeping its average
  contribution, so the residual stream stays on the distribution the later layers were trained on; zero ablation
  also removes that average offset, which on its own can derail the continuation (and is the same as deleting
  the head, since the models here have no output-projection bias for it to fall back on). The same choice as the
  circuits capability's mean ablation.
- **dial** applies a `headscope.attention.LocalityDial` (its heads, λ, mode, layer schedule and strength) to the
  selected heads' pre-softmax scores — the dial's own score hooks, applied to the step's query rows — so the other
  heads of a dialled layer and every other layer keep their exact attention.
"""

from __future__ import annotations

from dataclasses import dataclass

from headscope.attention import LocalityDial
from headscope.decoding.config import DecodeConfig
from headscope.decoding.live import ScoreFn
from headscope.models import ModelHandle, hooks
from headscope.models.handle import HookFn
from headscope.selection import HeadSet


@dataclass(frozen=True)
class Intervention:
    ablate: HeadSet | None
    ablation: str  # "mean" | "zero"
    dial: LocalityDial | None

    @classmethod
    def from_config(cls, handle: ModelHandle, cfg: DecodeConfig) -> Intervention | None:
        """The config's intervention bound to the model (head indices and the dial's schedule checked)."""
        if not cfg.intervenes:
            return None
        ablate = handle.head_set(cfg.ablate_heads) if cfg.ablate_heads is not None else None
        if cfg.dial is not None:
            cfg.dial.check(handle)
        return cls(ablate, cfg.ablation, cfg.dial)

    def describe(self) -> str:
        parts = []
        if self.ablate is not None:
            how = "mean over the prompt" if self.ablation == "mean" else "zero"
            parts.append(f"ablate heads {self.ablate} ({how})")
        if self.dial is not None:
            parts.append(f"dial heads {self.dial.heads_text or 'all'} ({describe_dial(self.dial)})")
        return "; ".join(parts)

    def ablated(self) -> dict[int, tuple[int, ...]]:
        return self.ablate.by_layer() if self.ablate is not None else {}

    def needs_means(self) -> bool:
        return self.ablate is not None and self.ablation == "mean"

    @property
    def dials(self) -> bool:
        return self.dial is not None

    @property
    def per_forward(self) -> bool:
        """Whether the dial's functions must be rebuilt for each forward: the block mode's ids come from the
        tokens (the distance and window modes read the key count from the scores themselves)."""
        return self.dial is not None and self.dial.mode == "block"

    def dial_fns(self, handle: ModelHandle, seq: list[int]) -> dict[int, ScoreFn]:
        """layer → the dial's score transform for a run whose keys are `seq`."""
        if self.dial is None:
            return {}
        return dial_score_fns(handle, self.dial, seq)


def describe_dial(dial: LocalityDial) -> str:
    """'λ = 0.5, distance' (+ the schedule and strength where they are not the defaults)."""
    out = [f"λ = {dial.lam:g}", dial.mode]
    if dial.schedule == "progressive":
        out.append(f"progressive β = {dial.beta:g}")
    elif dial.schedule == "explicit":
        out.append("explicit layer weights")
    if dial.strength != 1.0:
        out.append(f"strength {dial.strength:g}")
    return ", ".join(out)


def _as_score_fn(hook: HookFn) -> ScoreFn:
    return lambda scores: hook(scores, None)


def dial_score_fns(handle: ModelHandle, dial: LocalityDial, seq: list[int]) -> dict[int, ScoreFn]:
    """The dial's own score hooks (`headscope.attention.dial_hooks`) as functions, layer → transform. The hooks
    read the query and key counts from the scores, so they serve KV-cached steps; `seq` (every token the run's
    keys hold) matters only for the block mode's block ids."""
    import torch

    from headscope.attention import dial_hooks

    out: dict[int, ScoreFn] = {}
    for name, fn in dial_hooks(handle, torch.tensor([seq], device=handle.device), dial):
        layer = hooks.layer_of(name)
        assert layer is not None
        out[layer] = _as_score_fn(fn)
    return out
