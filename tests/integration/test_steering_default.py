"""Steering on the real default model (SmolLM2-135M): a sentiment vector moves the preference its way, and a
short LoFiT run trains through the bridge on a GQA model (9 query heads in hook_z, 3 KV heads)."""

from __future__ import annotations

import pytest
import torch

from headscope.models import ModelHandle
from headscope.steering import vectors
from headscope.steering.contrastive import (
    ContrastiveConfig,
    SteerConfig,
    compare,
    contrastive_vector,
    preference,
)
from headscope.steering.generate import GenConfig
from headscope.steering.lofit import LofitConfig, lofit
from headscope.steering.tasks import TaskData, load_task

pytestmark = [pytest.mark.default_model, pytest.mark.usefixtures("one_thread")]


POS = ["I love it, this is wonderful and makes me so happy.", "What a great, beautiful, delightful day."]
NEG = ["I hate it, this is awful and makes me so sad.", "What a terrible, ugly, miserable day."]


def test_sentiment_vector_raises_the_positive_preference(default_model: ModelHandle) -> None:
    cv = contrastive_vector(default_model, POS, NEG, ContrastiveConfig(12))
    assert cv.vector.shape == (576,) and torch.isfinite(cv.vector).all()
    prompt = "I think the movie was"
    up = compare(default_model, cv, prompt, POS, NEG, SteerConfig(4.0, "all"), GenConfig(max_new_tokens=3))
    assert up.effect > 0 and up.steered != up.unsteered
    base = preference(default_model, prompt, POS, NEG)
    down = preference(default_model, prompt, POS, NEG, cv.hooks(SteerConfig(-4.0, "all"), 0))
    assert down < base  # the other sign pushes the other way


def test_short_lofit_run_trains_heads_and_files_round_trip(default_model: ModelHandle) -> None:
    full = load_task("antonyms")
    task = TaskData("antonyms", "", full.train[:16], full.heldout[:8])
    flags = [p.requires_grad for p in default_model.hf_model.parameters()]
    cfg = LofitConfig(scale_steps=3, bias_steps=3, batch_size=4, bias_lr=0.1, random_baseline=False)
    res = lofit(default_model, task, cfg)
    assert [p.requires_grad for p in default_model.hf_model.parameters()] == flags
    assert len(res.offsets.heads) == 8  # 3 % of 30 × 9 heads
    assert res.trainable_parameters == 8 * 64 and res.full_finetune_parameters > 100_000_000
    assert all(0 <= layer < 30 and 0 <= head < 9 for layer, head in res.offsets.heads)
    meta, tensors = vectors.from_bytes(vectors.to_bytes(*vectors.lofit_meta(default_model, res.offsets, "h")))
    assert meta.model["sha256"] == default_model.identity.sha256
    assert torch.equal(vectors.to_offsets(meta, tensors, default_model).biases, res.offsets.biases)
