"""Steer by a feature: add its decoder direction as a steering vector, or clamp its activation to a value.

- mode "add": feature i's decoder row becomes a `steering.direction.SteeringVector` (method "feature") at the SAE's
  hook, made by `from_direction` with `reference_texts()`. α means what it means everywhere in steering: the hook
  adds α · r · d̂_i, with d̂_i the unit decoder row and r the mean activation norm at that hook over the reference
  texts (position 0 excluded) — α = 0.2 adds a fifth of a typical activation there, whatever the layer's scale.
  It is applied, compared and saved by steering's own code (`SteeringVector.hooks`, `comparison.side_by_side`,
  `vectors.vector_meta`), so a file written here and read back by `vectors.to_vector` (the steering tab's upload)
  steers exactly as this module does. Positions as in steering: "last" adds from the prompt's last token on
  (every generated token), "all" at every position.
- mode "clamp": x ← x + (c − f_i(x)) d_i, with d_i the (unnormalised) decoder row: the reconstruction has f_i = c
  while the SAE's error term and every other feature are kept. Not a vector (it depends on x), so no file.
- α = 0 in "add" mode attaches the hook and adds exactly zero: the run is bit-identical to the unsteered one.

Reported by `steering.side_by_side` (none / prompting / steering / both, with bootstrap intervals over prompts):
- the downstream effect: with held-out positive / negative texts, the change of their log-likelihood margin and the
  judge's share; always, the change of the mean next-token log-probability, at the prompt's last position, of the
  `PROMOTED_TOKENS` tokens the feature's decoder row promotes through the unembedding (its logit lens) — the
  headline `effect` when no texts are given;
- a check, not an effect: the feature's own activation at its hook, steered minus unsteered, over the steered
  positions of the first prompt and its steered continuation (`check_activation_change`): it shows the push
  happened, and says little about what the push does downstream;
- cost: perplexity of each continuation under the unsteered model, its ratio and the distinct-n ratios.
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
from headscope.codec import jfield
from headscope.errors import InputError
from headscope.features.saes import FeatureSAE
from headscope.models.handle import HookFn, ModelHandle
from headscope.progress import Progress
from headscope.steering import vectors
from headscope.steering.comparison import SideBySide, SideBySideConfig, check_prompts, side_by_side
from headscope.steering.direction import (
    DEFAULT_ALPHA,
    DEFAULT_POSITION,
    SteerConfig,
    SteeringVector,
    check_alpha,
    from_direction,
    readout_change,
    reference_texts,
)
from headscope.steering.generate import GenConfig, Generation, HookFactory
from headscope.steering.heldout import HeldOut
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


PROMOTED_TOKENS = 10  # the feature's top tokens by decoder row · W_U (its logit lens), read downstream


@dataclass(frozen=True)
class FeatureSteering(SideBySide):
    """`side_by_side` for a feature: the downstream effects (the held-out margin with texts, and the change of
    the next-token log-probabilities of the tokens the feature promotes) and, as a check that the intervention
    happened, the change of the feature's own activation at its hook."""

    sae: str
    feature: int
    alpha: float
    mode: str
    position: str
    promoted_tokens: tuple[str, ...]
    vector: dict[str, Any] | None  # mode "add": where the vector sits and how it is scaled
    added_norm: float | None  # mode "add": |α| · r
    check_activation_change: float = jfield(digits=5)
    steering_vector: SteeringVector | None = jfield(skip=True, default=None, compare=False)

    @property
    def config(self) -> FeatureSteerConfig:
        return FeatureSteerConfig(self.feature, self.alpha, self.mode, self.position)


def _continued(ids: Int[Tensor, "1 pos"], steered: Generation) -> Tensor:
    return torch.cat([ids[0].cpu(), torch.tensor(steered.token_ids, dtype=torch.long)])[None]


def promoted_tokens(
    handle: ModelHandle, fsae: FeatureSAE, feature: int, top: int = PROMOTED_TOKENS
) -> list[int]:
    """The tokens feature i's decoder row promotes most through the unembedding (its logit lens)."""
    from headscope.features.index import logit_lens

    row = fsae.direction(fsae.check_feature(feature)).detach().float()[None]
    return [int(t) for t in logit_lens(handle, row, top)["pos_ids"][0]]


def _factory(fsae: FeatureSAE, cfg: FeatureSteerConfig, sv: SteeringVector | None) -> HookFactory:
    if sv is not None:
        return lambda start: sv.hooks(cfg.steer_config(), start)
    return lambda start: [clamp_hook(fsae, cfg.feature, cfg.alpha, cfg.position, start)]


def steer(
    handle: ModelHandle,
    fsae: FeatureSAE,
    prompts: str | Sequence[str],
    cfg: FeatureSteerConfig,
    gen: GenConfig = DEFAULT_GEN,
    *,
    sbs: SideBySideConfig | None = None,
    texts: HeldOut | None = None,
    progress: Progress | None = None,
) -> FeatureSteering:
    """None / prompting (with an instruction in `sbs`) / steering by the feature, side by side; the downstream
    effects with their intervals, and the feature's own activation change as a check."""
    fsae.check_feature(cfg.feature)
    prompts = check_prompts([prompts] if isinstance(prompts, str) else prompts)
    sv = feature_vector(handle, fsae, cfg.feature) if cfg.mode == "add" else None
    factory, promoted = _factory(fsae, cfg, sv), promoted_tokens(handle, fsae, cfg.feature)
    res = side_by_side(handle, factory, prompts, sbs or SideBySideConfig(gen), texts=texts, promoted=promoted,
                       progress=progress)  # fmt: skip
    ids = handle.tokenize(res.prompt)
    start = ids.shape[1] - 1
    full = _continued(ids, res.steered).to(handle.device)
    lo = 0 if cfg.position == "all" else start
    check = readout_change(handle, fsae.hook, factory(start), full, lo, feature_readout(fsae, cfg.feature))
    info = None if sv is None else {k: v for k, v in sv.to_json().items()
                                    if k in ("method", "sites", "ref_norm", "natural_alpha", "data_hash")}  # fmt: skip
    added = None if info is None else round(abs(cfg.alpha) * info["ref_norm"], 4)
    return FeatureSteering(
        **res.parts(), sae=fsae.name, feature=cfg.feature, alpha=cfg.alpha, mode=cfg.mode, position=cfg.position,
        promoted_tokens=tuple(handle.str_tokens(promoted)), vector=info, added_norm=added,
        check_activation_change=check, steering_vector=sv,
    )  # fmt: skip
