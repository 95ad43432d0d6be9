"""Where a variant reads each head: `mean` and `last` equal the reference's `patching.head_outputs` bit for bit;
`named` and `context` equal averages of the cached `hook_result` over positions picked by explicit loops over each
pair's tokens; normalisation divides by the RMS norm it says."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from headscope.circuits import patching
from headscope.circuits.tasks import custom_task
from headscope.circuits.variants_read import (
    context_positions,
    head_scaling,
    named_positions,
    normalise,
    read_heads,
)
from headscope.models import ModelHandle, hooks

SPEC = {
    "name": "letters",
    "positive": [
        {"prompt": "abcabcab", "answer": "c", "wrong": "a"},
        {"prompt": "xyzxyzxy", "answer": "z", "wrong": "x"},
    ],
    "negative": [{"prompt": "abcdbcab"}, {"prompt": "xyzuvzxy"}],
}


@pytest.fixture(autouse=True)
def _threads(one_thread: None) -> None:
    return None


def _prep(handle: ModelHandle, spec: dict) -> patching.Prepared:
    return patching.prepare(handle, custom_task(json.dumps(spec), handle.tokenizer))


def test_mean_and_last_equal_the_reference_reader(tiny: ModelHandle) -> None:
    prep = _prep(tiny, SPEC)
    got = read_heads(tiny, prep, ("mean", "last"), [0, 1])
    for reduce in ("mean", "last"):
        want = torch.cat([patching.head_outputs(tiny, b, reduce, [0, 1]) for b in (prep.clean, prep.corrupt)])  # type: ignore[arg-type]
        assert torch.equal(got[reduce], want), reduce


def _by_hand(handle: ModelHandle, prep: patching.Prepared, pick: str) -> torch.Tensor:
    """Average of hook_result over positions chosen token by token (named: the pair differs, or last; context:
    the pair agrees after an earlier difference, or last)."""
    names = [hooks.attn(layer, "result") for layer in range(handle.facts.n_layers)]
    out = []
    for batch in (prep.clean, prep.corrupt):
        _, cache = handle.run_with_cache(batch.ids, names)
        for b in range(batch.ids.shape[0]):
            a, c = prep.clean.ids[b].tolist(), prep.corrupt.ids[b].tolist()
            last = int(batch.last[b])
            chosen = []
            for p in range(last + 1):
                differ = a[p] != c[p]
                seen = any(a[i] != c[i] for i in range(p))
                if p == last or (differ if pick == "named" else (seen and not differ)):
                    chosen.append(p)
            heads = [cache[n][b, chosen].mean(0) for n in names]  # [head, d_model] per layer
            out.append(torch.cat(heads))
    return torch.stack(out)


@pytest.mark.parametrize("read", ["named", "context"])
def test_named_and_context_positions_by_hand(tiny_gpt2: ModelHandle, read: str) -> None:
    prep = _prep(tiny_gpt2, SPEC)
    assert prep.paired
    got = read_heads(tiny_gpt2, prep, (read,), [0, 1])[read]
    torch.testing.assert_close(got, _by_hand(tiny_gpt2, prep, read), rtol=1e-5, atol=1e-7)


def test_unpaired_tasks_read_the_final_token(tiny_gpt2: ModelHandle) -> None:
    spec = {**SPEC, "negative": [{"prompt": "ab"}, {"prompt": "xyzuvzxyq"}, {"prompt": "q"}]}
    prep = _prep(tiny_gpt2, spec)
    assert not prep.paired
    for masks in (named_positions(prep), context_positions(prep)):
        for m, batch in zip(masks, (prep.clean, prep.corrupt), strict=True):
            assert m.sum(1).tolist() == [1] * batch.ids.shape[0]
            assert m[torch.arange(batch.ids.shape[0]), batch.last].all()


def test_normalisation_divides_by_rms_norm() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 8, 5, generator=g) * torch.arange(1, 9).float()[None, :, None]
    head = normalise(x, "head", 4)
    np.testing.assert_allclose(head.pow(2).sum(-1).mean(0).numpy(), np.ones(8), rtol=1e-5)
    layer = normalise(x, "layer", 4)
    np.testing.assert_allclose(layer.pow(2).sum(-1).mean(0).view(2, 4).mean(1).numpy(), np.ones(2), rtol=1e-5)
    assert torch.equal(normalise(x, "none", 4), x) and head_scaling(x, "none", 4).shift is None
    centred = normalise(x, "center", 4)
    torch.testing.assert_close(centred.mean(0), torch.zeros(8, 5), atol=1e-6, rtol=0)
    both = normalise(x, "center_head", 4)
    torch.testing.assert_close(both, centred / centred.pow(2).sum(-1).mean(0).sqrt()[None, :, None])
