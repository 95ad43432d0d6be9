"""The discrete SAE as the reference builds it: an independent re-implementation of the training loop
(renormalise the stored weights, forward, L1 + MSE, project the gradients, Adam) gives the same weights; stored
weights end unit-norm along the chosen axis; codes are a pure function of data and seed."""

from __future__ import annotations

import pytest
import torch

from headscope.circuits.sae import DiscreteSAE, SAEConfig, codes, sae_loss, task_l1, train_sae
from headscope.errors import InputError


def _sparse_data(n: int = 120, d: int = 24, k: int = 6, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    atoms = torch.randn(k, d, generator=g)
    weights = torch.relu(torch.randn(n, k, generator=g)) * (torch.rand(n, k, generator=g) < 0.3)
    return weights @ atoms + 0.01 * torch.randn(n, d, generator=g)


def _reference(
    x: torch.Tensor, n: int, epochs: int, seed: int, l1: float, dec_dim: int
) -> dict[str, torch.Tensor]:
    """The reference loop written out with plain tensors (no module, no hooks)."""
    g = torch.Generator().manual_seed(seed)
    w_enc = torch.randn(n, x.shape[1], generator=g)
    w_dec = torch.randn(x.shape[1], n, generator=g)
    params = {"w_enc": w_enc, "w_dec": w_dec, "b_enc": torch.zeros(n), "b_tied": torch.zeros(x.shape[1])}
    params = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    opt = torch.optim.Adam(list(params.values()), lr=1e-3)
    axes = {"w_enc": 1, "w_dec": dec_dim}
    for _ in range(epochs):
        with torch.no_grad():
            for name, dim in axes.items():
                params[name].copy_(params[name] / params[name].norm(dim=dim, keepdim=True))
        f = torch.relu((x - params["b_tied"]) @ params["w_enc"].T + params["b_enc"])
        x_hat = f @ params["w_dec"].T + params["b_tied"]
        loss = (x_hat - x).pow(2).mean() + l1 * f.abs().sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        with torch.no_grad():
            for name, dim in axes.items():
                w, grad = params[name], params[name].grad
                assert grad is not None
                unit = w / w.norm(dim=dim, keepdim=True)
                grad -= (grad * unit).sum(dim, keepdim=True) * unit
        opt.step()
    with torch.no_grad():
        for name, dim in axes.items():
            params[name].copy_(params[name] / params[name].norm(dim=dim, keepdim=True))
    return {k: v.detach() for k, v in params.items()}


@pytest.mark.parametrize("norm, dec_dim", [("reference_rows", 1), ("atoms", 0)])
def test_training_equals_the_reference_loop(norm: str, dec_dim: int) -> None:
    x = _sparse_data()
    cfg = SAEConfig(n_latents=16, epochs=40, decoder_norm=norm)  # type: ignore[arg-type]
    sae = train_sae(x, cfg, seed=5, l1=0.03).sae
    ref = _reference(x, 16, 40, 5, 0.03, dec_dim)
    for name, value in ref.items():
        assert torch.allclose(getattr(sae, name).detach(), value, atol=1e-5), name
    assert torch.allclose(sae.w_dec.norm(dim=dec_dim), torch.ones(sae.w_dec.shape[1 - dec_dim]), atol=1e-5)
    assert torch.allclose(sae.w_enc.norm(dim=1), torch.ones(16), atol=1e-5)


def test_gradients_have_no_component_along_the_units() -> None:
    sae = DiscreteSAE(8, 5, torch.Generator().manual_seed(0), "reference_rows")
    loss, _ = sae_loss(sae, torch.randn(7, 8), 0.02)
    loss.backward()
    assert sae.w_enc.grad is not None and sae.w_dec.grad is not None
    assert (sae.w_enc.grad * sae.w_enc).sum(1).abs().max() < 1e-6
    assert (sae.w_dec.grad * sae.w_dec).sum(1).abs().max() < 1e-6
    assert sae.w_enc.grad.abs().max() > 1e-4  # and the rest of the gradient is still there


def test_sae_reduces_reconstruction_loss() -> None:
    x = _sparse_data()
    trained = train_sae(x, SAEConfig(n_latents=32, epochs=300, lr=1e-2), seed=0)
    assert trained.mse_last < 0.5 * trained.mse_first
    with torch.no_grad():  # recomputed independently of the trainer's bookkeeping
        assert float(sae_loss(trained.sae, x, trained.l1)[1]) == pytest.approx(trained.mse_last, rel=1e-5)


def test_codes_deterministic_for_a_seed() -> None:
    x = _sparse_data()
    cfg = SAEConfig(n_latents=32, epochs=50)
    a, b, c = (train_sae(x, cfg, seed=s).sae for s in (3, 3, 4))
    batch = x.view(12, 10, 24)
    assert torch.equal(codes(a, batch), codes(b, batch))
    assert codes(a, batch).shape == (12, 10)
    assert not torch.equal(a.w_enc, c.w_enc)
    with torch.no_grad():
        assert torch.equal(codes(a, x.view(1, -1, 24))[0], a.encode(x).argmax(-1))


def test_l1_per_task() -> None:
    assert task_l1("docstring") == 0.05 and task_l1("ioi") == task_l1("greater_than") == 0.02
    assert SAEConfig().l1_for("docstring") == 0.05 and SAEConfig(l1=0.1).l1_for("docstring") == 0.1


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"n_latents": 1}, "n_latents"),
        ({"l1": -1}, "l1"),
        ({"lr": 0}, "lr"),
        ({"epochs": 0}, "epochs"),
        ({"epochs": 2.5}, "epochs"),
        ({"n_latents": "ten"}, "n_latents"),
        ({"decoder_norm": "columns"}, "decoder_norm"),
    ],
)
def test_config_validation(kwargs: dict, field: str) -> None:
    with pytest.raises(InputError, match=field):
        SAEConfig(**kwargs)


def test_progress_ticks_by_epoch_and_leave_the_weights_alone() -> None:
    """`tick(epoch, epochs)` every 10 epochs and at the end (the progress line's "SAE: epoch 20/25"); training with
    a tick gives bit-identical weights to training without one."""
    x, cfg, seen = _sparse_data(), SAEConfig(n_latents=32, epochs=25), []
    ticked = train_sae(x, cfg, seed=1, tick=lambda done, total: seen.append((done, total)))
    assert seen == [(0, 25), (10, 25), (20, 25), (25, 25)]
    assert torch.equal(ticked.sae.w_enc, train_sae(x, cfg, seed=1).sae.w_enc)
