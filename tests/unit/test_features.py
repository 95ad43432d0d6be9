"""SAE features on a tiny model with a tiny SAE trained by sae-lens in a fixture: oracles for every numeric view.

Each oracle recomputes the quantity another way: the splice against a run that writes the precomputed
reconstruction; feature activations against `sae.encode` on activations taken with `run_with_cache`; explained
variance with numpy; dashboards against a brute-force scan; attribution against real ablations.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from headscope.errors import InputError
from headscope.features import attribution as attr
from headscope.features import catalog, index, summary, views
from headscope.features import steer as fsteer
from headscope.features.collect import capture, split_windows
from headscope.features.evaluate import evaluate, evaluate_sae, next_token_ce, splice_hook
from headscope.features.saes import FeatureSAE
from headscope.features.train import TrainConfig, train
from headscope.models import ModelHandle
from headscope.steering import contrastive, vectors
from headscope.steering.comparison import SideBySideConfig
from headscope.steering.cost import continuation_logprobs
from headscope.steering.direction import DEFAULT_ALPHA, MAX_ALPHA, reference_texts
from headscope.steering.generate import GenConfig, generate
from headscope.steering.hooks import resid_add_hook

TEXT = "The quick brown fox jumps over the lazy dog, and then the dog sleeps in the warm sun."
CTX = 64


@pytest.fixture(scope="module")
def fsae(one_thread: None, module_cache: Path, tiny_llama: ModelHandle) -> FeatureSAE:
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
    assert set(card["heldout"]) == {"wiki-test", "chat"}
    for name, ev in card["heldout"].items():
        assert ev["source"] == name and ev["tokens"] >= 500 and ev["l0"] == pytest.approx(8.0)
        assert 0 <= ev["dead_fraction"] <= 1 and ev["explained_variance"] is not None
        assert ev["check"]["tokens"] <= ev["tokens"] and ev["position_0"].startswith("excluded")
    row = catalog.available("tiny-llama")[0].to_json()
    assert row["explained_variance"] == card["heldout"]["wiki-test"]["explained_variance"]
    assert row["explained_variance_chat"] == card["heldout"]["chat"]["explained_variance"]
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
    assert set(out) == {"tokens", "token_ids", "top", "explained_variance", "fires_on"}
    assert len(out["tokens"]) == len(out["token_ids"]) == len(out["top"])
    assert all(set(t) == {"feature", "activation"} for row in out["top"] for t in row)
    assert all(len(row) <= 3 for row in out["top"])


def test_each_listed_feature_reads_as_the_tokens_its_top_contexts_fire_on(
    tiny_llama: ModelHandle, fsae: FeatureSAE
) -> None:
    """`fires_on` against the feature pages: the marked (activating) token of each of the top 5 contexts."""
    result = views.top_features(tiny_llama, fsae, TEXT, k=3)
    listed = sorted({f for row in result.top for f, _ in row})
    assert [f.feature for f in result.fires_on] == listed and listed
    reads = {r.feature: r.tokens for r in result.fires_on}
    for f in listed:
        page = views.feature_page(tiny_llama, fsae, f)
        want = list(dict.fromkeys(c.tokens[c.focus] for c in page.contexts[: views.FIRES_ON_CONTEXTS]))
        assert list(reads[f]) == want
    assert any(f.tokens for f in result.fires_on)


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
def _ref_norm(handle: ModelHandle, hook: str) -> torch.Tensor:
    """Independent r: the mean activation norm at `hook` over the reference texts, position 0 left out."""
    norms = []
    for text in reference_texts():
        _, cache = handle.run_with_cache(handle.tokenize(text), [hook])
        norms.append(cache[hook][0, 1:].float().norm(dim=-1))
    return torch.cat(norms).mean()


def test_alpha_zero_with_the_hook_attached_is_bit_identical(
    tiny_llama: ModelHandle, fsae: FeatureSAE
) -> None:
    ids = tiny_llama.tokenize(TEXT)
    sv = fsteer.feature_vector(tiny_llama, fsae, 5)
    for position in ("last", "all"):
        cfg = fsteer.FeatureSteerConfig(5, 0.0, "add", position)
        hooks = sv.hooks(cfg.steer_config(), ids.shape[1] - 1)
        assert torch.equal(tiny_llama.forward(ids, fwd_hooks=hooks), tiny_llama.forward(ids))
    gen = GenConfig(max_new_tokens=6)
    zero = fsteer.FeatureSteerConfig(5, 0.0).steer_config()
    plain = generate(tiny_llama, ids, gen)
    steered = generate(tiny_llama, ids, gen, lambda s: sv.hooks(zero, s))
    assert plain.token_ids == steered.token_ids and plain.probs == steered.probs
    out = fsteer.steer(tiny_llama, fsae, "The dog", fsteer.FeatureSteerConfig(5, 0.0), GenConfig(4))
    assert out.steered == out.unsteered and out.effect == 0.0 and out.check_activation_change == 0.0


def test_add_is_alpha_times_the_activation_norm_along_the_unit_decoder_row(
    tiny_llama: ModelHandle, fsae: FeatureSAE
) -> None:
    sv = fsteer.feature_vector(tiny_llama, fsae, 7)
    r = _ref_norm(tiny_llama, fsae.hook)
    assert float(sv.ref_norm) == pytest.approx(float(r), rel=1e-5)
    assert sv.method == "feature" and sv.hook == fsae.hook and sv.source["feature"] == 7
    ids = tiny_llama.tokenize(TEXT)
    start = ids.shape[1] - 1
    cfg = fsteer.FeatureSteerConfig(7, 0.5, "add", "last")
    row = fsae.decoder_rows[7]
    oracle = resid_add_hook(0, 0.5 * r * row / row.norm(), 1.0, "last", start)  # the SAE reads resid_post@0
    got = tiny_llama.forward(ids, fwd_hooks=sv.hooks(cfg.steer_config(), start))
    assert torch.allclose(got, tiny_llama.forward(ids, fwd_hooks=[oracle]), atol=1e-5)


def test_vector_file_round_trip_steers_exactly_like_the_feature(
    tiny_llama: ModelHandle, fsae: FeatureSAE
) -> None:
    cfg = fsteer.FeatureSteerConfig(7, 0.35, "add", "last")
    sv = fsteer.feature_vector(tiny_llama, fsae, 7)
    meta, tensors = fsteer.vector_file(tiny_llama, sv, cfg)
    loaded, steer_cfg = vectors.to_vector(*vectors.from_bytes(vectors.to_bytes(meta, tensors)), tiny_llama)
    assert meta.method == "feature" and meta.source["sae"] == fsae.name and meta.source["feature"] == 7
    assert steer_cfg == cfg.steer_config() and meta.data_hash.startswith(f"sae:{fsae.name}:feature:7:")
    ids = tiny_llama.tokenize(TEXT)
    start = ids.shape[1] - 1
    ours = tiny_llama.forward(ids, fwd_hooks=sv.hooks(cfg.steer_config(), start))
    theirs = tiny_llama.forward(ids, fwd_hooks=loaded.hooks(steer_cfg, start))
    assert torch.equal(ours, theirs)
    gen = GenConfig(5)
    mine = fsteer.steer(tiny_llama, fsae, "The dog", cfg, gen)
    other = contrastive.compare_vector(tiny_llama, loaded, ["The dog"], steer_cfg, SideBySideConfig(gen))
    assert (mine.unsteered, mine.steered, mine.cost) == (other.unsteered, other.steered, other.cost)
    with pytest.raises(InputError, match="clamp"):
        fsteer.vector_file(tiny_llama, sv, fsteer.FeatureSteerConfig(7, 1.0, "clamp"))


def test_clamp_sets_the_feature_in_the_reconstruction(tiny_llama: ModelHandle, fsae: FeatureSAE) -> None:
    ids = tiny_llama.tokenize(TEXT)
    _, clean = tiny_llama.run_with_cache(ids, [fsae.hook])
    hook = fsteer.clamp_hook(fsae, 11, 0.5, "all", 0)
    _, clamped = tiny_llama.run_with_cache(ids, [fsae.hook], fwd_hooks=[hook])
    x = clean[fsae.hook]
    f = fsae.sae.encode(x)
    want = x + (0.5 - f[..., 11:12]) * fsae.decoder_rows[11]
    assert torch.allclose(clamped[fsae.hook], want, atol=1e-6)


def test_steer_result_contract_effect_check_and_cost(tiny_llama: ModelHandle, fsae: FeatureSAE) -> None:
    res = fsteer.steer(tiny_llama, fsae, "The dog", fsteer.FeatureSteerConfig(3, 2.0), GenConfig(5))
    out = res.to_json()
    assert set(out["steered"]) == {"text", "token_ids", "tokens", "probs"}
    assert set(out["cost"]) >= {"perplexity_steered", "perplexity_unsteered", "perplexity_ratio", "fluent"}
    assert out["vector"]["method"] == "feature" and out["added_norm"] == pytest.approx(
        2.0 * out["vector"]["ref_norm"], rel=1e-3
    )
    assert fsteer.FeatureSteering.from_json(out).to_json() == out
    ids = tiny_llama.tokenize("The dog")
    start = ids.shape[1] - 1
    row = fsae.decoder_rows[3]
    oracle = resid_add_hook(0, 2.0 * _ref_norm(tiny_llama, fsae.hook) * row / row.norm(), 1.0, "last", start)
    # the effect: next-token log-probs of the 10 tokens the decoder row promotes, with an independent addition
    promoted = (row @ index.unembedding(tiny_llama)).topk(10).indices
    assert list(res.promoted_tokens) == tiny_llama.str_tokens(promoted.tolist())

    def mean_logp(hooks: list) -> float:
        return float(tiny_llama.forward(ids, fwd_hooks=hooks)[0, -1].float().log_softmax(-1)[promoted].mean())

    assert res.effect_measure == "promoted_logprob_change" and res.effect is not None
    assert res.effect == pytest.approx(mean_logp([oracle]) - mean_logp([]), abs=2e-5) and res.effect > 0
    # the check: f_3 read by sae.encode with and without the addition, over the steered positions
    full = torch.cat([ids[0], torch.tensor(res.steered.token_ids)])[None]
    _, clean = tiny_llama.run_with_cache(full, [fsae.hook])
    _, steered = tiny_llama.run_with_cache(full, [fsae.hook], fwd_hooks=[oracle])
    want = (
        fsae.sae.encode(steered[fsae.hook][0, start:])[:, 3]
        - fsae.sae.encode(clean[fsae.hook][0, start:])[:, 3]
    ).mean()
    assert res.check_activation_change == pytest.approx(float(want), rel=1e-4, abs=1e-6)
    assert res.check_activation_change != 0
    # the cost is steering's, recomputed: the steered continuation read by the unsteered model
    lp = continuation_logprobs(tiny_llama, ids, res.steered.token_ids)
    assert res.cost.perplexity_steered == pytest.approx(math.exp(-sum(lp) / len(lp)), rel=1e-5)
    clamp = fsteer.steer(
        tiny_llama, fsae, "The dog", fsteer.FeatureSteerConfig(3, 4.0, "clamp"), GenConfig(3)
    )
    assert clamp.steering_vector is None and clamp.to_json()["vector"] is None
    assert math.isfinite(clamp.check_activation_change) and clamp.effect is not None


def test_feature_steering_with_held_out_texts_and_a_prompting_row(
    tiny_llama: ModelHandle, fsae: FeatureSAE
) -> None:
    """Several prompts, held-out texts and an instruction: the table none / prompting / steering / both."""
    from headscope.steering.heldout import HeldOut

    texts = HeldOut(("a good day", "nice and warm"), ("a bad day", "cold and wet"))
    sbs = SideBySideConfig(GenConfig(3), instruction="Be kind.", resamples=200)
    res = fsteer.steer(tiny_llama, fsae, ["The dog", "A cat"], fsteer.FeatureSteerConfig(3, 1.0), sbs=sbs,
                       texts=texts)  # fmt: skip
    ev = res.evaluation
    assert ev.conditions == ("none", "prompting", "steering", "steering + prompting")
    assert res.effect_measure == "margin_effect" and ev.held_out is True
    assert res.effect == pytest.approx(ev.row("steering").measures["margin_effect"].value, abs=1e-4)
    for row in ev.rows:
        assert {"margin", "margin_effect", "judged_positive", "promoted_logprob_change", "perplexity"} <= set(
            row.measures
        )


def test_alpha_range_is_steerings(tiny_llama: ModelHandle, fsae: FeatureSAE) -> None:
    assert fsteer.FeatureSteerConfig(1).alpha == DEFAULT_ALPHA
    for bad in (MAX_ALPHA + 1, float("nan"), "abc"):
        with pytest.raises(InputError, match="alpha"):
            fsteer.FeatureSteerConfig(1, bad)  # type: ignore[arg-type]
    assert fsteer.FeatureSteerConfig(1, 50.0, "clamp").alpha == 50.0


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


# -- summaries (what the app's Features tab and the CLI show) -------------------------------------------------------
def test_text_and_page_reports_are_their_parts_and_round_trip(
    tiny_llama: ModelHandle, fsae: FeatureSAE
) -> None:
    text = "The cat sat on the mat and looked at the dog."
    r = summary.text_report(tiny_llama, fsae, text, 3)
    assert r.top.to_json() == views.top_features(tiny_llama, fsae, text, 3).to_json()
    assert r.reconstruction.to_json() == views.reconstruction(tiny_llama, fsae, text).to_json()
    assert (r.sae, r.hook, r.d_sae) == (fsae.name, fsae.hook, fsae.d_sae)
    assert summary.TextReport.from_json(r.to_json()).to_json() == r.to_json()
    p = summary.page_report(tiny_llama, fsae, 5, text)
    tokens, acts = views.feature_activations(tiny_llama, fsae, text, 5)
    assert p.on_text is not None and list(p.on_text.activations) == acts and list(p.on_text.tokens) == tokens
    assert list(p.on_text.token_ids) == tiny_llama.tokenize(text)[0].tolist()
    assert p.page.to_json() == views.feature_page(tiny_llama, fsae, 5).to_json()
    assert summary.page_report(tiny_llama, fsae, 5).on_text is None
    assert summary.PageReport.from_json(p.to_json()).to_json() == p.to_json()
    on_text = summary.evaluate_on(tiny_llama, fsae, "text", [text])
    assert on_text.source == "text" and on_text.to_json() == evaluate_sae(tiny_llama, fsae, [text]).to_json()


def test_checked_attribution_joins_estimates_and_real_ablations(
    tiny_llama: ModelHandle, fsae: FeatureSAE
) -> None:
    prompt = "The quick brown fox jumps over the lazy dog and then it runs far away"
    metric = attr.metric_for(tiny_llama, "e", "a")
    stages: list[str] = []
    res = summary.attribute_checked(
        tiny_llama, fsae, prompt, metric, 8, progress=lambda s, f: stages.append(s)
    )
    plain = attr.attribute(tiny_llama, fsae, prompt, metric, 8)
    assert res.features == plain.features and res.check is not None and len(stages) == 2
    real = attr.ablation_drops(tiny_llama, fsae, prompt, metric, [f.feature for f in plain.features])
    rows = summary.attribution_rows(res)
    assert [r.feature for r in rows] == [f.feature for f in plain.features]
    assert [r.ablation for r in rows] == pytest.approx(real, abs=1e-5)
    assert all(r.token == plain.tokens[r.position] for r in rows)
    assert summary.CheckedAttribution.from_json(res.to_json()).to_json() == res.to_json()
    want = views.fires_on(tiny_llama, fsae, sorted({f.feature for f in plain.features}))
    assert res.fires_on == want and {r.feature for r in want} == {f.feature for f in plain.features}
    unchecked = summary.attribute_checked(tiny_llama, fsae, prompt, metric, 8, with_check=False)
    assert unchecked.check is None and all(r.ablation is None for r in summary.attribution_rows(unchecked))
