"""Feature results put together and summarised as the app and the CLI show them: a text read through an SAE (its
top features per token and the SAE's reconstruction figures on it), a feature's page with the feature on a text,
attribution checked against real ablations (one result, one JSON), and the rows of the attribution table (the
estimate beside the real drop of each feature). Typed and JSON-round-tripping, so a job's payload, a session file
and a Ray run redraw the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from headscope.codec import JsonCodec
from headscope.features.attribution import Attribution, AttributionCheck, Metric, attribute, check
from headscope.features.evaluate import EvalConfig, Reconstruction, SaeEval, evaluate_heldout, evaluate_sae
from headscope.features.saes import FeatureSAE
from headscope.features.views import (
    FeaturePage,
    FiresOn,
    TopFeatures,
    feature_activations,
    feature_page,
    fires_on,
    reconstruction,
    top_features,
)
from headscope.models import ModelHandle
from headscope.progress import Progress


@dataclass(frozen=True)
class TextReport(JsonCodec):
    """A text read through an SAE: every token's top features and the SAE's figures on the text."""

    sae: str
    hook: str
    d_sae: int
    top: TopFeatures
    reconstruction: Reconstruction


def text_report(handle: ModelHandle, fsae: FeatureSAE, text: str, k: int) -> TextReport:
    top = top_features(handle, fsae, text, k)
    return TextReport(fsae.name, fsae.hook, fsae.d_sae, top, reconstruction(handle, fsae, text))


def evaluate_on(
    handle: ModelHandle,
    fsae: FeatureSAE,
    source: str,
    texts: Sequence[str] | None = None,
    cfg: EvalConfig | None = None,
    progress: Progress | None = None,
) -> SaeEval:
    """`features eval`: on the held-out set named `source` (texts None), or on `texts` reported as `source`."""
    cfg = cfg or EvalConfig()
    if texts is None:
        return evaluate_heldout(handle, [fsae], source, cfg=cfg, progress=progress)[0]
    return evaluate_sae(handle, fsae, list(texts), cfg=cfg, source=source, progress=progress)


@dataclass(frozen=True)
class FeatureOnText(JsonCodec):
    tokens: tuple[str, ...]
    token_ids: tuple[int, ...]
    activations: tuple[float, ...]


@dataclass(frozen=True)
class PageReport(JsonCodec):
    """A feature's page (precomputed dashboards) and, given a text, the feature's activation on each token."""

    page: FeaturePage
    on_text: FeatureOnText | None = None


def page_report(handle: ModelHandle, fsae: FeatureSAE, feature: int, text: str | None = None) -> PageReport:
    on_text = None
    if text is not None:
        tokens, acts = feature_activations(handle, fsae, text, feature)
        ids = handle.tokenize(text)[0].tolist()
        on_text = FeatureOnText(tuple(tokens), tuple(ids), tuple(float(a) for a in acts))
    return PageReport(feature_page(handle, fsae, feature), on_text)


@dataclass(frozen=True)
class CheckedAttribution(Attribution):
    """The attribution (its fields flat in the JSON) and, when asked for, the top features really ablated."""

    check: AttributionCheck | None = None
    fires_on: tuple[
        FiresOn, ...
    ] = ()  # what each listed feature fires on (its dashboard), where there is one


def attribute_checked(
    handle: ModelHandle,
    fsae: FeatureSAE,
    prompt: str,
    metric: Metric,
    top: int = 20,
    *,
    with_check: bool = True,
    progress: Progress | None = None,
) -> CheckedAttribution:
    """Activation × gradient for the top features, then (with_check) one real ablation each to compare."""
    report = progress or (lambda stage, fraction: None)
    report("activation × gradient (one forward and backward pass)", 0.05)
    result = attribute(handle, fsae, prompt, metric, top)
    checked = None
    if with_check:
        report(f"real ablation of the top {top} features (one forward pass each)", 0.3)
        checked = check(handle, fsae, prompt, metric, result, top)
    reads = fires_on(handle, fsae, sorted({f.feature for f in result.features}))
    return CheckedAttribution(
        **{k: getattr(result, k) for k in result.__dataclass_fields__}, check=checked, fires_on=reads
    )


@dataclass(frozen=True)
class AttributionRow:
    feature: int
    attribution: float  # the estimated drop of the metric when the feature is removed
    ablation: float | None  # the real drop when it is ablated (None: not checked)
    activation: float
    position: int  # the position contributing most
    token: str  # the token there


def attribution_rows(res: CheckedAttribution) -> list[AttributionRow]:
    real = dict(zip(res.check.features, res.check.ablated, strict=True)) if res.check else {}
    return [
        AttributionRow(
            f.feature,
            f.attribution,
            real.get(f.feature),
            f.activation,
            f.top_position,
            res.tokens[f.top_position],
        )
        for f in res.features
    ]
