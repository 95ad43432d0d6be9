"""Fused-path entropy on the real default model (SmolLM2-135M, 9 heads over 3 KV heads) equals the eager path's."""

from __future__ import annotations

import pytest
import torch

from headscope.kernels import fused_run
from headscope.models import ModelHandle

pytestmark = pytest.mark.default_model
TEXT = (
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. It is named "
    "after the engineer Gustave Eiffel, whose company designed and built the tower from 1887 to 1889."
)


def test_fused_entropy_equals_eager_on_default_model(default_model: ModelHandle) -> None:
    tokens = default_model.tokenize(TEXT)
    f = default_model.facts
    assert f.n_kv_heads < f.n_heads  # GQA is exercised
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(f.n_layers)]
    logits, cache = default_model.run_with_cache(tokens, names)
    pats = [cache[n][0].double() for n in names]
    eager = torch.stack([-(p * torch.log2(p.clamp_min(1e-300))).sum(-1) for p in pats]).float()
    run = fused_run(default_model, tokens, chunk=13)  # several chunks, last one ragged
    assert run.entropy_bits.shape == (f.n_layers, f.n_heads, tokens.shape[1])
    assert (run.entropy_bits - eager).abs().max() <= 1e-4
    torch.testing.assert_close(run.logits, logits, atol=5e-4, rtol=1e-4)
