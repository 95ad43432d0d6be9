"""Path patching (sender → receiver through q, k and v) against a manual two-hook intervention, and the edge set.

The oracle never stacks copies: Δ_s = (z_corr − z_clean)_s W_O^s is computed from the HF module's own output
weights; run 1 adds Δ_s to the receiver layer's input residual and records z of the receiver head; run 2 is the
clean run with only that head's z replaced by the recorded one. Effect = metric(clean) − metric(run 2).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from headscope.circuits import patching
from headscope.circuits.paths import edge_set, path_patching
from headscope.circuits.tasks import custom_task
from headscope.models import ModelHandle, hooks

SPEC = {
    "name": "letters",
    "positive": [
        {"prompt": "abcabcab", "answer": "c", "wrong": "a"},
        {"prompt": "xyzxyzxy", "answer": "z", "wrong": "x"},
        {"prompt": "pqrpqrpq", "answer": "r", "wrong": "p"},
    ],
    "negative": [{"prompt": "abcdefgh"}, {"prompt": "xyzuvwst"}, {"prompt": "pqrstuvw"}],
}


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


@pytest.fixture(autouse=True)
def _threads(one_thread: None) -> None:
    return None


def _manual(
    handle: ModelHandle, prep: patching.Prepared, sender: tuple[int, int], receiver: tuple[int, int]
) -> float:
    (sl, sh), (rl, rh) = sender, receiver
    z_clean = patching.z_cache(handle, prep.clean)[sl][:, :, sh]
    z_corr = patching.z_cache(handle, prep.corrupt)[sl][:, :, sh]
    delta = (z_corr - z_clean) @ w_o(handle, sl, sh)
    seen: dict[str, torch.Tensor] = {}

    def add(x: torch.Tensor, hook: Any) -> torch.Tensor:
        return x + delta

    def record(z: torch.Tensor, hook: Any) -> torch.Tensor:
        seen["z"] = z[:, :, rh].clone()
        return z

    handle.forward(prep.clean.ids, fwd_hooks=[(hooks.resid(rl, "pre"), add), (hooks.z(rl), record)])

    def put(z: torch.Tensor, hook: Any) -> torch.Tensor:
        z = z.clone()
        z[:, :, rh] = seen["z"]
        return z

    return plain_metric(handle, prep, []) - plain_metric(handle, prep, [(hooks.z(rl), put)])


def test_path_patching_equals_two_hand_placed_hooks(tiny: ModelHandle) -> None:
    prep = patching.prepare(tiny, custom_task(SPEC, tiny.tokenizer))
    pairs = [((0, 0), (1, 1)), ((0, 2), (1, 1)), ((0, 3), (1, 0))]
    got = path_patching(tiny, prep, pairs).mean(1)
    want = torch.tensor([_manual(tiny, prep, s, r) for s, r in pairs])
    assert torch.allclose(got, want, atol=1e-5)
    assert want.abs().max() > 1e-5


def test_path_effect_through_the_receiver_is_not_the_senders_total_effect(tiny_llama: ModelHandle) -> None:
    """Patching the sender everywhere (node patching) differs from its effect through one receiver only."""
    prep = patching.prepare(tiny_llama, custom_task(SPEC, tiny_llama.tokenizer))
    node = float(patching.activation_patching(tiny_llama, prep).effects[0, 1])
    path = float(path_patching(tiny_llama, prep, [((0, 1), (1, 2))]).mean())
    assert abs(node - path) > 1e-4


def test_edge_set_is_top_pairs_plus_as_many_random() -> None:
    effects = np.zeros((4, 3))
    effects[0, 0], effects[1, 1], effects[1, 2], effects[3, 0] = 5.0, -4.0, 3.0, 2.0
    pairs, drawn = edge_set(effects, [0, 1, 2, 3], n_top=4, seed=0)
    top = [p for p, d in zip(pairs, drawn, strict=True) if d == "top"]
    # earlier → later among {0.0, 1.1, 1.2, 3.0}: 0.0→1.1, 0.0→1.2, 0.0→3.0, 1.1→3.0, 1.2→3.0
    assert sorted(top) == sorted(
        [((0, 0), (1, 1)), ((0, 0), (1, 2)), ((0, 0), (3, 0)), ((1, 1), (3, 0)), ((1, 2), (3, 0))]
    )
    rand = [p for p, d in zip(pairs, drawn, strict=True) if d == "random"]
    assert len(rand) == len(top) and not set(rand) & set(top)
    assert all(s[0] < r[0] for s, r in pairs)
    assert edge_set(effects, [0, 1, 2, 3], n_top=4, seed=0) == (pairs, drawn)  # seeded
