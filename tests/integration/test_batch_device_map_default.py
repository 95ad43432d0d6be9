"""The default model (SmolLM2-135M) with its last blocks offloaded to disk gives the single-device answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from headscope.models import ModelHandle, hooks
from headscope.models.device_map import DeviceMapSpec

pytestmark = [pytest.mark.default_model, pytest.mark.usefixtures("one_thread")]


def test_default_model_with_disk_offload_matches(default_model: Any, tmp_path: Path) -> None:
    plain = default_model
    sizes = [sum(p.numel() * 4 for p in b.original_component.parameters()) for b in plain.bridge.blocks]
    rest = sum(p.numel() * 4 for p in plain.hf_model.parameters()) - sum(sizes)
    budget = rest + sum(sizes[:-4]) + 8  # the last four of 30 blocks do not fit: they wait on disk
    split = ModelHandle.load("smollm2-135m", device_map=DeviceMapSpec("auto", {"cpu": budget}, str(tmp_path)))
    assert split.placement.blocks[-5:] == ("cpu", "disk", "disk", "disk", "disk")
    tokens = plain.tokenize("The capital of France is Paris, and the capital of Italy is")
    names = [hooks.pattern(28), hooks.resid(29, "post")]
    logits_a, cache_a = plain.run_with_cache(tokens, names)
    logits_b, cache_b = split.run_with_cache(tokens, names)
    assert torch.equal(logits_a, logits_b) and all(torch.equal(cache_a[n], cache_b[n]) for n in names)
