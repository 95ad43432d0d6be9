"""LoFiT on a tiny model: a head made decisive by construction must rank first; training lowers the loss."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from headscope.errors import InputError
from headscope.models import ModelHandle
from headscope.selection import HeadSet
from headscope.steering.lofit import (
    HeadOffsets,
    LofitConfig,
    LofitResult,
    default_k,
    lofit,
    random_heads,
    rank_heads,
    train_biases,
    train_scales,
)
from headscope.steering.scoring import evaluate
from headscope.steering.tasks import Pair, TaskData

pytestmark = pytest.mark.usefixtures("one_thread")

DECISIVE = (1, 2)


@pytest.fixture(scope="module")
def one_head_model() -> ModelHandle:
    """A fresh tiny Llama whose attention output projections are zero except for head DECISIVE's columns:
    scaling or shifting any other head's z cannot change the output."""
    handle = ModelHandle.load("tiny-llama", device="cpu")
    d = handle.facts.d_head
    with torch.no_grad():
        for layer, block in enumerate(handle.hf_model.model.layers):
            w = block.self_attn.o_proj.weight
            keep = w[:, DECISIVE[1] * d : (DECISIVE[1] + 1) * d].clone()
            w.zero_()
            if layer == DECISIVE[0]:
                w[:, DECISIVE[1] * d : (DECISIVE[1] + 1) * d] = keep
    return handle


def _task() -> TaskData:
    words = ["apple", "river", "stone", "cloud", "music", "paper", "light", "green", "house", "table"]
    pairs = tuple(Pair(f"{w} is", " z") for w in words)
    return TaskData("const", "always z", pairs[:7], pairs[7:])


def test_decisive_head_ranks_first_and_training_lowers_loss(one_head_model: ModelHandle) -> None:
    cfg = LofitConfig(k=1, scale_steps=12, bias_steps=12, batch_size=4, scale_lr=5e-2, bias_lr=0.1, l1=1e-2)
    scales, scale_losses = train_scales(one_head_model, _task().train, cfg)
    ranking = rank_heads(scales)
    assert ranking[0][0] == DECISIVE
    assert ranking[0][1] > 3 * ranking[1][1]  # a clear winner, not a tie broken by luck
    assert scale_losses[-1] < scale_losses[0]
    biases, bias_losses = train_biases(one_head_model, _task().train, [DECISIVE], cfg)
    # a random tiny model caps what one head can do (≈5.1 nats from 5.5), but the drop must be clear
    assert bias_losses[-1] < bias_losses[0] - 0.2
    assert biases.shape == (1, one_head_model.facts.d_head)


def test_restriction_scales_and_ranks_only_the_selection(one_head_model: ModelHandle) -> None:
    f = one_head_model.facts
    cfg = LofitConfig(k=1, scale_steps=12, batch_size=4, scale_lr=5e-2, l1=1e-2)
    with_it = HeadSet.parse("0.*, 1.2", f.n_layers, f.n_heads)
    scales, _ = train_scales(one_head_model, _task().train, replace(cfg, heads=with_it))
    outside = torch.from_numpy(~with_it.mask())
    assert torch.equal(scales[outside], torch.zeros_like(scales[outside]))  # never trained, exactly 0
    ranking = rank_heads(scales, with_it)
    assert ranking[0][0] == DECISIVE and {h for h, _ in ranking} == set(with_it)
    without = HeadSet.parse("0.*, 1.0, 1.1", f.n_layers, f.n_heads)
    scales, _ = train_scales(one_head_model, _task().train, replace(cfg, heads=without))
    assert scales[DECISIVE].abs().sum() == 0 and DECISIVE not in {h for h, _ in rank_heads(scales, without)}


def test_restricted_run_picks_within_the_selection_and_counts_parameters(tiny_llama: ModelHandle) -> None:
    f = tiny_llama.facts
    sel = tiny_llama.head_set("1.1, 1.3, 0.0")
    res = lofit(tiny_llama, _task(), LofitConfig(k=2, scale_steps=2, bias_steps=2, batch_size=4, heads=sel,
                                                 random_sets=0, eval_prompts=1, eval_tokens=1))  # fmt: skip
    assert set(res.trained_offsets.heads) <= set(sel) and len(res.trained_offsets.heads) == 2
    assert res.step1_parameters == 3 * f.d_head and res.trainable_parameters == 2 * f.d_head
    js = res.to_json()
    assert js["restricted_to"] == "0.0, 1.1, 1.3"
    assert js["heads"] == str(HeadSet.of(res.trained_offsets.heads, f.n_layers, f.n_heads))
    grid = LofitResult.from_json(js).importance_grid()  # the app's ‖A‖ grid: ranked heads only, the rest None
    assert [(a, b) for a in range(2) for b in range(4) if grid[a][b] is not None] == [(0, 0), (1, 1), (1, 3)]
    assert {(a, b): grid[a][b] for (a, b), _ in res.head_ranking} == {
        h: round(v, 5) for h, v in res.head_ranking
    }
    assert LofitConfig(heads=sel).resolve_k(f.n_layers, f.n_heads) == 1  # 3 % of 8 heads, within 3
    with pytest.raises(InputError, match="at most 3, the selection's size"):
        LofitConfig(k=4, heads=sel).resolve_k(f.n_layers, f.n_heads)
    with pytest.raises(InputError, match="for a 30×9 model"):
        lofit(tiny_llama, _task(), LofitConfig(heads=HeadSet.parse("0.1", 30, 9)))


def test_full_run_reports_metrics_params_and_restores_flags(tiny_llama: ModelHandle) -> None:
    flags = [p.requires_grad for p in tiny_llama.hf_model.parameters()]
    cfg = LofitConfig(scale_steps=4, bias_steps=6, batch_size=4, bias_lr=5e-2, random_sets=3, eval_prompts=2,
                      eval_tokens=2, resamples=200)  # fmt: skip
    task = replace(_task(), instruction="Say z.")
    res = lofit(tiny_llama, task, cfg)
    assert [p.requires_grad for p in tiny_llama.hf_model.parameters()] == flags
    f = tiny_llama.facts
    offsets = res.trained_offsets
    assert len(offsets.heads) == default_k(f.n_layers, f.n_heads) == 1
    assert res.trainable_parameters == f.d_head and res.step1_parameters == f.n_layers * f.n_heads * f.d_head
    assert res.full_finetune_parameters == f.n_params
    # Oracles: re-evaluating with the returned offsets gives the reported "after" metrics; the prompting row is
    # the plain model on the instruction-prefixed items.
    again = evaluate(tiny_llama, task.heldout, fwd_hooks=offsets.hooks(f.n_heads))
    assert again.accuracy == res.heldout_after.accuracy
    assert again.mean_target_logprob == pytest.approx(res.heldout_after.mean_target_logprob, abs=1e-5)
    prompted = evaluate(tiny_llama, [Pair("Say z.\n" + p.prompt, p.target) for p in task.heldout])
    row = res.evaluation.evaluation.row("prompting").measures
    assert row["target_logprob"].value == pytest.approx(prompted.mean_target_logprob, abs=1e-5)
    assert res.evaluation.evaluation.n_items == len(task.heldout) == row["accuracy"].n
    js = res.to_json()
    assert js["selected_heads"][0]["layer"] == offsets.heads[0][0]
    assert res.heldout_after.mean_target_logprob > res.heldout_before.mean_target_logprob
    assert LofitResult.from_json(js).to_json() == js


def test_the_permutation_test_trains_each_random_set_like_lofit(tiny_llama: ModelHandle) -> None:
    """Each random set is the seeded draw, trained with step 2's budget; p and the percentile follow from the
    accuracies (recomputed here by training and scoring the first draw independently)."""
    cfg = LofitConfig(k=2, scale_steps=2, bias_steps=3, batch_size=4, random_sets=4, eval_prompts=1,
                      eval_tokens=1, resamples=100)  # fmt: skip
    res = lofit(tiny_llama, _task(), cfg)
    chance = res.chance
    assert (
        chance is not None
        and chance.random_sets == 4
        and chance.k == 2
        and len(chance.random_accuracies) == 4
    )
    f = tiny_llama.facts
    heads = random_heads(f.n_layers, f.n_heads, 2, cfg.seed)
    assert chance.random_heads[0] == str(HeadSet.of(heads, f.n_layers, f.n_heads))
    biases, _ = train_biases(tiny_llama, _task().train, heads, cfg)
    first = evaluate(
        tiny_llama, _task().heldout, fwd_hooks=HeadOffsets(tuple(heads), biases).hooks(f.n_heads)
    )
    assert chance.random_accuracies[0] == pytest.approx(first.accuracy, abs=1e-4)
    selected = res.heldout_after.accuracy
    assert chance.selected.value == pytest.approx(selected, abs=1e-4)
    at_least = sum(a >= chance.selected.value for a in chance.random_accuracies)
    assert chance.p_value == pytest.approx((1 + at_least) / 5, abs=1e-4)
    assert res.verdict == chance.verdict and ("p = " in res.verdict)
    assert res.to_json()["chance"]["budget"]["bias_steps"] == 3


def test_seeded_runs_are_identical(tiny_llama: ModelHandle) -> None:
    cfg = LofitConfig(
        k=2, scale_steps=2, bias_steps=2, batch_size=3, random_sets=0, eval_prompts=1, eval_tokens=1
    )
    a, b = lofit(tiny_llama, _task(), cfg), lofit(tiny_llama, _task(), cfg)
    assert a.heads == b.heads and torch.equal(a.trained_offsets.biases, b.trained_offsets.biases)
    assert a.to_json() == {**b.to_json(), "seconds": a.to_json()["seconds"]}


def test_random_heads_are_distinct_and_seeded() -> None:
    heads = random_heads(30, 9, 8, seed=3)
    assert len(set(heads)) == 8 and heads == random_heads(30, 9, 8, seed=3)
    assert all(0 <= layer < 30 and 0 <= h < 9 for layer, h in heads)


def test_k_larger_than_head_count_is_refused(tiny_llama: ModelHandle) -> None:
    with pytest.raises(InputError, match="at most 8"):
        lofit(tiny_llama, _task(), LofitConfig(k=9, scale_steps=1, bias_steps=1))


def test_stages_are_reported_and_a_raising_callback_stops_training_cleanly(tiny_llama: ModelHandle) -> None:
    """The app cancels a job by raising from its progress callback: training stops there, no hook stays attached."""
    tokens = tiny_llama.tokenize("apple is")
    base = tiny_llama.forward(tokens)
    stages: list[str] = []
    steps: list[tuple[str, int]] = []

    def progress(stage: str, fraction: float) -> None:
        if " step " not in stage:
            stages.append(stage)
            return
        phase, count = stage.split(" step ")
        steps.append((phase, int(count.split("/")[0])))
        if phase == "biases" and count.startswith("2/"):
            raise KeyboardInterrupt("cancelled")

    cfg = LofitConfig(
        k=1, scale_steps=2, bias_steps=5, batch_size=4, random_sets=2, eval_prompts=1, eval_tokens=1
    )
    with pytest.raises(KeyboardInterrupt):
        lofit(tiny_llama, _task(), cfg, progress)
    assert stages == []
    assert steps == [("scales", 1), ("scales", 2), ("biases", 1), ("biases", 2)]
    assert torch.equal(tiny_llama.forward(tokens), base)
    done: list[tuple[str, float]] = []
    lofit(tiny_llama, _task(), replace(cfg, bias_steps=1), lambda s, f: done.append((s, f)))
    named = [s for s, _ in done if " step " not in s]
    assert named[0] == "held-out evaluation: prompt 1/1, none: token 1/1"
    assert named[-2:] == ["held-out accuracy, random heads 1/2", "held-out accuracy, random heads 2/2"]
    assert [s.split(" (")[0] for s, _ in done if s.startswith("random heads")] == [
        "random heads 1/2 step 1/1",
        "random heads 2/2 step 1/1",
    ]
    fractions = [f for _, f in done]
    assert fractions == sorted(fractions) and fractions[0] > 0.0 and fractions[-1] < 1.0
