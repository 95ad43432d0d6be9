"""On a CUDA machine: a model split between GPU and CPU (and over two GPUs where there are two) gives the
single-device answer, through the handle's hooks (skipped without CUDA)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from headscope.models import ModelHandle, hooks
from headscope.models.device_map import DeviceMapSpec

pytestmark = pytest.mark.gpu
TEXT = "The cat sat on the mat. The cat sat on"


def _split(name: str, **budgets: int) -> Any:
    others = {f"cuda:{i}": 0 for i in range(1, torch.cuda.device_count())}  # only the GPUs the test names
    given = {k.replace("_", ":"): v for k, v in budgets.items()}
    return ModelHandle.load(name, device_map=DeviceMapSpec("auto", {**others, **given}))


def _sizes(handle: Any) -> tuple[list[int], int]:
    sizes = [sum(p.numel() * 4 for p in b.original_component.parameters()) for b in handle.bridge.blocks]
    return sizes, sum(p.numel() * 4 for p in handle.hf_model.parameters()) - sum(sizes)


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_gpu_plus_cpu_offload_equals_one_gpu(name: str) -> None:
    from headscope.attention import LocalityDial
    from headscope.probes import SweepConfig, eval_tokens, sweep_locality

    one = ModelHandle.load(name, device="cuda")
    sizes, rest = _sizes(one)
    split = _split(name, cuda_0=rest + sizes[0] + 8, cpu=2**34)  # block 1 waits in CPU memory
    assert split.placement.blocks == ("cuda:0", "cpu") and split.device.type == "cuda"
    tokens = one.tokenize(TEXT)
    names = [hooks.pattern(1), hooks.resid(1, "post")]
    logits_a, cache_a = one.run_with_cache(tokens, names)
    logits_b, cache_b = split.run_with_cache(tokens, names)
    torch.testing.assert_close(logits_a, logits_b, rtol=1e-5, atol=1e-5)
    for n in names:
        torch.testing.assert_close(cache_a[n], cache_b[n], rtol=1e-5, atol=1e-5)
    cfg = SweepConfig(lambdas=(0.0, 0.7), dial=LocalityDial(mode="distance"))
    rows = [
        sweep_locality(h, eval_tokens(h, TEXT, max_tokens=64)[0], cfg).to_json()["rows"] for h in (one, split)
    ]
    for a, b in zip(rows[0], rows[1], strict=True):
        assert a.keys() == b.keys() and all(abs(a[k] - b[k]) < 1e-4 for k in a if isinstance(a[k], float))


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_two_gpus_equal_one() -> None:
    one = ModelHandle.load("tiny-llama", device="cuda")
    sizes, rest = _sizes(one)
    split = _split("tiny-llama", cuda_0=rest + sizes[0] + 8, cuda_1=2**34)
    assert split.placement.blocks == ("cuda:0", "cuda:1")
    tokens = one.tokenize(TEXT)
    torch.testing.assert_close(one.forward(tokens), split.forward(tokens), rtol=1e-5, atol=1e-5)
