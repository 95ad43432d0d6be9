"""Steering on the real default model (SmolLM2-135M). At the library defaults the built-in sentiment vector moves
the preference its way — on held-out texts, never used to build it — while the steered text stays fluent (the bar
of issue 13), checked against independent values; a short LoFiT run trains through the handle on a GQA model (9
query heads in hook_z, 3 KV heads)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from headscope.models import ModelHandle, hooks
from headscope.steering import vectors
from headscope.steering.comparison import SideBySideConfig
from headscope.steering.contrastive import ContrastiveConfig, compare_vector, contrastive_vector, preference
from headscope.steering.cost import MAX_PERPLEXITY_RATIO, MIN_DISTINCT_RATIO
from headscope.steering.direction import SteerConfig
from headscope.steering.generate import GenConfig
from headscope.steering.heldout import HeldOut
from headscope.steering.lofit import LofitConfig, lofit
from headscope.steering.tasks import TaskData, load_contrast, load_task

pytestmark = [pytest.mark.default_model, pytest.mark.usefixtures("one_thread")]


def test_defaults_move_the_target_and_stay_fluent(default_model: ModelHandle) -> None:
    cs = load_contrast("sentiment")
    sv = contrastive_vector(default_model, cs.positives, cs.negatives, ContrastiveConfig())
    assert sv.layer == 9 and sv.direction.shape == (576,)
    # Oracle for r: Hugging Face hidden states of the same module, read without any TransformerLens hook.
    norms = []
    for text in (*cs.positives, *cs.negatives):
        ids = default_model.tokenize(text)
        with torch.no_grad():
            h = default_model.hf_model(ids, output_hidden_states=True).hidden_states[10][0, 1:]
        norms.append(h.norm(dim=-1))
    assert float(sv.ref_norm) == pytest.approx(float(torch.cat(norms).mean()), rel=1e-4)
    assert 0.02 < sv.natural_alpha < 0.5  # position 0 left out: the contrast is a small share of the residual
    prompt = cs.prompts[0]
    texts = HeldOut(
        cs.heldout_positives, cs.heldout_negatives
    )  # 40 + 40 texts never used to build the vector
    res = compare_vector(
        default_model, sv, [prompt], SteerConfig(), SideBySideConfig(GenConfig(20)), texts=texts
    )
    effect = res.evaluation.row("steering").measures["margin_effect"]
    assert res.evaluation.held_out and res.effect is not None and res.effect > 1.0 and effect.low > 0.0
    assert (
        res.cost.perplexity_ratio <= MAX_PERPLEXITY_RATIO and res.cost.distinct_steered >= MIN_DISTINCT_RATIO
    )
    assert res.steered.token_ids != res.unsteered.token_ids
    down = preference(default_model, prompt, cs.positives, cs.negatives, sv.hooks(SteerConfig(-0.3), 0))
    assert down < preference(
        default_model, prompt, cs.positives, cs.negatives
    )  # the other sign, the other way


def test_resid_post_steering_equals_the_same_addition_at_the_next_resid_pre(
    default_model: ModelHandle,
) -> None:
    """The same intervention made at another hook site gives the same logits."""
    cs = load_contrast("sentiment")
    sv = contrastive_vector(default_model, cs.positives[:3], cs.negatives[:3], ContrastiveConfig(12))
    cfg = SteerConfig(0.3, "last")
    ids = default_model.tokenize(cs.prompts[1])
    start = ids.shape[1] - 1
    added = sv.added(cfg.alpha)

    def at_pre(act: torch.Tensor, hook: Any) -> torch.Tensor:
        out = act.clone()
        out[:, start:] += added
        return out

    got = default_model.forward(ids, fwd_hooks=sv.hooks(cfg, start))
    other = default_model.forward(ids, fwd_hooks=[(hooks.resid(13, "pre"), at_pre)])
    assert torch.allclose(got, other, atol=1e-4)
    assert math.isclose(float(added.norm()), 0.3 * float(sv.ref_norm), rel_tol=1e-5)


def test_short_lofit_runs_whole_and_restricted_and_files_round_trip(default_model: ModelHandle) -> None:
    full = load_task("antonyms")
    task = TaskData("antonyms", "", full.train[:16], full.heldout[:8])
    flags = [p.requires_grad for p in default_model.hf_model.parameters()]
    cfg = LofitConfig(
        scale_steps=3, bias_steps=3, batch_size=4, bias_lr=0.1, random_sets=0, eval_prompts=1, eval_tokens=1
    )
    res = lofit(default_model, task, cfg)
    assert [p.requires_grad for p in default_model.hf_model.parameters()] == flags
    assert len(res.trained_offsets.heads) == 8  # 3 % of 30 × 9 heads
    assert res.trainable_parameters == 8 * 64 and res.full_finetune_parameters > 100_000_000
    meta, tensors = vectors.from_bytes(
        vectors.to_bytes(*vectors.lofit_meta(default_model, res.trained_offsets, "h"))
    )
    assert meta.model["sha256"] == default_model.identity.sha256
    back = vectors.to_offsets(meta, tensors, default_model)
    order = [res.trained_offsets.heads.index(h) for h in back.heads]
    assert torch.equal(back.biases, res.trained_offsets.biases[order])
    sel = default_model.head_set("9.*, 12.1")
    small = LofitConfig(
        scale_steps=2, bias_steps=2, batch_size=4, random_sets=0, eval_prompts=1, eval_tokens=1, heads=sel
    )
    restricted = lofit(default_model, task, small)
    assert len(restricted.trained_offsets.heads) == 8 and set(restricted.trained_offsets.heads) <= set(sel)
    assert restricted.step1_parameters == 10 * 64
