"""Attribution of an output to SAE features (papers.md §9.6): activation × gradient, checked by real ablation.

With x the activation at the SAE's hook, f_{p,i} feature i's activation at position p and d_i its (effective)
decoder row, removing feature i everywhere moves x_p by −f_{p,i} d_i, so the first-order change of the metric m is
−Σ_p f_{p,i} (d_i · ∂m/∂x_p). We report attr_i = Σ_p f_{p,i} (d_i · ∂m/∂x_p): the expected drop of m when the
feature is removed. One forward and one backward pass give it for every feature.

m is the logit of a target token at the last position, or the difference of two tokens' logits.

Real ablation (the check): x = x̂ + err with err fixed, f_i set to 0 in x̂ (at every position ≥ 1), the forward
finished, drop_i = m(clean) − m(ablated). Because the decoder is affine, that is exactly x − Σ f_{p,i} d_i at the
hook. Position 0 (the attention sink) is never attributed or ablated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from headscope import checks
from headscope.codec import JsonCodec, jfield
from headscope.errors import InputError
from headscope.features.saes import FeatureSAE
from headscope.models.handle import HookFn, ModelHandle, graph_node
from headscope.steering.contrastive import first_token

MAX_TOP = 200


@dataclass(frozen=True)
class Metric:
    """logit[target] (− logit[contrast]) at the last position."""

    target: int
    contrast: int | None = None

    def __call__(self, logits: Float[Tensor, "batch pos d_vocab"]) -> Tensor:
        last = logits[0, -1].float()
        return last[self.target] - (last[self.contrast] if self.contrast is not None else 0.0)

    def describe(self, handle: ModelHandle) -> str:
        t = repr(handle.decode([self.target]))
        return f"logit[{t}]" + (
            "" if self.contrast is None else f" − logit[{handle.decode([self.contrast])!r}]"
        )


def metric_for(handle: ModelHandle, target: str, contrast: str | None = None) -> Metric:
    """A metric from token texts (the first token of each, as the model tokenises it)."""
    return Metric(first_token(handle, target), None if contrast is None else first_token(handle, contrast))


@dataclass(frozen=True)
class FeatureAttribution(JsonCodec):
    feature: int
    attribution: float = jfield(digits=6)  # expected drop of the metric when the feature is removed
    activation: float = jfield(digits=5)  # Σ_p f_{p,i}
    top_position: int = jfield()  # the position contributing most


@dataclass(frozen=True)
class Attribution(JsonCodec):
    sae: str
    metric: str
    value: float = jfield(digits=5)  # the metric on the clean run
    tokens: tuple[str, ...] = jfield()
    features: tuple[FeatureAttribution, ...] = jfield()  # by |attribution|, largest first


def _codes_and_grad(
    handle: ModelHandle, fsae: FeatureSAE, ids: Tensor, metric: Metric
) -> tuple[Tensor, Tensor, float]:
    """(f [pos, latent], ∂m/∂x [pos, d_model], m) from one forward + backward pass."""
    seen: dict[str, Tensor] = {}

    def keep(act: Tensor, hook: Any) -> Tensor:
        node = graph_node(act)
        seen["x"] = node
        return node

    logits = handle.run(ids, fwd_hooks=[(fsae.hook, keep)], grad=True)
    m = metric(logits)
    (grad,) = torch.autograd.grad(m, seen["x"])
    with torch.no_grad():
        f = fsae.encode(seen["x"][0].detach())
    return f, grad[0].float(), float(m.detach())


def attribute(
    handle: ModelHandle, fsae: FeatureSAE, prompt: str, metric: Metric, top: int = 20
) -> Attribution:
    top = checks.integer(top, "top", 1, MAX_TOP)
    ids = handle.tokenize(prompt)
    f, grad, value = _codes_and_grad(handle, fsae, ids, metric)
    f[0] = 0.0  # position 0 is not attributed
    per_pos = f.float() * (grad @ fsae.decoder_rows.T)  # [pos, latent]: f_{p,i} (d_i · ∂m/∂x_p)
    total = per_pos.sum(0)
    active = f.sum(0)
    live = (active > 0).nonzero().flatten()
    order = live[total[live].abs().argsort(descending=True)][:top]
    rows = tuple(
        FeatureAttribution(int(i), float(total[i]), float(active[i]), int(per_pos[:, i].abs().argmax()))
        for i in order.tolist()
    )
    return Attribution(fsae.name, metric.describe(handle), value, tuple(handle.str_tokens(ids)), rows)


def ablate_hook(fsae: FeatureSAE, features: list[int]) -> tuple[str, HookFn]:
    """x̂ + err with the given features set to 0 in x̂ at positions ≥ 1, err fixed: x − Σ_i f_i d_i."""
    rows = fsae.decoder_rows[features]

    def hook(act: Tensor, hook: Any) -> Tensor:
        f = fsae.encode(act[:, 1:])[..., features].to(act.dtype)
        out = act.clone()
        out[:, 1:] = act[:, 1:] - f @ rows.to(act)
        return out

    return fsae.hook, hook


def ablation_drops(
    handle: ModelHandle, fsae: FeatureSAE, prompt: str, metric: Metric, features: list[int]
) -> list[float]:
    """The real drop m(clean) − m(feature i ablated), one forward pass per feature."""
    ids = handle.tokenize(prompt)
    clean = float(metric(handle.forward(ids)))
    return [clean - float(metric(handle.forward(ids, fwd_hooks=[ablate_hook(fsae, [i])]))) for i in features]


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    if len(a) != len(b) or len(a) < 2:
        raise InputError("spearman needs two lists of the same length ≥ 2")

    def ranks(v: list[float]) -> Tensor:
        t = torch.tensor(v, dtype=torch.float64)
        r = torch.empty_like(t)
        r[t.argsort()] = torch.arange(len(v), dtype=torch.float64)
        for x in set(v):  # ties share their mean rank
            same = t == x
            r[same] = r[same].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = (ra.norm() * rb.norm()).item()
    return float((ra @ rb).item() / denom) if denom > 0 else float("nan")


@dataclass(frozen=True)
class AttributionCheck(JsonCodec):
    features: tuple[int, ...]
    estimated: tuple[float, ...] = jfield(digits=6)
    ablated: tuple[float, ...] = jfield(digits=6)
    sign_agreement: float = jfield(digits=4)
    spearman: float = jfield(digits=4)


def check(handle: ModelHandle, fsae: FeatureSAE, prompt: str, metric: Metric, result: Attribution,
          n: int = 20) -> AttributionCheck:  # fmt: skip
    """Compare the top-n estimates with real ablations: sign agreement and Spearman correlation."""
    rows = result.features[:n]
    if len(rows) < 2:
        raise InputError("fewer than two active features to check")
    feats = [r.feature for r in rows]
    est = [r.attribution for r in rows]
    real = ablation_drops(handle, fsae, prompt, metric, feats)
    # Signs are compared with a tolerance: a feature whose removal moves the metric by under 0.1 % of the largest
    # real effect has no meaningful sign, and agrees with an estimate as small.
    tol = 1e-3 * max(abs(r) for r in real)

    def sign(x: float) -> int:
        return 0 if abs(x) <= tol else (1 if x > 0 else -1)

    agree = sum(sign(e) == sign(r) for e, r in zip(est, real, strict=True)) / len(rows)
    return AttributionCheck(tuple(feats), tuple(est), tuple(real), agree, spearman(est, real))
