"""Patching against independent interventions, on both tiny architectures.

Oracle for activation patching: patching head h's z is the same as adding (z_corr,h − z_clean,h) W_O^h to the
attention output; we compute that delta from the HF module's own o_proj / c_proj weights and add it at a different
hook site (hook_attn_out). Oracle for attribution patching: a finite-difference directional derivative.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from headscope.circuits import patching
from headscope.circuits.tasks import custom_task
from headscope.models import ModelHandle

SPEC = {
    "name": "letters",
    "positive": [
        {"prompt": "abcabcab", "answer": "c", "wrong": "a"},
        {"prompt": "xyzxyzxy", "answer": "z", "wrong": "x"},
        {"prompt": "pqrpqrpq", "answer": "r", "wrong": "p"},
    ],
    "negative": [{"prompt": "abcdefgh"}, {"prompt": "xyzuvwst"}, {"prompt": "pqrstuvw"}],
}


def _w_o(handle: ModelHandle, layer: int, head: int) -> torch.Tensor:
    """W_O^h as [d_head, d_model], read from the HF module (not through TransformerLens)."""
    d = handle.facts.d_head
    hf = handle.hf_model
    if hasattr(hf, "transformer"):  # GPT-2 Conv1D: weight is [in, out]
        w = hf.transformer.h[layer].attn.c_proj.weight  # pyright: ignore[reportIndexIssue]
        return w[head * d : (head + 1) * d, :].detach()
    w = hf.model.layers[layer].self_attn.o_proj.weight  # Linear: [out, in]
    return w[:, head * d : (head + 1) * d].T.detach()


def _metric(handle: ModelHandle, prep: patching.Prepared, hooks: list[tuple[str, Any]]) -> float:
    logits = handle.forward(prep.clean.ids, fwd_hooks=hooks)
    return float(patching.logit_diff(patching.final_logits(logits, prep.clean), prep.answers).mean())


@pytest.mark.parametrize("layer, head", [(0, 1), (1, 3)])
def test_patching_effect_equals_direct_intervention(tiny: ModelHandle, layer: int, head: int) -> None:
    prep = patching.prepare(tiny, custom_task(SPEC, tiny.tokenizer))
    assert prep.paired
    result = patching.activation_patching(tiny, prep)
    z_clean = patching.z_cache(tiny, prep.clean)[layer][:, :, head]
    z_corr = patching.z_cache(tiny, prep.corrupt)[layer][:, :, head]
    delta = (z_corr - z_clean) @ _w_o(tiny, layer, head)

    def add(out: torch.Tensor, hook: Any) -> torch.Tensor:
        return out + delta

    direct = _metric(tiny, prep, []) - _metric(tiny, prep, [(f"blocks.{layer}.hook_attn_out", add)])
    assert result.mode == "paired"
    assert float(result.effects[layer, head]) == pytest.approx(direct, abs=1e-5)
    assert result.clean_metric == pytest.approx(_metric(tiny, prep, []), abs=1e-6)


def test_unaligned_prompts_fall_back_to_mean_ablation(tiny_gpt2: ModelHandle) -> None:
    spec = dict(SPEC, negative=[{"prompt": "abc"}, {"prompt": "a much longer prompt"}])
    prep = patching.prepare(tiny_gpt2, custom_task(spec, tiny_gpt2.tokenizer))
    assert not prep.paired
    result = patching.activation_patching(tiny_gpt2, prep)
    assert result.mode == "mean_ablation"
    # oracle: the negatives' mean z over real positions, written at every position of head 0.0
    zs = patching.z_cache(tiny_gpt2, prep.corrupt)[0][:, :, 0]
    mean = zs[prep.corrupt.mask].mean(0)

    def ablate(z: torch.Tensor, hook: Any) -> torch.Tensor:
        z = z.clone()
        z[:, :, 0] = mean
        return z

    direct = _metric(tiny_gpt2, prep, []) - _metric(tiny_gpt2, prep, [("blocks.0.attn.hook_z", ablate)])
    assert float(result.effects[0, 0]) == pytest.approx(direct, abs=1e-5)


def test_attribution_is_the_directional_derivative(tiny: ModelHandle) -> None:
    prep = patching.prepare(tiny, custom_task(SPEC, tiny.tokenizer))
    attr = patching.attribution_patching(tiny, prep)
    assert attr.shape == (tiny.facts.n_layers, tiny.facts.n_heads)
    clean_z = patching.z_cache(tiny, prep.clean)
    corr_z = patching.z_cache(tiny, prep.corrupt)
    base = _metric(tiny, prep, [])
    eps = 1e-2
    for layer, head in [(0, 0), (1, 2)]:
        source = clean_z[layer] + eps * (corr_z[layer] - clean_z[layer])
        fd = (base - patching.patched_metric(tiny, prep, layer, head, source)) / eps
        assert float(attr[layer, head]) == pytest.approx(fd, rel=0.05, abs=1e-4)
    assert all(p.grad is None for p in tiny.hf_model.parameters())


def test_head_outputs_shape_and_mean(tiny_llama: ModelHandle) -> None:
    prep = patching.prepare(tiny_llama, custom_task(SPEC, tiny_llama.tokenizer))
    x = patching.head_outputs(tiny_llama, prep.clean, "mean")
    f = tiny_llama.facts
    assert x.shape == (3, f.n_layers * f.n_heads, f.d_model)
    _, cache = tiny_llama.run_with_cache(prep.clean.ids, ["blocks.1.attn.hook_result"])
    expected = cache["blocks.1.attn.hook_result"][:, :, 2].mean(1)  # all prompts are 8 tokens: no padding
    assert torch.allclose(x[:, f.n_heads + 2], expected, atol=1e-6)
    last = patching.head_outputs(tiny_llama, prep.clean, "last")
    assert torch.allclose(last[:, f.n_heads + 2], cache["blocks.1.attn.hook_result"][:, -1, 2], atol=1e-6)
