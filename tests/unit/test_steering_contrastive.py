"""Contrastive steering on tiny models, every number against an independent recomputation on the plain Hugging Face
model (same seeded weights, no bridge, no TransformerLens hooks): the vector, its reference norm, the relative α,
steering at a layer and at heads' outputs, the effect, and the cost (perplexity, distinct ratio, token strip)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch

from headscope.errors import InputError
from headscope.models import ModelHandle
from headscope.models.tiny import TINY_BUILDERS
from headscope.selection import HeadSet
from headscope.steering.contrastive import (
    ContrastiveConfig,
    alpha_sweep,
    compare,
    contrastive_vector,
    default_layer,
)
from headscope.steering.direction import SteerConfig
from headscope.steering.generate import GenConfig

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPT = "The cat sat on the"
POS = ["I love this, it is wonderful", "great and happy times", "what a lovely day"]
NEG = ["I hate this, it is awful", "terrible and sad times"]


@pytest.fixture(scope="module", params=["tiny-llama", "tiny-gpt2"])
def pair(request: pytest.FixtureRequest) -> tuple[ModelHandle, Any]:
    return ModelHandle.load(request.param, device="cpu"), TINY_BUILDERS[request.param]()


def _blocks(hf: Any) -> Any:
    return hf.model.layers if hasattr(hf, "model") else hf.transformer.h


def _out_proj(hf: Any, layer: int) -> Any:
    block = _blocks(hf)[layer]
    return block.self_attn.o_proj if hasattr(block, "self_attn") else block.attn.c_proj


def _ids(handle: ModelHandle, text: str) -> torch.Tensor:
    return torch.tensor([handle.tokenizer(text).input_ids])


@contextmanager
def _hf_hooks(
    hf: Any, resid: dict[int, Callable] | None = None, z: dict[int, Callable] | None = None
) -> Iterator:
    """Plain torch hooks: `resid[l](h)` edits block l's output hidden state, `z[l](z)` edits the concatenated
    head outputs entering the attention output projection ([b, pos, n_heads * d_head])."""
    handles = []
    for layer, fn in (resid or {}).items():

        def post(_m: Any, _i: Any, out: Any, fn: Callable = fn) -> Any:
            return (fn(out[0]), *out[1:]) if isinstance(out, tuple) else fn(out)

        handles.append(_blocks(hf)[layer].register_forward_hook(post))
    for layer, fn in (z or {}).items():
        handles.append(_out_proj(hf, layer).register_forward_pre_hook(lambda _m, args, fn=fn: (fn(args[0]),)))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _hf_acts(
    hf: Any, ids: torch.Tensor, layer: int, heads: list[tuple[int, int]] | None, n_heads: int
) -> torch.Tensor:
    """Block `layer`'s output [pos, d_model], or the listed heads' z [pos, k, d_head], position 0 dropped."""
    seen: dict[int, torch.Tensor] = {}

    def keep(layer: int) -> Callable:
        def f(x: torch.Tensor) -> torch.Tensor:
            seen[layer] = x.detach().clone()
            return x

        return f

    layers = sorted({lh[0] for lh in heads}) if heads else [layer]
    hooks = {"z": {lh: keep(lh) for lh in layers}} if heads else {"resid": {layer: keep(layer)}}
    with torch.no_grad(), _hf_hooks(hf, **hooks):
        hf(ids)
    if not heads:
        return seen[layer][0, 1:]
    per = {lh: s[0, 1:].reshape(s.shape[1] - 1, n_heads, -1) for lh, s in seen.items()}
    return torch.stack([per[lh][:, h] for lh, h in heads], dim=1)


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_resid_vector_and_reference_norm_equal_independent_hidden_states(pair: tuple, pooling: str) -> None:
    handle, hf = pair
    layer = 1
    sv = contrastive_vector(handle, POS, NEG, ContrastiveConfig(layer, pooling))  # type: ignore[arg-type]
    acts = {t: _hf_acts(hf, _ids(handle, t), layer, None, 0) for t in POS + NEG}

    def pooled(texts: list[str]) -> torch.Tensor:
        return torch.stack([acts[t].mean(0) if pooling == "mean" else acts[t][-1] for t in texts]).mean(0)

    assert torch.allclose(sv.direction, pooled(POS) - pooled(NEG), atol=1e-5, rtol=1e-4)
    norms = torch.cat([acts[t].norm(dim=-1) for t in POS + NEG])
    assert float(sv.ref_norm) == pytest.approx(float(norms.mean()), rel=1e-5)
    assert sv.source["n_positive"] == 3 and sv.source["n_negative"] == 2
    assert sv.hook == "blocks.1.hook_resid_post" and sv.layer == 1


def test_head_vector_equals_independent_head_outputs(pair: tuple) -> None:
    handle, hf = pair
    f = handle.facts
    heads = HeadSet.parse("1.2, 0.*", f.n_layers, f.n_heads)
    sv = contrastive_vector(handle, POS, NEG, ContrastiveConfig(heads=heads))
    acts = {t: _hf_acts(hf, _ids(handle, t), 0, list(heads), f.n_heads) for t in POS + NEG}

    def pooled(texts: list[str]) -> torch.Tensor:
        return torch.stack([acts[t].mean(0) for t in texts]).mean(0)

    assert sv.direction.shape == (len(heads), f.d_head)
    assert torch.allclose(sv.direction, pooled(POS) - pooled(NEG), atol=1e-5, rtol=1e-4)
    ref = torch.cat([acts[t].norm(dim=-1) for t in POS + NEG]).mean(0)
    assert torch.allclose(sv.ref_norm, ref, rtol=1e-5)


def _hf_logits(hf: Any, ids: torch.Tensor, **hooks: Any) -> torch.Tensor:
    with torch.no_grad(), _hf_hooks(hf, **hooks):
        return hf(ids).logits[0].float()


def test_alpha_is_relative_and_resid_steering_matches_an_independent_hook(pair: tuple) -> None:
    handle, hf = pair
    sv = contrastive_vector(handle, POS, NEG, ContrastiveConfig(0))
    cfg = SteerConfig(0.7, "last")
    added = sv.added(cfg.alpha)
    assert float(added.norm()) == pytest.approx(0.7 * float(sv.ref_norm), rel=1e-5)
    assert torch.allclose(added / added.norm(), sv.direction / sv.direction.norm(), atol=1e-6)
    ids = handle.tokenize(PROMPT)
    start = ids.shape[1] - 1

    def add(h: torch.Tensor) -> torch.Tensor:
        out = h.clone()
        out[:, start:] += added
        return out

    expected = _hf_logits(hf, ids, resid={0: add})
    got = handle.forward(ids, fwd_hooks=sv.hooks(cfg, start))[0]
    assert torch.allclose(got, expected, atol=1e-4)
    assert torch.equal(got[:start], handle.forward(ids)[0, :start])  # "last" leaves earlier positions alone


def test_head_steering_touches_only_the_selected_heads(pair: tuple) -> None:
    handle, hf = pair
    f = handle.facts
    heads = HeadSet.parse("1.1, 1.3", f.n_layers, f.n_heads)
    sv = contrastive_vector(handle, POS, NEG, ContrastiveConfig(heads=heads))
    cfg = SteerConfig(1.5, "all")
    delta = sv.added(cfg.alpha)
    assert torch.allclose(delta.norm(dim=-1), 1.5 * sv.ref_norm, rtol=1e-5)

    def add(z: torch.Tensor) -> torch.Tensor:
        out = z.clone().reshape(*z.shape[:2], f.n_heads, f.d_head)
        for row, (_, head) in enumerate(heads):
            out[:, :, head] += delta[row]
        return out.reshape(z.shape)

    ids = handle.tokenize(PROMPT)
    expected = _hf_logits(hf, ids, z={1: add})
    assert torch.allclose(handle.forward(ids, fwd_hooks=sv.hooks(cfg, 0))[0], expected, atol=1e-4)


def _hf_continuation_logprob(
    hf: Any, handle: ModelHandle, prompt: str, texts: list[str], **hooks: Any
) -> float:
    total = 0.0
    for t in texts:
        p_ids = handle.tokenizer(prompt).input_ids
        t_ids = handle.tokenizer(" " + t.strip(), add_special_tokens=False).input_ids
        logp = _hf_logits(hf, torch.tensor([p_ids + t_ids]), **hooks).log_softmax(-1)
        total += sum(float(logp[len(p_ids) - 1 + j, tok]) for j, tok in enumerate(t_ids))
    return total / len(texts)


def test_effect_and_cost_equal_independent_values(pair: tuple) -> None:
    handle, hf = pair
    sv = contrastive_vector(handle, POS, NEG, ContrastiveConfig(1))
    cfg = SteerConfig(3.0, "last")
    res = compare(handle, sv, PROMPT, POS, NEG, cfg, GenConfig(max_new_tokens=6))
    start = handle.tokenize(PROMPT).shape[1] - 1
    added = sv.added(cfg.alpha)

    def add(h: torch.Tensor) -> torch.Tensor:
        out = h.clone()
        out[:, start:] += added
        return out

    def pref(**hooks: Any) -> float:
        return _hf_continuation_logprob(hf, handle, PROMPT, POS, **hooks) - _hf_continuation_logprob(
            hf, handle, PROMPT, NEG, **hooks
        )

    assert res.effect == pytest.approx(pref(resid={1: add}) - pref(), abs=1e-3)
    p_ids = handle.tokenizer(PROMPT).input_ids

    def read(cont: tuple[int, ...], **hooks: Any) -> list[float]:
        logp = _hf_logits(hf, torch.tensor([p_ids + list(cont)]), **hooks).log_softmax(-1)
        return [float(logp[len(p_ids) - 1 + j, t]) for j, t in enumerate(cont)]

    plain, steered = res.unsteered.token_ids, res.steered.token_ids
    c = res.cost
    assert c.perplexity_unsteered == pytest.approx(math.exp(-sum(read(plain)) / len(plain)), rel=1e-4)
    assert c.perplexity_steered == pytest.approx(math.exp(-sum(read(steered)) / len(steered)), rel=1e-4)
    assert c.distinct_steered == pytest.approx(len(set(steered)) / len(steered), abs=1e-4)  # 4 decimals
    p_own = [math.exp(x) for x in read(steered, resid={1: add})]
    assert c.p_steered == pytest.approx(p_own, abs=1e-5)
    assert c.p_steered == pytest.approx(res.steered.probs, abs=1e-5)  # what the generation loop saw
    strip = res.to_json()["tokens"]
    assert [s["token"] for s in strip] == list(res.steered.tokens)
    assert [s["change"] for s in strip] == pytest.approx(
        [a - math.exp(b) for a, b in zip(p_own, read(steered), strict=True)], abs=1e-4
    )


def test_zero_alpha_is_the_unsteered_model(tiny_llama: ModelHandle) -> None:
    sv = contrastive_vector(tiny_llama, POS, NEG, ContrastiveConfig(1))
    zero = compare(tiny_llama, sv, PROMPT, POS, NEG, SteerConfig(0.0), GenConfig(max_new_tokens=4))
    assert zero.effect == 0.0 and zero.steered == zero.unsteered
    assert zero.cost.perplexity_ratio == 1.0 and zero.cost.p_change == (0.0,) * len(zero.steered.token_ids)


def test_sweep_rows_match_single_comparisons(tiny_llama: ModelHandle) -> None:
    sv = contrastive_vector(tiny_llama, POS, NEG, ContrastiveConfig(0))
    gen = GenConfig(max_new_tokens=3)
    rows = alpha_sweep(tiny_llama, sv, PROMPT, [0.0, 2.0], (" a", " b"), gen=gen)
    assert rows[0].change == 0.0
    one = compare(tiny_llama, sv, PROMPT, None, None, SteerConfig(2.0, "last"), gen)
    assert rows[1].generation == one.steered and rows[1].cost == one.cost
    ids = tiny_llama.tokenize(PROMPT)
    a, b = tiny_llama.tokenizer(" a").input_ids[0], tiny_llama.tokenizer(" b").input_ids[0]
    last = tiny_llama.forward(ids, fwd_hooks=sv.hooks(SteerConfig(2.0), ids.shape[1] - 1))[0, -1]
    assert rows[1].logit_diff == pytest.approx(float(last[a] - last[b]), abs=1e-5)


def test_default_layer_is_a_share_of_depth() -> None:
    assert default_layer(30) == 9 and default_layer(2) == 0 and default_layer(1) == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"positives": [], "negatives": NEG}, "positive list is empty"),
        ({"positives": POS, "negatives": ["  ", ""]}, "negative list is empty"),
        ({"positives": POS, "negatives": ["x"]}, "one token"),
        ({"positives": POS, "negatives": POS}, "zero"),
        ({"positives": "abc", "negatives": NEG}, "list of texts"),
    ],
)
def test_contrastive_bad_texts(tiny_llama: ModelHandle, kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        contrastive_vector(tiny_llama, kwargs["positives"], kwargs["negatives"], ContrastiveConfig(0))


def test_layer_and_heads_checks(tiny_llama: ModelHandle) -> None:
    with pytest.raises(InputError, match="out of range"):
        contrastive_vector(tiny_llama, POS, NEG, ContrastiveConfig(2))
    with pytest.raises(InputError, match="not both"):
        ContrastiveConfig(1, heads=tiny_llama.head_set("0.1"))
    with pytest.raises(InputError, match="for a 30×9 model"):
        contrastive_vector(tiny_llama, POS, NEG, ContrastiveConfig(heads=HeadSet.parse("0.1", 30, 9)))


def test_progress_is_staged_and_a_raising_callback_stops_the_work(tiny_llama: ModelHandle) -> None:
    """The app relays (stage, fraction) to its job and cancels by raising from the callback."""
    seen: list[tuple[str, float]] = []
    sv = contrastive_vector(
        tiny_llama, POS, NEG, ContrastiveConfig(1), progress=lambda s, f: seen.append((s, f))
    )
    assert [s for s, _ in seen] == [f"reading texts {i}/5" for i in range(1, 6)]
    seen.clear()
    compare(
        tiny_llama,
        sv,
        PROMPT,
        POS,
        NEG,
        SteerConfig(),
        GenConfig(3),
        progress=lambda s, f: seen.append((s, f)),
    )
    fracs = [f for _, f in seen]
    assert fracs == sorted(fracs) and fracs[0] >= 0.0 and fracs[-1] <= 1.0
    assert seen[0][0] == "judge: reading the held-out texts" and seen[1][0] == "prompt 1/1, none: token 1/3"
    assert seen[-1][0] == "prompt 1/1, steering: token 3/3"

    def cancel(stage: str, frac: float) -> None:
        if stage.startswith("prompt 1/1, steering: token 2"):
            raise KeyboardInterrupt(stage)

    ids = tiny_llama.tokenize(PROMPT)
    base = tiny_llama.forward(ids)
    with pytest.raises(KeyboardInterrupt):
        compare(tiny_llama, sv, PROMPT, POS, NEG, SteerConfig(), GenConfig(3), progress=cancel)
    assert torch.equal(tiny_llama.forward(ids), base)  # no steering hook left behind


@pytest.mark.parametrize("position", ["last", "all"])
def test_readout_effect_of_a_direction_is_exact_for_a_linear_readout(
    tiny_llama: ModelHandle, position: str
) -> None:
    """A linear readout w·x at the vector's own hook moves by exactly w·(α r v̂) at every steered position."""
    from headscope.models import hooks
    from headscope.steering.direction import from_direction, readout_effect, reference_texts

    texts = reference_texts(2)
    assert texts and all(len(t) > 50 for t in texts)
    gen = torch.Generator().manual_seed(0)
    direction = torch.randn(tiny_llama.facts.d_model, generator=gen)
    w = torch.randn(tiny_llama.facts.d_model, generator=gen)
    hook = hooks.resid(1, "post")
    sv = from_direction(tiny_llama, direction, hook, texts, method="feature", source={"feature": 0})
    acts = [tiny_llama.run_with_cache(tiny_llama.tokenize(t), [hook])[1][hook][0, 1:] for t in texts]
    assert float(sv.ref_norm) == pytest.approx(
        float(torch.cat([a.norm(dim=-1) for a in acts]).mean()), rel=1e-5
    )
    cfg = SteerConfig(0.8, position)  # type: ignore[arg-type]
    ids = tiny_llama.tokenize(PROMPT)
    effect = readout_effect(tiny_llama, sv, cfg, ids, ids.shape[1] - 1, lambda x: x @ w)
    expected = 0.8 * float(sv.ref_norm) * float(w @ direction / direction.norm())
    assert effect == pytest.approx(expected, rel=1e-4, abs=1e-6)
    heads_sv = contrastive_vector(tiny_llama, POS, NEG, ContrastiveConfig(heads=tiny_llama.head_set("1.1")))
    with pytest.raises(InputError, match="not at heads"):
        readout_effect(tiny_llama, heads_sv, cfg, ids, 0, lambda x: x @ w)
