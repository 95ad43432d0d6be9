"""The discrete SAE: it learns (reconstruction loss falls), and codes are a pure function of data and seed."""

from __future__ import annotations

import pytest
import torch

from headscope.circuits.sae import SAEConfig, codes, sae_loss, train_sae
from headscope.errors import InputError


def _sparse_data(n: int = 120, d: int = 24, k: int = 6, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    atoms = torch.randn(k, d, generator=g)
    weights = torch.relu(torch.randn(n, k, generator=g)) * (torch.rand(n, k, generator=g) < 0.3)
    return weights @ atoms + 0.01 * torch.randn(n, d, generator=g)


def test_sae_reduces_reconstruction_loss() -> None:
    x = _sparse_data()
    trained = train_sae(x, SAEConfig(n_latents=32, epochs=300, lr=1e-2), seed=0)
    assert trained.mse_last < 0.3 * trained.mse_first
    assert trained.losses[-1] < trained.losses[0]
    # recomputed independently of the trainer's bookkeeping
    with torch.no_grad():
        assert float(sae_loss(trained.sae, x, 0.02)[1]) == pytest.approx(trained.mse_last, rel=1e-5)


def test_codes_deterministic_for_a_seed() -> None:
    x = _sparse_data()
    cfg = SAEConfig(n_latents=32, epochs=50)
    a, b, c = (train_sae(x, cfg, seed=s).sae for s in (3, 3, 4))
    batch = x.view(12, 10, 24)
    assert torch.equal(codes(a, batch), codes(b, batch))
    assert codes(a, batch).shape == (12, 10)
    assert not torch.equal(a.w_enc, c.w_enc)


def test_codes_are_argmax_latents() -> None:
    x = _sparse_data()
    sae = train_sae(x, SAEConfig(n_latents=16, epochs=20), seed=0).sae
    with torch.no_grad():
        assert torch.equal(codes(sae, x.view(1, -1, 24))[0], sae.encode(x).argmax(-1))


@pytest.mark.parametrize(
    "kwargs, field",
    [({"n_latents": 1}, "n_latents"), ({"l1": -1}, "l1"), ({"lr": 0}, "lr"), ({"epochs": 0}, "epochs")],
)
def test_config_validation(kwargs: dict, field: str) -> None:
    with pytest.raises(InputError, match=field):
        SAEConfig(**kwargs)
