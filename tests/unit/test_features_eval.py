"""`evaluate_sae` / `features eval` figures against independent recomputations on a tiny model and a tiny SAE.

The oracle runs every text alone, unpadded, with plain torch/numpy (no tally, no mask); the evaluation batches
texts of different lengths with right padding and masks. They must agree to float precision, which also proves
that padding never leaks into a counted position. Plus: ce_loss_score is withheld (null, with a reason) exactly
when the ablation moves CE by less than the threshold, and every figure survives the JSON codec.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from headscope.errors import InputError
from headscope.features import heldout, saes
from headscope.features.evaluate import (
    POSITION_0,
    EvalConfig,
    SaeEval,
    ablate_hook,
    evaluate_sae,
    next_token_ce,
    splice_hook,
)
from headscope.features.saes import FeatureSAE
from headscope.features.train import TrainConfig, train, with_checkpoints
from headscope.models import ModelHandle

pytestmark = pytest.mark.usefixtures("one_thread")
TEXTS = [
    "The quick brown fox jumps over the lazy dog, and then the dog sleeps in the warm sun all afternoon.",
    "Short one here.",
    "Rivers carry sediment to the sea; deltas grow where the current slows and the load settles out.",
]


@pytest.fixture(scope="module")
def fsae(tmp_path_factory: pytest.TempPathFactory, tiny_llama: ModelHandle) -> FeatureSAE:
    out = tmp_path_factory.mktemp("eval_sae") / "tiny"
    cfg = TrainConfig("resid_post", 1, 64, "topk", k=6, tokens=8192, batch_size=256, lr=2e-3, ctx=64,
                      eval_tokens=0, corpus="excerpt", dtype="float32")  # fmt: skip
    train(tiny_llama, cfg, out, name="tiny")
    return saes.load(tiny_llama, out)


def _oracle(handle: ModelHandle, fsae: FeatureSAE, texts: list[str], dense: float) -> dict[str, float]:
    """Every figure from each text alone: numpy EV over all rows, plain CE / KL sums, latent counts."""
    xs, x_hats, ce, ce_sae, ce_abl, kl, counts, n_pred = [], [], 0.0, 0.0, 0.0, 0.0, 0, 0
    for text in texts:
        ids = handle.tokenize(text)
        logits, cache = handle.run_with_cache(ids, [fsae.hook])
        x = cache[fsae.hook][0, 1:]
        f = fsae.sae.encode(x)
        xs.append(x.double().numpy())
        x_hats.append(fsae.sae.decode(f).double().numpy())
        counts = counts + (f > 0).long().sum(0)
        spliced = handle.forward(ids, fwd_hooks=[splice_hook(fsae)])
        ablated = handle.forward(ids, fwd_hooks=[ablate_hook(fsae.hook)])
        ce += float(next_token_ce(logits, ids).sum())
        ce_sae += float(next_token_ce(spliced, ids).sum())
        ce_abl += float(next_token_ce(ablated, ids).sum())
        p, q = logits[0, 1:-1].log_softmax(-1), spliced[0, 1:-1].log_softmax(-1)
        kl += float(torch.nn.functional.kl_div(q, p, log_target=True, reduction="sum"))
        n_pred += ids.shape[1] - 2
    x, x_hat = np.concatenate(xs), np.concatenate(x_hats)
    n = x.shape[0]
    return {
        "explained_variance": 1 - ((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum(),
        "l0": float(counts.sum()) / n, "dead_fraction": float((counts == 0).double().mean()),
        "dense_fraction": float((counts / n > dense).double().mean()), "tokens": n,
        "ce_loss_clean": ce / n_pred, "ce_loss_with_sae": ce_sae / n_pred, "ce_loss_ablated": ce_abl / n_pred,
        "kl_div": kl / n_pred, "predictions": n_pred,
    }  # fmt: skip


def test_batched_padded_figures_equal_the_per_text_oracle(tiny_llama: ModelHandle, fsae: FeatureSAE) -> None:
    cfg = EvalConfig(ctx=128, batch_size=3, dense_threshold=0.2)
    result = evaluate_sae(tiny_llama, fsae, TEXTS, cfg=cfg, source="three texts")
    want = _oracle(tiny_llama, fsae, TEXTS, 0.2)
    assert result.sequences == 3 and not result.truncated and result.position_0 == POSITION_0
    assert result.tokens == want["tokens"] and result.predictions == want["predictions"]
    for key in ("explained_variance", "l0", "dead_fraction", "dense_fraction", "ce_loss_clean", "ce_loss_with_sae",
                "ce_loss_ablated", "kl_div"):  # fmt: skip
        assert getattr(result, key) == pytest.approx(want[key], rel=1e-4, abs=1e-6), key
    assert result.kl_div > 0 and 0 < result.dense_fraction < 1


def test_long_text_is_cut_into_ctx_sequences_each_with_its_position_0(
    tiny_llama: ModelHandle, fsae: FeatureSAE
) -> None:
    text = " ".join(TEXTS * 2)
    n = tiny_llama.tokenize(text).shape[1]
    result = evaluate_sae(tiny_llama, fsae, [text], cfg=EvalConfig(ctx=64))
    chunks = [c for c in range(0, n, 64) if n - c >= 2]
    assert result.sequences == len(chunks) and result.tokens == n - len(chunks)
    capped = evaluate_sae(tiny_llama, fsae, [text], cfg=EvalConfig(ctx=16, max_tokens=40))
    assert capped.truncated and capped.sequences == 2 and capped.tokens == 30


def _eval(clean: float, sae: float, ablated: float, threshold: float = 0.5) -> SaeEval:
    return SaeEval("s", "h", "text", 1, 10, 9, 0.8, 3.0, 0.0, 0.0, clean, sae, ablated, 0.01,
                   min_ablation_nats=threshold)  # fmt: skip


def test_ce_loss_score_is_withheld_below_the_ablation_threshold() -> None:
    ok = _eval(3.0, 3.1, 3.51)
    assert ok.ce_loss_score == pytest.approx(0.41 / 0.51, abs=1e-5) and ok.ce_loss_score_note is None
    for weak in (_eval(3.0, 3.01, 3.49), _eval(3.0, 3.01, 2.5)):  # a small effect, or ablation helping
        out = weak.to_json()
        assert out["ce_loss_score"] is None and "moves CE by" in out["ce_loss_score_note"]
        assert out["ablation_effect"] == pytest.approx(weak.ce_loss_ablated - 3.0, abs=1e-9)


def test_tiny_model_reports_the_score_only_where_ablation_moves_ce_enough(
    tiny_llama: ModelHandle, fsae: FeatureSAE
) -> None:
    r = evaluate_sae(tiny_llama, fsae, TEXTS, cfg=EvalConfig(min_ablation_nats=0.0))
    gap = r.ce_loss_ablated - r.ce_loss_clean
    if gap >= 0:
        assert r.ce_loss_score == pytest.approx((r.ce_loss_ablated - r.ce_loss_with_sae) / gap, abs=1e-5)
    else:  # on a random model, zeroing a layer can lower CE: the score is withheld
        assert r.ce_loss_score is None and f"{gap:.3f}" in (r.ce_loss_score_note or "")


def test_codec_round_trip_and_json_contract(tiny_llama: ModelHandle, fsae: FeatureSAE) -> None:
    out = evaluate_sae(tiny_llama, fsae, TEXTS[:1]).to_json()
    text = json.dumps(out, allow_nan=False)
    assert {"explained_variance", "l0", "dead_fraction", "dense_fraction", "ce_loss_score", "ce_loss_score_note",
            "kl_div", "position_0", "ablation_effect", "ce_increase"} <= set(out)  # fmt: skip
    assert SaeEval.from_json(json.loads(text)).to_json() == out


def test_nan_figures_of_an_empty_prediction_set_become_null() -> None:
    r = SaeEval("s", "h", "text", 1, 1, 0, math.nan, 1.0, 0.0, 0.0, math.nan, math.nan, math.nan, math.nan)
    out = r.to_json()
    assert out["ce_loss_score"] is None and "no next-token prediction" in out["ce_loss_score_note"]
    assert out["ce_increase"] is None and out["kl_div"] is None


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [({"ctx": 4}, "ctx"), ({"max_tokens": "x"}, "max_tokens"), ({"dense_threshold": 0}, "dense_threshold"),
     ({"min_ablation_nats": math.nan}, "min_ablation_nats"), ({"batch_size": 0}, "batch_size")],
)  # fmt: skip
def test_config_refuses_bad_values_and_stores_checked_ones(kwargs: dict, needle: str) -> None:
    with pytest.raises(InputError, match=needle):
        EvalConfig(**kwargs)
    cfg = EvalConfig(ctx="64", max_tokens=512.0)  # type: ignore[arg-type]
    assert (
        cfg.ctx == 64
        and isinstance(cfg.ctx, int)
        and cfg.max_tokens == 512
        and isinstance(cfg.max_tokens, int)
    )


def test_texts_of_a_jsonl_file_and_bad_lines() -> None:
    assert heldout.read_texts('{"text": "a b"}\n\n"c d"\n', jsonl=True) == ["a b", "c d"]
    assert heldout.read_texts("whole\n\nfile", jsonl=False) == ["whole\n\nfile"]
    with pytest.raises(InputError, match="line 2"):
        heldout.read_texts('"ok"\n{bad', jsonl=True)
    with pytest.raises(InputError, match="line 1"):
        heldout.read_texts('{"txt": 1}', jsonl=True)


def test_shipped_chat_set_renders_whole_conversations(tiny_llama: ModelHandle) -> None:
    convs = heldout.chat_conversations()
    assert len(convs) >= 15 and all(c[-1]["role"] == "assistant" and c[-1]["content"] for c in convs)
    seqs = heldout.chat(tiny_llama, 4096, 10**6)
    assert seqs.tokens.shape[0] == len(convs) and not seqs.truncated
    assert Path(heldout.assets.path("saes", heldout.CHAT_FILE)).is_file()


def test_checkpoints_fire_before_the_first_batch_past_each_point() -> None:
    seen: list[int] = []
    batches = (torch.zeros(4, 2) for _ in range(6))
    out = list(with_checkpoints(batches, [8, 3, 100], lambda sae, n: seen.append(n), sae=None))
    assert len(out) == 6 and seen == [4, 8]  # 3 → after the first batch (4 samples); 100 never reached


def test_curve_ends_with_the_shipped_file_and_agrees_with_the_card(
    tmp_path: Path, tiny_llama: ModelHandle
) -> None:
    cfg = TrainConfig("resid_post", 1, 48, "batchtopk", k=6, tokens=6144, batch_size=256, lr=2e-3, ctx=64,
                      eval_tokens=1024, corpus="excerpt", dtype="float32")  # fmt: skip
    card = train(tiny_llama, cfg, tmp_path / "c", name="c", curve=(2048, 4096)).card
    curve = card["curve"]
    assert [p["tokens"] for p in curve] == [2048, 4096, card["tokens_seen"]]
    assert all(p["l0"]["wiki-test"] > 0 for p in curve) and set(curve[0]["explained_variance"]) == {
        "wiki-test",
        "chat",
    }
    held = card["heldout"]
    # the last point (fp16-stored activations, no forward pass) and the card (live forward passes) are two routes
    # to the same figure on the same windows
    assert curve[-1]["explained_variance"]["wiki-test"] == pytest.approx(
        held["wiki-test"]["explained_variance"], abs=2e-3
    )
    assert curve[-1]["explained_variance"]["chat"] == pytest.approx(
        held["chat"]["explained_variance"], abs=1e-4
    )
    assert saes.load(tiny_llama, tmp_path / "c").architecture == "jumprelu"  # BatchTopK ships as JumpReLU
