"""Ablating or dialling a head set while decoding (`decode compare --heads 9.4,12.* --heads-action ablate|dial`).

Both act inside the decoding attention function (`live.py`), so they cost nothing on layers outside the set and
keep the KV-cached, hook-free fast path:

- **ablate** replaces the selected heads' outputs — TransformerLens's `hook_z`, the per-head attention output
  before the output projection — by their **mean over the prompt** in an un-intervened run (default), or by zero.
  Mean ablation is the default because it removes what the head says about *this* token while keeping its average
  contribution, so the residual stream stays on the distribution the later layers were trained on; zero ablation
  also removes that average offset, which on its own can derail the continuation (and is the same as deleting
  the head, since the models here have no output-projection bias for it to fall back on). The same choice as the
  circuits capability's mean ablation.
- **dial** applies the locality dial (`headscope.attention`, distance / block / window mode at λ) to the selected
  heads' pre-softmax scores — the dial's own score hook, applied to the step's query rows — so the other heads of
  a dialled layer and every other layer keep their exact attention.
"""

from __future__ import annotations

from dataclasses import dataclass

from headscope.decoding.config import DecodeConfig
from headscope.decoding.live import ScoreFn
from headscope.models import ModelHandle, hooks
from headscope.models.handle import HookFn
from headscope.selection import HeadSet


@dataclass(frozen=True)
class Intervention:
    heads: HeadSet
    action: str  # "ablate" | "dial"
    ablation: str  # "mean" | "zero"
    lam: float
    mode: str

    @classmethod
    def from_config(cls, handle: ModelHandle, cfg: DecodeConfig) -> Intervention | None:
        if cfg.heads is None:
            return None
        heads = handle.head_set(cfg.heads)
        return cls(heads, cfg.heads_action, cfg.ablation, cfg.dial_lambda, cfg.dial_mode)

    def describe(self) -> str:
        if self.action == "ablate":
            how = "mean over the prompt" if self.ablation == "mean" else "zero"
            return f"ablate heads {self.heads} ({how})"
        return f"dial heads {self.heads} (λ = {self.lam:g}, {self.mode})"

    def ablated(self) -> dict[int, tuple[int, ...]]:
        return self.heads.by_layer() if self.action == "ablate" else {}

    def needs_means(self) -> bool:
        return self.action == "ablate" and self.ablation == "mean"

    @property
    def per_forward(self) -> bool:
        """Whether the dial's functions must be rebuilt for each forward: the block mode's ids come from the
        tokens (the distance and window modes read the key count from the scores themselves)."""
        return self.action == "dial" and self.mode == "block"

    def dial_fns(self, handle: ModelHandle, seq: list[int]) -> dict[int, ScoreFn]:
        """layer → the dial's score transform for a run whose keys are `seq`."""
        if self.action != "dial":
            return {}
        return dial_score_fns(handle, self.heads, self.lam, self.mode, seq)


def _as_score_fn(hook: HookFn) -> ScoreFn:
    return lambda scores: hook(scores, None)


def dial_score_fns(
    handle: ModelHandle, heads: HeadSet, lam: float, mode: str, seq: list[int]
) -> dict[int, ScoreFn]:
    """The locality dial (`headscope.attention`) on exactly `heads`: layer → its score hook as a function. The hooks
    read the query and key counts from the scores, so they serve KV-cached steps; `seq` (every token the run's
    keys hold) matters only for the block mode's block ids."""
    import torch

    from headscope.attention import LocalityDial, dial_hooks

    dial = LocalityDial(lam=lam, mode=mode, heads=str(heads))
    out: dict[int, ScoreFn] = {}
    for name, fn in dial_hooks(handle, torch.tensor([seq], device=handle.device), dial):
        layer = hooks.layer_of(name)
        assert layer is not None
        out[layer] = _as_score_fn(fn)
    return out
