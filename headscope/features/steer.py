"""Steer by a feature: add its decoder direction (α · d̂_i, d̂_i the unit decoder row) at the SAE's hook, or clamp
its activation to a value during the forward pass.

- mode "add": x ← x + α d̂_i at the steered positions — a steering vector. For a residual-stream SAE it is
  exported in the steering capability's vector format (`steering.vectors`), so the steering tab can use
  "feature i of SAE S" as its vector; positions follow that format's meaning ("last": from the prompt's last
  token on, i.e. every generated token; "all": every position).
- mode "clamp": x ← x + (c − f_i(x)) d_i, with d_i the (unnormalised) decoder row: the reconstruction has f_i = c
  while the SAE's error term and every other feature are kept.
- α = 0 in "add" mode attaches the hook and adds exactly zero: the run is bit-identical to the unsteered one.

Reported next to the unsteered and steered generations (as `steer contrastive` prints them):
- effect: on prompt + steered continuation, mean over the steered positions of f_i read at the SAE's hook after
  the intervention, minus f_i on the same tokens without it;
- cost: perplexity of the steered continuation under the unsteered model, and its distinct-token ratio
  (unique / generated tokens), each beside the same figures for the unsteered continuation.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from headscope import checks
from headscope.errors import InputError
from headscope.features.saes import FeatureSAE
from headscope.models.handle import HookFn, Hooks, ModelHandle
from headscope.steering import vectors
from headscope.steering.contrastive import check_alpha
from headscope.steering.generate import GenConfig, Generation, generate
from headscope.steering.hooks import POSITIONS

MODES: tuple[str, ...] = ("add", "clamp")
MAX_CLAMP = 1e4
DEFAULT_GEN = GenConfig()


@dataclass(frozen=True)
class FeatureSteerConfig:
    feature: int
    alpha: float  # "add": strength along the unit decoder direction; "clamp": the activation value
    mode: str = "add"
    position: str = "last"

    def __post_init__(self) -> None:
        checks.choice(self.mode, "mode", MODES)
        checks.choice(self.position, "position", POSITIONS)
        if self.mode == "add":
            check_alpha(self.alpha)
        else:
            checks.number(self.alpha, "alpha (clamp value)", -MAX_CLAMP, MAX_CLAMP)
        if isinstance(self.feature, bool) or not isinstance(self.feature, int) or self.feature < 0:
            raise InputError(f"feature must be an integer ≥ 0, got {self.feature!r}")


def _mask(act: Tensor, position: str, start: int) -> Tensor:
    mask = torch.zeros(act.shape[1], 1, dtype=act.dtype, device=act.device)
    mask[(0 if position == "all" else start) :] = 1.0
    return mask


def steer_hook(fsae: FeatureSAE, cfg: FeatureSteerConfig, start: int) -> tuple[str, HookFn]:
    """The intervention at the SAE's hook; positions from `start` on (mode "last") or all."""
    i = fsae.check_feature(cfg.feature)
    if cfg.mode == "add":
        direction = fsae.direction(i)

        def add(act: Tensor, hook: Any) -> Tensor:
            return act + _mask(act, cfg.position, start) * (cfg.alpha * direction).to(act)

        return fsae.hook, add
    row = fsae.decoder_rows[i]

    def clamp(act: Tensor, hook: Any) -> Tensor:
        f_i = fsae.encode(act)[..., i : i + 1].to(act.dtype)
        return act + _mask(act, cfg.position, start) * (cfg.alpha - f_i) * row.to(act)

    return fsae.hook, clamp


def to_vector(
    handle: ModelHandle, fsae: FeatureSAE, cfg: FeatureSteerConfig
) -> tuple[vectors.VectorMeta, dict[str, Tensor]]:
    """Feature i's unit decoder direction as a steering vector file (residual-stream SAEs, "add" mode)."""
    if fsae.site.kind != "resid_post" or cfg.mode != "add":
        raise InputError(
            "steering vector files hold residual-stream additions: export needs a resid_post SAE and mode 'add' "
            f"(this is {fsae.site.kind}, mode {cfg.mode})"
        )
    vec = fsae.direction(cfg.feature).detach().float().cpu().contiguous()
    digest = hashlib.sha256(vec.numpy().tobytes()).hexdigest()[:16]
    facts = {k: int(getattr(handle.facts, k)) for k in ("n_layers", "n_heads", "d_head", "d_model")}
    meta = vectors.VectorMeta("contrastive", asdict(handle.identity), facts, (fsae.hook,), None, fsae.site.layer,
                              check_alpha(cfg.alpha), cfg.position, "mean",
                              f"sae:{fsae.name}:feature:{cfg.feature}:{digest}")  # fmt: skip
    return meta, {"vector": vec}


@dataclass(frozen=True)
class Cost:
    perplexity: float | None
    distinct_ratio: float | None
    unsteered_perplexity: float | None
    unsteered_distinct_ratio: float | None

    def to_json(self) -> dict[str, Any]:
        return {k: None if v is None else round(v, 4) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class FeatureSteering:
    sae: str
    feature: int
    alpha: float
    mode: str
    position: str
    unsteered: Generation
    steered: Generation
    effect: float
    cost: Cost

    def to_json(self) -> dict[str, Any]:
        return {"sae": self.sae, "feature": self.feature, "alpha": self.alpha, "mode": self.mode,
                "position": self.position, "unsteered": self.unsteered.to_json(), "steered": self.steered.to_json(),
                "effect": round(self.effect, 5), "cost": self.cost.to_json()}  # fmt: skip


def continuation_perplexity(handle: ModelHandle, prompt_ids: Tensor, continuation: tuple[int, ...],
                            hooks: Hooks = ()) -> float | None:  # fmt: skip
    """exp(mean NLL) of `continuation` after the prompt, under the model with `hooks` (none: unsteered)."""
    if not continuation:
        return None
    ids = torch.cat([prompt_ids[0].cpu(), torch.tensor(continuation, dtype=torch.long)])[None].to(
        handle.device
    )
    logp = handle.forward(ids, fwd_hooks=hooks)[0, :-1].float().log_softmax(-1)
    n = len(continuation)
    nll = -logp[-n:].gather(-1, ids[0, -n:, None]).mean()
    return float(math.exp(float(nll)))


def distinct_ratio(tokens: tuple[int, ...]) -> float | None:
    return len(set(tokens)) / len(tokens) if tokens else None


def feature_effect(
    handle: ModelHandle, fsae: FeatureSAE, cfg: FeatureSteerConfig, ids: Tensor, start: int
) -> float:
    """Mean over the steered positions of f_i after the intervention minus f_i without it (same tokens)."""
    i = fsae.check_feature(cfg.feature)
    _, clean = handle.run_with_cache(ids, [fsae.hook])
    _, steered = handle.run_with_cache(ids, [fsae.hook], fwd_hooks=[steer_hook(fsae, cfg, start)])
    lo = 0 if cfg.position == "all" else start
    with torch.inference_mode():
        f_clean = fsae.encode(clean[fsae.hook][0, lo:])[:, i]
        f_steer = fsae.encode(steered[fsae.hook][0, lo:])[:, i]
    return float((f_steer - f_clean).mean())


def steer(handle: ModelHandle, fsae: FeatureSAE, prompt: str, cfg: FeatureSteerConfig,
          gen: GenConfig = DEFAULT_GEN) -> FeatureSteering:  # fmt: skip
    fsae.check_feature(cfg.feature)
    ids = handle.tokenize(prompt)
    start = ids.shape[1] - 1
    plain = generate(handle, ids, gen)
    steered = generate(handle, ids, gen, lambda s: [steer_hook(fsae, cfg, s)])
    full = torch.cat([ids[0].cpu(), torch.tensor(steered.token_ids, dtype=torch.long)])[None]
    effect = feature_effect(handle, fsae, cfg, full.to(handle.device), start)
    cost = Cost(continuation_perplexity(handle, ids, steered.token_ids), distinct_ratio(steered.token_ids),
                continuation_perplexity(handle, ids, plain.token_ids), distinct_ratio(plain.token_ids))  # fmt: skip
    return FeatureSteering(
        fsae.name, cfg.feature, cfg.alpha, cfg.mode, cfg.position, plain, steered, effect, cost
    )
