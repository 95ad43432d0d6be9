"""Patching against independent interventions, on both tiny architectures.

Oracles: (1) batched patching (copies stacked from the patched layer on) equals one head per plain forward from the
embeddings, to 1e-5; (2) patching head h's z equals adding (z_corr,h − z_clean,h) W_O^h at a different hook site
(hook_attn_out), with W_O read from the HF module itself; (3) attribution patching is a finite-difference
directional derivative; (4) EAP-IG equals the same gradient averaged over separate, unbatched runs at each
interpolation point.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from headscope.circuits import attribution, patching
from headscope.circuits.tasks import custom_task
from headscope.models import ModelHandle, hooks
from headscope.models.handle import graph_node

SPEC = {
    "name": "letters",
    "positive": [
        {"prompt": "abcabcab", "answer": "c", "wrong": "a"},
        {"prompt": "xyzxyzxy", "answer": "z", "wrong": "x"},
        {"prompt": "pqrpqrpq", "answer": "r", "wrong": "p"},
    ],
    "negative": [{"prompt": "abcdefgh"}, {"prompt": "xyzuvwst"}, {"prompt": "pqrstuvw"}],
}


@pytest.fixture(autouse=True)
def _threads(one_thread: None) -> None:
    return None


def w_o(handle: ModelHandle, layer: int, head: int) -> torch.Tensor:
    """W_O^h as [d_head, d_model], read from the HF module (not through TransformerLens)."""
    d = handle.facts.d_head
    hf = handle.hf_model
    if hasattr(hf, "transformer"):  # GPT-2 Conv1D: weight is [in, out]
        w = hf.transformer.h[layer].attn.c_proj.weight  # pyright: ignore[reportIndexIssue]
        return w[head * d : (head + 1) * d, :].detach()
    w = hf.model.layers[layer].self_attn.o_proj.weight  # Linear: [out, in]
    return w[:, head * d : (head + 1) * d].T.detach()


def plain_metric(handle: ModelHandle, prep: patching.Prepared, fwd: list[tuple[str, Any]]) -> float:
    logits = handle.forward(prep.clean.ids, fwd_hooks=fwd)
    return float(patching.logit_diff(patching.final_logits(logits, prep.clean), prep.answers).mean())


def test_batched_patching_equals_one_head_per_forward(tiny: ModelHandle) -> None:
    prep = patching.prepare(tiny, custom_task(SPEC, tiny.tokenizer))
    batched = patching.activation_patching(tiny, prep)
    n_l = tiny.facts.n_layers
    one_at_a_time = patching.activation_patching_unbatched(tiny, prep, range(n_l))
    assert batched.effects.shape == (n_l, tiny.facts.n_heads)
    assert torch.allclose(batched.effects, one_at_a_time, atol=1e-5)
    assert batched.effects.abs().max() > 1e-4  # the comparison is not between zeros
    assert batched.per_pair.shape == (3, n_l, tiny.facts.n_heads)


def test_unequal_lengths_batch_with_right_padding(tiny_gpt2: ModelHandle) -> None:
    spec = dict(SPEC, positive=[*SPEC["positive"], {"prompt": "uvwuv", "answer": "w", "wrong": "u"}],
                negative=[*SPEC["negative"], {"prompt": "uvwxy"}])  # fmt: skip
    prep = patching.prepare(tiny_gpt2, custom_task(spec, tiny_gpt2.tokenizer))
    assert prep.paired and (prep.clean.last < prep.clean.ids.shape[1] - 1).any()
    batched = patching.activation_patching(tiny_gpt2, prep).effects
    assert torch.allclose(batched, patching.activation_patching_unbatched(tiny_gpt2, prep, [0, 1]), atol=1e-5)


@pytest.mark.parametrize("layer, head", [(0, 1), (1, 3)])
def test_patching_effect_equals_direct_intervention(tiny: ModelHandle, layer: int, head: int) -> None:
    prep = patching.prepare(tiny, custom_task(SPEC, tiny.tokenizer))
    assert prep.paired
    result = patching.activation_patching(tiny, prep)
    z_clean = patching.z_cache(tiny, prep.clean)[layer][:, :, head]
    z_corr = patching.z_cache(tiny, prep.corrupt)[layer][:, :, head]
    delta = (z_corr - z_clean) @ w_o(tiny, layer, head)

    def add(out: torch.Tensor, hook: Any) -> torch.Tensor:
        return out + delta

    direct = plain_metric(tiny, prep, []) - plain_metric(
        tiny, prep, [(hooks.sublayer_out(layer, "attn"), add)]
    )
    assert result.mode == "paired"
    assert float(result.effects[layer, head]) == pytest.approx(direct, abs=1e-5)
    assert result.clean_metric == pytest.approx(plain_metric(tiny, prep, []), abs=1e-6)


def test_unaligned_prompts_fall_back_to_mean_ablation(tiny_gpt2: ModelHandle) -> None:
    spec = dict(SPEC, negative=[{"prompt": "abc"}, {"prompt": "a much longer prompt"}])
    prep = patching.prepare(tiny_gpt2, custom_task(spec, tiny_gpt2.tokenizer))
    assert not prep.paired
    result = patching.activation_patching(tiny_gpt2, prep)
    assert result.mode == "mean_ablation"
    zs = patching.z_cache(tiny_gpt2, prep.corrupt)[0][:, :, 0]
    mean = zs[prep.corrupt.mask].mean(0)  # the negatives' mean z over real positions, at every position

    def ablate(z: torch.Tensor, hook: Any) -> torch.Tensor:
        z = z.clone()
        z[:, :, 0] = mean
        return z

    direct = plain_metric(tiny_gpt2, prep, []) - plain_metric(tiny_gpt2, prep, [(hooks.z(0), ablate)])
    assert float(result.effects[0, 0]) == pytest.approx(direct, abs=1e-5)


def test_attribution_is_the_directional_derivative(tiny: ModelHandle) -> None:
    prep = patching.prepare(tiny, custom_task(SPEC, tiny.tokenizer))
    per_pair = attribution.attribution_patching(tiny, prep)
    attr = per_pair.mean(0)
    assert per_pair.shape == (3, tiny.facts.n_layers, tiny.facts.n_heads)
    clean_z = patching.z_cache(tiny, prep.clean)
    corr_z = patching.z_cache(tiny, prep.corrupt)
    base = plain_metric(tiny, prep, [])
    eps = 1e-2
    for layer, head in [(0, 0), (1, 2)]:
        source = clean_z[layer] + eps * (corr_z[layer] - clean_z[layer])
        fd = (base - patching.patched_metric(tiny, prep, layer, head, source)) / eps
        assert float(attr[layer, head]) == pytest.approx(fd, rel=0.05, abs=1e-4)
    assert all(p.grad is None for p in tiny.hf_model.parameters())


def _ig_reference(handle: ModelHandle, prep: patching.Prepared, steps: int) -> torch.Tensor:
    """EAP-IG recomputed one interpolation point per plain grad run (no stacked copies)."""
    name = hooks.resid(0, "pre")
    e_clean = handle.run_with_cache(prep.clean.ids, [name])[1][name]
    e_corr = handle.run_with_cache(prep.corrupt.ids, [name])[1][name]
    clean_z, corr_z = patching.z_cache(handle, prep.clean), patching.z_cache(handle, prep.corrupt)
    n_l = handle.facts.n_layers
    total = [torch.zeros_like(z) for z in clean_z]
    for k in range(1, steps + 1):
        point = e_corr + (k / steps) * (e_clean - e_corr)
        saved: dict[int, torch.Tensor] = {}

        def keeper(layer: int, saved: dict[int, torch.Tensor] = saved) -> Any:
            def keep(z: torch.Tensor, hook: Any) -> torch.Tensor:
                saved[layer] = graph_node(z)
                return saved[layer]

            return keep

        fwd = [(name, lambda x, hook, p=point: p)] + [(hooks.z(i), keeper(i)) for i in range(n_l)]
        with torch.enable_grad():
            logits = handle.run(prep.clean.ids, fwd_hooks=fwd, grad=True)
            m = patching.logit_diff(patching.final_logits(logits, prep.clean), prep.answers).sum()
            grads = torch.autograd.grad(m, [saved[i] for i in range(n_l)])
        for acc, g in zip(total, grads, strict=True):
            acc += g.detach()
    rows = [((c - s) * (t / steps)).sum(dim=(1, 3)) for c, s, t in zip(clean_z, corr_z, total, strict=True)]
    return torch.stack(rows, dim=1)


def test_eap_ig_equals_unbatched_integrated_gradients(tiny: ModelHandle) -> None:
    prep = patching.prepare(tiny, custom_task(SPEC, tiny.tokenizer))
    got = attribution.eap_ig(tiny, prep, steps=5)
    assert torch.allclose(got, _ig_reference(tiny, prep, 5), atol=1e-5)
    # one step at the clean input is plain attribution patching
    assert torch.allclose(
        attribution.eap_ig(tiny, prep, steps=1), attribution.attribution_patching(tiny, prep), atol=1e-5
    )


def test_head_outputs_shape_and_mean(tiny_llama: ModelHandle) -> None:
    prep = patching.prepare(tiny_llama, custom_task(SPEC, tiny_llama.tokenizer))
    x = patching.head_outputs(tiny_llama, prep.clean, "mean")
    f = tiny_llama.facts
    assert x.shape == (3, f.n_layers * f.n_heads, f.d_model)
    name = hooks.attn(1, "result")
    _, cache = tiny_llama.run_with_cache(prep.clean.ids, [name])
    expected = cache[name][:, :, 2].mean(1)  # all prompts are 8 tokens: no padding
    assert torch.allclose(x[:, f.n_heads + 2], expected, atol=1e-6)
    last = patching.head_outputs(tiny_llama, prep.clean, "last")
    assert torch.allclose(last[:, f.n_heads + 2], cache[name][:, -1, 2], atol=1e-6)
