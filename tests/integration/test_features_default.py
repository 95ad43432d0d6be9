"""The shipped SAEs on the real default model: the bar of their cards, the size budget, loading and oracles on the
model itself (top features vs `sae.encode`, α = 0, attribution against real ablations of the top 20 features)."""

from __future__ import annotations

import pytest
import torch

from headscope.features import attribution as attr
from headscope.features import catalog, views
from headscope.features import steer as fsteer
from headscope.features.saes import FeatureSAE
from headscope.models import ModelHandle

pytestmark = pytest.mark.default_model
MODEL = "smollm2-135m"
TEXT = "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France."


def shipped() -> list[catalog.SAEEntry]:
    return [e for e in catalog.available(MODEL) if e.shipped]


def test_shipped_saes_meet_the_bar_and_fit_the_budget() -> None:
    entries = shipped()
    kinds = {e.card["kind"] for e in entries}
    assert len([e for e in entries if e.card["kind"] == "resid_post"]) >= 2 and "attn_out" in kinds
    for e in entries:
        ev = e.card["eval"]
        # 25,400 test positions (200 windows): the evaluation costs 9 forwards per batch on 2 CPU cores.
        # The bar is what topk k=32 with 2,048 latents on 1.6M tokens reached: EV 0.68-0.81, CE score ≥ 0.9.
        assert ev["split"] == "test" and ev["tokens"] >= 25_000, e.name
        assert ev["explained_variance"] >= 0.65, (e.name, ev)
        assert ev["ce_loss_score"] >= 0.85, (e.name, ev)
        assert {"l0", "dead_fraction"} <= set(ev) and e.card["training_seconds"] > 0
        assert (e.folder / catalog.DASHBOARDS).is_file()
    total = sum(p.stat().st_size for p in catalog.shipped_root().rglob("*") if p.is_file())
    assert total <= 25 * 1024 * 1024, total


@pytest.fixture(scope="module")
def res(default_model: ModelHandle) -> FeatureSAE:
    entry = next(e for e in shipped() if e.card["kind"] == "resid_post" and e.card["layer"] == 15)
    return catalog.resolve(default_model, entry.name)


def test_every_shipped_sae_binds_to_the_default_model(default_model: ModelHandle) -> None:
    for e in shipped():
        fsae = catalog.resolve(default_model, e.name)
        assert fsae.d_in == default_model.facts.d_model and fsae.hook == e.card["hook"]


def test_top_features_equal_sae_encode(default_model: ModelHandle, res: FeatureSAE) -> None:
    fsae = res
    out = views.top_features(default_model, fsae, TEXT, k=5)
    _, cache = default_model.run_with_cache(default_model.tokenize(TEXT), [fsae.hook])
    f = fsae.sae.encode(cache[fsae.hook][0])
    for p, row in enumerate(out.top):
        vals, idx = f[p].topk(len(row))
        assert [i for i, _ in row] == idx.tolist()
        assert torch.allclose(torch.tensor([a for _, a in row]), vals, atol=1e-4)
    assert out.explained_variance is not None and out.explained_variance > 0.5


def test_alpha_zero_is_bit_identical_on_the_default_model(
    default_model: ModelHandle, res: FeatureSAE
) -> None:
    ids = default_model.tokenize(TEXT)
    sv = fsteer.feature_vector(default_model, res, 10)
    hooks = sv.hooks(fsteer.FeatureSteerConfig(10, 0.0, "add", "all").steer_config(), 0)
    assert torch.equal(default_model.forward(ids, fwd_hooks=hooks), default_model.forward(ids))


def test_feature_page_reads_the_shipped_dashboards(default_model: ModelHandle, res: FeatureSAE) -> None:
    d, _ = views.dashboards(res)
    feature = int(d["frequency"].argmax())
    page = views.feature_page(default_model, res, feature)
    assert page.contexts and page.promoted and page.suppressed
    assert all(isinstance(t, str) for c in page.contexts for t in c.tokens)


def test_attribution_agrees_with_real_ablation_of_the_top_20(
    default_model: ModelHandle, res: FeatureSAE
) -> None:
    prompt = "The Eiffel Tower is in the city of"
    metric = attr.metric_for(default_model, " Paris", " London")
    result = attr.attribute(default_model, res, prompt, metric, top=20)
    check = attr.check(default_model, res, prompt, metric, result, 20)
    assert len(check.features) == 20
    assert check.sign_agreement >= 0.9, check.to_json()
    assert check.spearman >= 0.8, check.to_json()
