"""Steer by a feature: add its decoder direction as a steering vector, or clamp its activation to a value.

- mode "add": feature i's decoder row becomes a `steering.direction.SteeringVector` (method "feature") at the SAE's
  hook, made by `from_direction` with `reference_texts()`. α means what it means everywhere in steering: the hook
  adds α · r · d̂_i, with d̂_i the unit decoder row and r the mean activation norm at that hook over the reference
  texts (position 0 excluded) — α = 0.2 adds a fifth of a typical activation there, whatever the layer's scale.
  It is applied, costed and saved by steering's own code (`SteeringVector.hooks`, `contrastive.steer`,
  `cost.steering_cost`, `vectors.vector_meta`), so a file written here and read back by `vectors.to_vector` (the
  steering tab's upload) steers exactly as this module does. Positions as in steering: "last" adds from the
  prompt's last token on (every generated token), "all" at every position.
- mode "clamp": x ← x + (c − f_i(x)) d_i, with d_i the (unnormalised) decoder row: the reconstruction has f_i = c
  while the SAE's error term and every other feature are kept. Not a vector (it depends on x), so no file.
- α = 0 in "add" mode attaches the hook and adds exactly zero: the run is bit-identical to the unsteered one.

Reported next to the unsteered and steered generations:
- effect: on prompt + steered continuation, mean over the steered positions of f_i (the SAE encoder's reading at
  the hook) after the intervention, minus f_i on the same tokens without it (`direction.readout_effect` for "add");
- cost: steering's `Cost` — perplexity of each continuation under the unsteered model and their ratio, the
  distinct-token ratios, and whether it stays within steering's fluency bounds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from headscope import checks
from headscope.errors import InputError
from headscope.features.saes import FeatureSAE
from headscope.models.handle import HookFn, ModelHandle
from headscope.progress import Progress
from headscope.steering import contrastive, vectors
from headscope.steering.cost import Cost, steering_cost
from headscope.steering.direction import (
    DEFAULT_ALPHA,
    DEFAULT_POSITION,
    SteerConfig,
    SteeringVector,
    check_alpha,
    from_direction,
    readout_effect,
    reference_texts,
)
from headscope.steering.generate import GenConfig, Generation, generate
from headscope.steering.hooks import POSITIONS

MODES: tuple[str, ...] = ("add", "clamp")
MAX_CLAMP = 1e4
DEFAULT_GEN = GenConfig()


@dataclass(frozen=True)
class FeatureSteerConfig:
    feature: int
    alpha: float = DEFAULT_ALPHA  # "add": × the activation norm at the hook (|α| ≤ 10); "clamp": the value
    mode: str = "add"
    position: str = DEFAULT_POSITION

    def __post_init__(self) -> None:
        checks.choice(self.mode, "mode", MODES)
        checks.choice(self.position, "position", POSITIONS)
        if self.mode == "add":
            alpha = check_alpha(self.alpha)
        else:
            alpha = checks.number(self.alpha, "alpha (clamp value)", -MAX_CLAMP, MAX_CLAMP)
        object.__setattr__(self, "alpha", alpha)
        if isinstance(self.feature, bool) or not isinstance(self.feature, int) or self.feature < 0:
            raise InputError(f"feature must be an integer ≥ 0, got {self.feature!r}")

    def steer_config(self) -> SteerConfig:
        return SteerConfig(self.alpha, self.position)  # type: ignore[arg-type]  (checked above)


def feature_vector(
    handle: ModelHandle, fsae: FeatureSAE, feature: int, texts: Sequence[str] | None = None
) -> SteeringVector:
    """Feature i's decoder row as a steering vector at the SAE's hook, α relative to the activation norm there
    (over `texts`, by default steering's `reference_texts()`, so the same model and SAE always give the same r)."""
    i = fsae.check_feature(feature)
    direction = fsae.direction(i).detach().float()
    digest = hashlib.sha256(direction.cpu().contiguous().numpy().tobytes()).hexdigest()[:16]
    source = {"sae": fsae.name, "feature": i, "data_hash": f"sae:{fsae.name}:feature:{i}:{digest}"}
    texts = reference_texts() if texts is None else list(texts)
    return from_direction(handle, direction, fsae.hook, texts, method="feature", source=source)


def feature_readout(fsae: FeatureSAE, feature: int) -> Callable[[Tensor], Tensor]:
    """[pos, d_model] activations at the SAE's hook → feature i's activation [pos] (the SAE encoder)."""
    i = fsae.check_feature(feature)
    return lambda x: fsae.encode(x)[..., i].float()


def clamp_hook(fsae: FeatureSAE, feature: int, value: float, position: str, start: int) -> tuple[str, HookFn]:
    """x ← x + (value − f_i(x)) d_i at the SAE's hook, from `start` on (position "last") or everywhere."""
    i = fsae.check_feature(feature)
    row = fsae.decoder_rows[i]

    def clamp(act: Tensor, hook: Any) -> Tensor:
        mask = torch.zeros(act.shape[1], 1, dtype=act.dtype, device=act.device)
        mask[(0 if position == "all" else start) :] = 1.0
        f_i = fsae.encode(act)[..., i : i + 1].to(act.dtype)
        return act + mask * (value - f_i) * row.to(act)

    return fsae.hook, clamp


def vector_file(
    handle: ModelHandle, sv: SteeringVector, cfg: FeatureSteerConfig
) -> tuple[vectors.VectorMeta, dict[str, Tensor]]:
    """The feature's vector in steering's file format, with the α and positions it was used at."""
    if cfg.mode != "add":
        raise InputError(
            "only mode 'add' is a steering vector; a clamp depends on the activation, so has no file"
        )
    return vectors.vector_meta(handle, sv, cfg.steer_config())


@dataclass(frozen=True)
class FeatureSteering:
    sae: str
    config: FeatureSteerConfig
    unsteered: Generation
    steered: Generation
    effect: float
    cost: Cost
    vector: SteeringVector | None  # mode "add"

    def to_json(self) -> dict[str, Any]:
        c = self.config
        out: dict[str, Any] = {"sae": self.sae, "feature": c.feature, "alpha": c.alpha, "mode": c.mode,
                               "position": c.position, "unsteered": self.unsteered.to_json_full(),
                               "steered": self.steered.to_json_full(), "effect": round(self.effect, 5),
                               "cost": self.cost.to_json(),
                               # per steered token p(steered) − p(unsteered): the app shades by it, as steering's
                               "p_change": [round(x, 5) for x in self.cost.p_change]}  # fmt: skip
        if self.vector is not None:
            v = self.vector.to_json()
            out["vector"] = {k: v[k] for k in ("method", "sites", "ref_norm", "natural_alpha", "data_hash")}
            out["added_norm"] = round(abs(c.alpha) * v["ref_norm"], 4)
        return out


def _continued(ids: Int[Tensor, "1 pos"], steered: Generation) -> Tensor:
    return torch.cat([ids[0].cpu(), torch.tensor(steered.token_ids, dtype=torch.long)])[None]


def _clamp_effect(
    handle: ModelHandle, fsae: FeatureSAE, cfg: FeatureSteerConfig, ids: Tensor, start: int
) -> float:
    _, clean = handle.run_with_cache(ids, [fsae.hook])
    hook = clamp_hook(fsae, cfg.feature, cfg.alpha, cfg.position, start)
    _, clamped = handle.run_with_cache(ids, [fsae.hook], fwd_hooks=[hook])
    lo, read = 0 if cfg.position == "all" else start, feature_readout(fsae, cfg.feature)
    with torch.inference_mode():
        return float((read(clamped[fsae.hook][0, lo:]) - read(clean[fsae.hook][0, lo:])).mean())


def _clamp(handle: ModelHandle, fsae: FeatureSAE, prompt: str, cfg: FeatureSteerConfig,
           gen: GenConfig) -> tuple[Generation, Generation, Cost]:  # fmt: skip
    ids = handle.tokenize(prompt)
    start = ids.shape[1] - 1
    plain = generate(handle, ids, gen)
    steered = generate(
        handle, ids, gen, lambda s: [clamp_hook(fsae, cfg.feature, cfg.alpha, cfg.position, s)]
    )
    hook = clamp_hook(fsae, cfg.feature, cfg.alpha, cfg.position, start)
    return (
        plain,
        steered,
        steering_cost(handle, ids.to(handle.device), plain.token_ids, steered.token_ids, [hook]),
    )


def steer(handle: ModelHandle, fsae: FeatureSAE, prompt: str, cfg: FeatureSteerConfig,
          gen: GenConfig = DEFAULT_GEN, *, progress: Progress | None = None) -> FeatureSteering:  # fmt: skip
    """Unsteered vs steered generation of `prompt`, the change in the feature's activation, and the cost."""
    fsae.check_feature(cfg.feature)
    prompt = contrastive.check_prompt(prompt)
    ids = handle.tokenize(prompt)
    start = ids.shape[1] - 1
    if cfg.mode == "clamp":
        plain, steered, cost = _clamp(handle, fsae, prompt, cfg, gen)
        effect = _clamp_effect(handle, fsae, cfg, _continued(ids, steered).to(handle.device), start)
        return FeatureSteering(fsae.name, cfg, plain, steered, effect, cost, None)
    sv = feature_vector(handle, fsae, cfg.feature)
    plain, steered, cost = contrastive.steer(handle, sv, prompt, cfg.steer_config(), gen, progress=progress)
    full = _continued(ids, steered).to(handle.device)
    effect = readout_effect(handle, sv, cfg.steer_config(), full, start, feature_readout(fsae, cfg.feature))
    return FeatureSteering(fsae.name, cfg, plain, steered, effect, cost, sv)
