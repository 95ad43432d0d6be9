"""Localist training: the penalty, the metrics, the corpus, and short real training runs on a tiny model."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from headscope.attention import LayerSchedule
from headscope.attention import row_entropy_bits as entropy_bits
from headscope.data import excerpt_articles
from headscope.errors import InputError
from headscope.localist.corpus import (
    EOT,
    encode_with_blocks,
    pack_windows,
    sentence_starts,
    split_articles,
    split_of,
    train_tokenizer,
)
from headscope.localist.train_objective import group_lasso_per_query, penalty, pointer_stats
from headscope.localist.training import Corpus, TrainConfig, loss_terms, train

pytestmark = pytest.mark.usefixtures("one_thread")


BLOCKS = torch.tensor([[0, 0, 1, 1, 1]])  # two sentences: tokens 0-1, tokens 2-4


def _rows(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)[None, None]  # [batch 1, head 1, q, k]


INSIDE = _rows(
    [[1, 0, 0, 0, 0], [0.5, 0.5, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0.5, 0.5, 0], [0, 0, 0.2, 0.3, 0.5]]
)
LEAKY = _rows(
    [
        [1, 0, 0, 0, 0],
        [0.5, 0.5, 0, 0, 0],
        [0.6, 0.2, 0.2, 0, 0],
        [0, 0, 0.5, 0.5, 0],
        [0.1, 0, 0.2, 0.2, 0.5],
    ]
)


def test_penalty_is_zero_inside_the_target_blocks() -> None:
    assert float(penalty(INSIDE, BLOCKS, "leakage")) == 0.0
    assert float(penalty(INSIDE, BLOCKS, "group_lasso")) == pytest.approx(0.0, abs=1e-9)


def test_penalty_is_positive_outside_and_equals_the_hand_computed_value() -> None:
    # informative queries: 2, 3, 4 (block 1); leakage = (0.8 + 0 + 0.1) / 3
    assert float(penalty(LEAKY, BLOCKS, "leakage")) == pytest.approx(0.9 / 3)
    # group lasso: √|G_0| · ‖a_{i,G_0}‖₂ with |G_0| = 2
    want = math.sqrt(2) * (math.hypot(0.6, 0.2) + 0.0 + math.hypot(0.1, 0.0)) / 3
    assert float(penalty(LEAKY, BLOCKS, "group_lasso")) == pytest.approx(want)
    assert float(group_lasso_per_query(LEAKY, BLOCKS)[0, 0, 0]) == pytest.approx(0.0, abs=1e-9)


def test_penalty_rejects_an_unknown_variant() -> None:
    with pytest.raises(InputError, match="penalty must be one of"):
        penalty(INSIDE, BLOCKS, "nope")


def test_entropy_bits_equals_an_independent_recomputation() -> None:
    torch.manual_seed(0)
    attn = torch.softmax(torch.randn(2, 3, 6, 6).masked_fill(torch.ones(6, 6).triu(1).bool(), -1e9), -1)
    got = entropy_bits(attn)
    for b, h, i in [(0, 0, 0), (1, 2, 5), (0, 1, 3)]:
        row = attn[b, h, i].tolist()
        want = -sum(p * math.log2(p) for p in row if p > 0)
        assert float(got[b, h, i]) == pytest.approx(want, abs=1e-5)


def test_pointer_fidelity_mass_and_hits() -> None:
    mass, hits, n = pointer_stats(LEAKY, BLOCKS)
    assert int(n) == 3
    assert float(mass) == pytest.approx(0.2 + 1.0 + 0.9)
    assert float(hits) == 2.0  # query 2's argmax (key 0) is outside its sentence


def test_layer_schedules() -> None:
    assert TrainConfig(lam=0.6).lambdas == (0.6, 0.6)
    prog = TrainConfig(lam=1.0, schedule="progressive", beta=3.0, n_layers=6).lambdas
    assert prog[0] == 0.0 and prog[-1] == 1.0 and prog[2] == pytest.approx((2 / 5) ** 3)
    assert prog == LayerSchedule("progressive", 3.0).lambdas(1.0, 6)
    with pytest.raises(InputError, match="schedule"):
        TrainConfig(schedule="zigzag")
    with pytest.raises(InputError, match="schedule must be one of uniform, progressive"):
        TrainConfig(schedule="explicit")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("lam", 1.5),
        ("lam", float("nan")),
        ("lam", "x"),
        ("beta", 0.5),
        ("schedule", "x"),
        ("n_heads", 3),
        ("steps", 0),
        ("steps", 3.5),
        ("steps", "many"),
        ("ctx", None),
        ("lr", float("inf")),
        ("seed", -1),
    ],
)
def test_config_validation_names_the_field(field: str, value: object) -> None:
    with pytest.raises(InputError, match=field if field != "n_heads" else "divisible"):
        TrainConfig(**{field: value})  # type: ignore[arg-type]


# -- corpus ------------------------------------------------------------------------------------------------------
def test_split_is_deterministic_and_disjoint() -> None:
    arts = excerpt_articles()
    parts = {s: {a.title for a in split_articles(s, arts)} for s in ("train", "validation", "test")}
    assert sum(len(p) for p in parts.values()) == len(arts)
    assert not (parts["train"] & parts["test"]) and not (parts["train"] & parts["validation"])
    assert split_of("Alan Turing") == split_of("Alan Turing")


def test_sentence_blocks_follow_sentence_boundaries() -> None:
    text = "Cats purr. Dogs bark loudly! Birds sing? Yes."
    assert sentence_starts(text) == [0, 11, 29, 41]


@pytest.fixture(scope="module")
def tiny_corpus() -> Corpus:
    arts = excerpt_articles()
    tok = train_tokenizer((a.text for a in arts[:30]), vocab_size=320)
    return Corpus(tok, pack_windows(tok, arts[:30], 32), pack_windows(tok, arts[30:], 32, max_windows=16))


def test_tokenizer_adds_no_bos_and_token_blocks_match_the_text(tiny_corpus: Corpus) -> None:
    tok = tiny_corpus.tokenizer
    text = "Cats purr. Dogs bark."
    ids, blocks = encode_with_blocks(tok, text)
    assert tok(text).input_ids == ids and tok.decode(ids) == text
    cut = next(i for i, b in enumerate(blocks) if b == 1)
    assert tok.decode(ids[:cut]).strip() == "Cats purr." and blocks == sorted(blocks) and blocks[-1] == 1
    assert tok.convert_tokens_to_ids(EOT) == tok.eos_token_id


def test_windows_have_per_window_blocks(tiny_corpus: Corpus) -> None:
    w = tiny_corpus.train
    assert w.ids.shape == w.blocks.shape and w.ids.shape[1] == 32
    assert (w.blocks[:, 0] == 0).all() and (w.blocks.diff(dim=1) >= 0).all()


# -- training ----------------------------------------------------------------------------------------------------
TINY = TrainConfig(
    n_layers=2, d_model=32, n_heads=2, d_mlp=64, vocab_size=320, ctx=32, batch_size=8, steps=60, lr=1e-2,
    warmup=5, save_every=10, eval_windows=16,
)  # fmt: skip


def test_short_training_run_lowers_the_loss(tiny_corpus: Corpus, tmp_path: Path) -> None:
    res = train(TINY, tmp_path / "run", progress=False, corpus=tiny_corpus)
    ce = [h[1] for h in res.loss_history]
    assert sum(ce[-5:]) / 5 < sum(ce[:5]) / 5 - 0.5
    assert (tmp_path / "run" / "metrics.json").is_file() and res.metrics.perplexity < math.exp(ce[0])


def test_large_lambda_gives_lower_entropy_and_higher_pointer_fidelity(
    tiny_corpus: Corpus, tmp_path: Path
) -> None:
    free = train(TINY, tmp_path / "l0", progress=False, corpus=tiny_corpus).metrics
    local = train(replace(TINY, lam=1.0), tmp_path / "l1", progress=False, corpus=tiny_corpus).metrics
    assert local.mean_entropy_bits < free.mean_entropy_bits
    assert local.pointer_fidelity > free.pointer_fidelity


def test_resumed_run_ends_identical_to_an_uninterrupted_one(tiny_corpus: Corpus, tmp_path: Path) -> None:
    cfg = replace(TINY, steps=20, lam=0.5)
    train(cfg, tmp_path / "a", progress=False, corpus=tiny_corpus)
    train(cfg, tmp_path / "b", progress=False, corpus=tiny_corpus, until=10)
    train(cfg, tmp_path / "b", progress=False, corpus=tiny_corpus)
    wa, wb = (
        load_file(str(tmp_path / "a" / "model.safetensors")),
        load_file(str(tmp_path / "b" / "model.safetensors")),
    )
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not list((tmp_path / "b").glob("*.bin")) and not list((tmp_path / "b").glob("*.pt"))
    with pytest.raises(InputError, match="another config"):
        train(replace(cfg, lam=0.1), tmp_path / "b", progress=False, corpus=tiny_corpus)


def test_loss_terms_regulariser_is_zero_at_lambda_zero(tiny_corpus: Corpus) -> None:
    from headscope.localist.training import build_model

    model = build_model(TINY, tiny_corpus.tokenizer)
    _, reg = loss_terms(model, tiny_corpus.train.slice(0, 4), TINY)
    _, reg1 = loss_terms(model, tiny_corpus.train.slice(0, 4), replace(TINY, lam=1.0))
    assert float(reg.detach()) == 0.0 and float(reg1.detach()) > 0.0


def test_paper_comparison_pairs_the_shipped_summary_with_the_paper() -> None:
    from headscope.localist.train_ship import paper_comparison

    t = {
        "summary": {"entropy_bits_lambda0": 2.5, "entropy_bits_lambda1": 0.75, "best_tradeoff_lambda": 0.6,
                    "entropy_falls_like_paper": True, "pointer_fidelity_rises": False},
        "paper": {"entropy_bits_lambda0": 5.36, "best_lambda": 0.6},
    }  # fmt: skip
    rows = {r["what"]: (r["ours"], r["paper"]) for r in paper_comparison(t)}
    assert rows == {
        "mean entropy at λ = 0 (bits)": (2.5, 5.36),
        "mean entropy at λ = 1 (bits)": (0.75, None),
        "best trade-off λ": (0.6, 0.6),
        "entropy falls as λ rises": ("yes", "yes"),
        "pointer fidelity rises with λ": ("no", "yes"),
    }
    assert {r["ours"] for r in paper_comparison(None)} == {None, "n/a"}
