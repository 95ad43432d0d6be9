"""SAE features on a tiny model with a tiny SAE trained by sae-lens in a fixture: oracles for every numeric view.

Each oracle recomputes the quantity another way: the splice against a run that writes the precomputed
reconstruction; feature activations against `sae.encode` on activations taken with `run_with_cache`; explained
variance with numpy; dashboards against a brute-force scan; attribution against real ablations.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from headscope.features import attribution as attr
from headscope.features import catalog, index, views
from headscope.features import steer as fsteer
from headscope.features.collect import capture, split_windows
from headscope.features.evaluate import evaluate, next_token_ce, splice_hook
from headscope.features.saes import FeatureSAE
from headscope.features.train import TrainConfig, train
from headscope.models import ModelHandle
from headscope.steering import vectors
from headscope.steering.generate import GenConfig, generate
from headscope.steering.hooks import resid_add_hook

TEXT = "The quick brown fox jumps over the lazy dog, and then the dog sleeps in the warm sun."
CTX = 64


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("hs_cache")
    before = os.environ.get("HEADSCOPE_CACHE")
    os.environ["HEADSCOPE_CACHE"] = str(root)
    yield root
    if before is None:
        os.environ.pop("HEADSCOPE_CACHE", None)
    else:
        os.environ["HEADSCOPE_CACHE"] = before


@pytest.fixture(scope="module")
def fsae(one_thread: None, cache: Path, tiny_llama: ModelHandle) -> FeatureSAE:
    cfg = TrainConfig("resid_post", 0, 96, "topk", k=8, tokens=24_000, batch_size=256, lr=1e-3, ctx=CTX,
                      eval_tokens=600, corpus="excerpt", dtype="float32")  # fmt: skip
    train(tiny_llama, cfg, catalog.user_root() / "tiny-llama" / "tiny-res0", name="tiny-res0")
    loaded = catalog.resolve(tiny_llama, "tiny-res0")
    index.build(tiny_llama, loaded, index.IndexConfig(tokens=2500, ctx=CTX, corpus="excerpt", contexts=5))
    return loaded


def test_card_has_the_training_and_eval_figures(fsae: FeatureSAE) -> None:
    card = fsae.card
    assert card["model"]["name"] == "tiny-llama" and card["hook"] == "blocks.0.hook_resid_post"
    assert card["tokens_seen"] == 24_000 // 256 * 256 and card["training_seconds"] > 0
    ev = card["eval"]
    assert ev["split"] == "test" and ev["tokens"] >= 600 and ev["l0"] == pytest.approx(8.0)
    assert 0 <= ev["dead_fraction"] <= 1 and ev["explained_variance"] is not None
    assert catalog.available("tiny-llama")[0].to_json()["has_dashboards"]


def test_splicing_reproduces_the_reconstruction_exactly(tiny_llama: ModelHandle, fsae: FeatureSAE) -> None:
    ids = tiny_llama.tokenize(TEXT)
    _, clean = tiny_llama.run_with_cache(ids, [fsae.hook])
    x = clean[fsae.hook]
    expected = x.clone()
    expected[:, 1:] = fsae.sae.decode(fsae.sae.encode(x[:, 1:]))
    logits, spliced = tiny_llama.run_with_cache(ids, [fsae.hook], fwd_hooks=[splice_hook(fsae)])
    assert torch.equal(spliced[fsae.hook], expected)
    written = tiny_llama.forward(ids, fwd_hooks=[(fsae.hook, lambda act, hook: expected)])
    assert torch.equal(logits, written)


def test_top_features_equal_sae_encode_on_independent_activations(
    tiny_llama: ModelHandle, fsae: FeatureSAE
) -> None:
    result = views.top_features(tiny_llama, fsae, TEXT, k=4)
    ids = tiny_llama.tokenize(TEXT)
    _, cache = tiny_llama.run_with_cache(ids, [fsae.hook])
    f = fsae.sae.encode(cache[fsae.hook][0])
    assert list(result.token_ids) == ids[0].tolist()
    for p, row in enumerate(result.top):
        want = sorted(((float(v), int(i)) for i, v in enumerate(f[p].tolist()) if v > 0), reverse=True)[:4]
        assert [i for _, i in want] == [i for i, _ in row]
        assert np.allclose([v for v, _ in want], [a for _, a in row], atol=1e-6)
    x = cache[fsae.hook][0, 1:].double().numpy()
    x_hat = fsae.sae.decode(f[1:]).double().numpy()
    ev = 1 - ((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
    assert result.explained_variance == pytest.approx(ev, abs=1e-9)


def test_top_json_contract(tiny_llama: ModelHandle, fsae: FeatureSAE) -> None:
    out = views.top_features(tiny_llama, fsae, TEXT, k=3).to_json()
    assert set(out) == {"tokens", "token_ids", "top", "explained_variance"}
    assert len(out["tokens"]) == len(out["token_ids"]) == len(out["top"])
    assert all(set(t) == {"feature", "activation"} for row in out["top"] for t in row)
    assert all(len(row) <= 3 for row in out["top"])


def test_evaluate_ce_matches_a_direct_recomputation(tiny_llama: ModelHandle, fsae: FeatureSAE) -> None:
    windows = split_windows(tiny_llama, "test", CTX, max_windows=3, corpus="excerpt")
    (r,) = evaluate(tiny_llama, [fsae], windows, batch_size=2)
    clean = next_token_ce(tiny_llama.forward(windows), windows).mean()
    spliced = next_token_ce(tiny_llama.forward(windows, fwd_hooks=[splice_hook(fsae)]), windows).mean()
    assert r.ce_loss_clean == pytest.approx(float(clean), rel=1e-5)
    assert r.ce_loss_with_sae == pytest.approx(float(spliced), rel=1e-5)
    assert r.tokens == 3 * (CTX - 1)


def test_capture_stops_early_but_matches_the_full_run(tiny_llama: ModelHandle, fsae: FeatureSAE) -> None:
    ids = tiny_llama.tokenize(TEXT)
    early = capture(tiny_llama, ids, [fsae.hook])[fsae.hook]
    _, full = tiny_llama.run_with_cache(ids, [fsae.hook])
    assert torch.equal(early, full[fsae.hook])


# -- dashboards ----------------------------------------------------------------------------------------------------
def _brute_force(tiny_llama: ModelHandle, fsae: FeatureSAE) -> torch.Tensor:
    d, _ = views.dashboards(fsae)
    windows = d["tokens"].long()
    f = torch.cat([fsae.sae.encode(capture(tiny_llama, windows[i : i + 4], [fsae.hook])[fsae.hook])
                   for i in range(0, windows.shape[0], 4)])  # fmt: skip
    f[:, 0] = 0
    return f  # [window, pos, latent]


def test_dashboards_match_a_brute_force_scan(tiny_llama: ModelHandle, fsae: FeatureSAE) -> None:
    d, header = views.dashboards(fsae)
    f = _brute_force(tiny_llama, fsae)
    per_window = f.max(1).values  # [window, latent]
    for i in range(0, fsae.d_sae, 7):
        want = per_window[:, i].sort(descending=True).values[:5]
        want = want[want > 0]
        got = d["top_values"][i, : len(want)].float()
        assert torch.allclose(got, want, rtol=1e-3, atol=1e-4)
        nz = f[..., i][f[..., i] > 0]
        assert int(d["hist_counts"][i].sum()) == nz.numel()
        assert float(d["frequency"][i]) == pytest.approx(nz.numel() / header["positions"])
        if len(want):
            w, p = int(d["top_windows"][i, 0]), int(d["top_positions"][i, 0])
            assert float(f[w, p, i]) == pytest.approx(float(want[0]), rel=1e-5)


def test_feature_page_contexts_and_logit_lens(tiny_llama: ModelHandle, fsae: FeatureSAE) -> None:
    feature = int(views.dashboards(fsae)[0]["frequency"].argmax())
    page = views.feature_page(tiny_llama, fsae, feature)
    assert page.contexts, "the most frequent feature has contexts"
    top = page.contexts[0]
    assert top.activations[top.focus] == pytest.approx(top.activation, rel=1e-2)
    assert max(top.activations) == pytest.approx(top.activation, rel=1e-2)
    logits = fsae.decoder_rows[feature] @ index.unembedding(tiny_llama)
    want = tiny_llama.str_tokens(logits.topk(10).indices.tolist())
    assert [t for t, _ in page.promoted] == want
    assert [t for t, _ in page.suppressed] == tiny_llama.str_tokens((-logits).topk(10).indices.tolist())
    assert sum(page.histogram[1]) > 0 and len(page.histogram[0]) == len(page.histogram[1]) + 1


# -- steering ------------------------------------------------------------------------------------------------------
def test_alpha_zero_with_the_hook_attached_is_bit_identical(
    tiny_llama: ModelHandle, fsae: FeatureSAE
) -> None:
    ids = tiny_llama.tokenize(TEXT)
    for position in ("last", "all"):
        hook = fsteer.steer_hook(fsae, fsteer.FeatureSteerConfig(5, 0.0, "add", position), ids.shape[1] - 1)
        assert torch.equal(tiny_llama.forward(ids, fwd_hooks=[hook]), tiny_llama.forward(ids))
    gen = GenConfig(max_new_tokens=6)
    cfg = fsteer.FeatureSteerConfig(5, 0.0)
    plain = generate(tiny_llama, ids, gen)
    steered = generate(tiny_llama, ids, gen, lambda s: [fsteer.steer_hook(fsae, cfg, s)])
    assert plain.token_ids == steered.token_ids and plain.probs == steered.probs


def test_vector_file_round_trip_steers_exactly_like_the_feature(
    tiny_llama: ModelHandle, fsae: FeatureSAE
) -> None:
    cfg = fsteer.FeatureSteerConfig(7, 3.5, "add", "last")
    meta, tensors = fsteer.to_vector(tiny_llama, fsae, cfg)
    cv, steer_cfg = vectors.to_contrastive(*vectors.from_bytes(vectors.to_bytes(meta, tensors)), tiny_llama)
    ids = tiny_llama.tokenize(TEXT)
    start = ids.shape[1] - 1
    ours = tiny_llama.forward(ids, fwd_hooks=[fsteer.steer_hook(fsae, cfg, start)])
    theirs = tiny_llama.forward(
        ids, fwd_hooks=[resid_add_hook(cv.layer, cv.vector, steer_cfg.alpha, "last", start)]
    )
    assert torch.allclose(ours, theirs, atol=1e-6)
    assert float(cv.vector.norm()) == pytest.approx(1.0, abs=1e-5)


def test_clamp_sets_the_feature_in_the_reconstruction(tiny_llama: ModelHandle, fsae: FeatureSAE) -> None:
    ids = tiny_llama.tokenize(TEXT)
    cfg = fsteer.FeatureSteerConfig(11, 0.5, "clamp", "all")
    _, clean = tiny_llama.run_with_cache(ids, [fsae.hook])
    _, clamped = tiny_llama.run_with_cache(ids, [fsae.hook], fwd_hooks=[fsteer.steer_hook(fsae, cfg, 0)])
    x = clean[fsae.hook]
    f = fsae.sae.encode(x)
    want = x + (0.5 - f[..., 11:12]) * fsae.decoder_rows[11]
    assert torch.allclose(clamped[fsae.hook], want, atol=1e-6)


def test_steer_result_contract_and_effect(tiny_llama: ModelHandle, fsae: FeatureSAE) -> None:
    out = fsteer.steer(
        tiny_llama, fsae, "The dog", fsteer.FeatureSteerConfig(3, 20.0), GenConfig(5)
    ).to_json()
    assert set(out["unsteered"]) == {"text", "token_ids"} and set(out["steered"]) == {"text", "token_ids"}
    assert out["effect"] != 0
    assert set(out["cost"]) == {
        "perplexity",
        "distinct_ratio",
        "unsteered_perplexity",
        "unsteered_distinct_ratio",
    }
    ids = tiny_llama.tokenize("The dog")
    ppl = fsteer.continuation_perplexity(tiny_llama, ids, tuple(out["steered"]["token_ids"]))
    assert out["cost"]["perplexity"] == pytest.approx(ppl, rel=1e-3)


# -- attribution ---------------------------------------------------------------------------------------------------
def test_attribution_agrees_with_real_ablations(tiny_llama: ModelHandle, fsae: FeatureSAE) -> None:
    prompt = "The quick brown fox jumps over the lazy dog and then it runs far away into the deep green woods"
    metric = attr.metric_for(tiny_llama, "e", "a")
    result = attr.attribute(tiny_llama, fsae, prompt, metric, top=20)
    assert len(result.features) == 20
    check = attr.check(tiny_llama, fsae, prompt, metric, result, 20)
    assert check.sign_agreement >= 0.9
    assert check.spearman >= 0.8


def test_spearman_matches_a_known_value() -> None:
    assert attr.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert attr.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert attr.spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)
