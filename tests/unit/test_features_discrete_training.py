"""The sae-lens training class of the circuit SAE (features/discrete.py) trains the model circuits/sae.py trains:
the same stored-weight renormalisation, gradient projection and loss, step by step (driven directly and through
sae-lens's own SAETrainer), and the decoder norm it was trained under survives saving and loading."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from headscope.circuits.sae import DiscreteSAE, SAEConfig, sae_loss, train_sae
from headscope.features import discrete

D_IN, N_LAT, L1 = 12, 9, 0.03


def _data(n: int = 40, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    atoms = torch.randn(4, D_IN, generator=g)
    return torch.relu(torch.randn(n, 4, generator=g)) @ atoms + 0.05 * torch.randn(n, D_IN, generator=g)


def _pair(norm: str, seed: int = 3) -> tuple[DiscreteSAE, discrete.DiscreteCircuitTrainingSAE]:
    """The circuits module and the sae-lens training class, starting from the same (unit-norm) weights."""
    ref = DiscreteSAE(D_IN, N_LAT, torch.Generator().manual_seed(seed), norm)  # type: ignore[arg-type]
    cfg = discrete.DiscreteTrainingSAEConfig(d_in=D_IN, d_sae=N_LAT, l1_coefficient=L1, decoder_norm=norm)
    sl = discrete.DiscreteCircuitTrainingSAE(cfg)
    sl.load_state_dict({k: v.detach().clone() for k, v in ref.state_dict().items()})
    return ref, sl


def _step_input(x: torch.Tensor, step: int) -> discrete.TrainStepInput:
    return discrete.TrainStepInput(
        sae_in=x, coefficients={"l1": L1}, dead_neuron_mask=None, n_training_steps=step, is_logging_step=False
    )


@pytest.mark.parametrize("norm", ["reference_rows", "atoms"])
def test_training_class_steps_equal_the_circuit_sae(norm: str) -> None:
    x = _data()
    ref, sl = _pair(norm)
    opt_ref = torch.optim.Adam(ref.parameters(), lr=1e-2)
    opt_sl = torch.optim.Adam(sl.parameters(), lr=1e-2)
    for step in range(25):
        ref.renormalise()
        opt_ref.zero_grad()
        loss_ref, _ = sae_loss(ref, x, L1)
        loss_ref.backward()
        out = sl.training_forward_pass(_step_input(x, step))
        opt_sl.zero_grad()
        out.loss.backward()
        assert float(out.loss.detach()) == pytest.approx(float(loss_ref.detach()), rel=1e-6), step
        for name in ("w_enc", "w_dec", "b_enc", "b_tied"):  # the projected gradients, before the update
            g_ref, g_sl = getattr(ref, name).grad, getattr(sl, name).grad
            assert g_ref is not None and g_sl is not None
            torch.testing.assert_close(g_sl, g_ref, rtol=1e-5, atol=1e-7, msg=f"{name} grad, step {step}")
        opt_ref.step()
        opt_sl.step()
        for name in ("w_enc", "w_dec", "b_enc", "b_tied"):
            torch.testing.assert_close(getattr(sl, name), getattr(ref, name), rtol=1e-5, atol=1e-6)
    dim = 1 if norm == "reference_rows" else 0
    # the gradient hooks removed the radial component: stored rows/columns stay on the unit sphere to first order
    assert (sl.w_dec.detach().norm(dim=dim) - 1).abs().max() < 0.05


def _gradient_norms(x: torch.Tensor, steps: int, seed: int) -> list[float]:
    """Each step's gradient norm in the finder's own loop (train_sae's steps, written out)."""
    ref, _ = _pair("reference_rows", seed)
    opt = torch.optim.Adam(ref.parameters(), lr=1e-3)
    norms = []
    for _ in range(steps):
        ref.renormalise()
        opt.zero_grad()
        sae_loss(ref, x, L1)[0].backward()
        norms.append(
            float(torch.cat([p.grad.flatten() for p in ref.parameters() if p.grad is not None]).norm())
        )
        opt.step()
    return norms


def test_sae_lens_trainer_trains_the_finder_sae() -> None:
    """SAETrainer (constant lr, Adam, full batch) on the finder's data gives train_sae's weights. sae-lens clips
    the gradient norm to 1, so the data are scaled to keep every step's norm below 1 (checked)."""
    from sae_lens import LoggingConfig, SAETrainer
    from sae_lens.config import SAETrainerConfig

    x, steps, seed = 0.2 * _data(64), 30, 4
    assert max(_gradient_norms(x, steps, seed)) < 1.0  # sae-lens's clipping never acts
    trained = train_sae(x, SAEConfig(n_latents=N_LAT, epochs=steps, lr=1e-3), seed, l1=L1).sae
    _, sl = _pair("reference_rows", seed)

    def batches() -> Iterator[torch.Tensor]:
        while True:
            yield x

    cfg = SAETrainerConfig(total_training_samples=64 * steps, train_batch_size_samples=64, lr=1e-3, lr_end=1e-3,
                           logger=LoggingConfig(log_to_wandb=False))  # fmt: skip
    SAETrainer(cfg=cfg, sae=sl, data_provider=batches()).fit()
    state: dict[str, torch.Tensor] = {k: v.detach().clone() for k, v in sl.state_dict().items()}
    sl.process_state_dict_for_saving_inference(state)  # the renormalised weights train_sae also ends with
    for name, value in trained.state_dict().items():
        torch.testing.assert_close(state[name], value, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("norm", ["reference_rows", "atoms"])
def test_decoder_norm_is_saved_and_restored(tmp_path: Path, norm: str) -> None:
    x = _data()
    module = train_sae(x, SAEConfig(n_latents=N_LAT, epochs=20, decoder_norm=norm), 0).sae  # type: ignore[arg-type]
    folder = discrete.save(module, tmp_path / norm, hook_name="blocks.0.attn.hook_result", model="tiny-gpt2")
    assert json.loads((folder / "cfg.json").read_text())["decoder_norm"] == norm
    back = discrete.load(folder)
    assert back.decoder_norm == norm and torch.equal(back.encode(x), module.encode(x))
    _, sl = _pair(norm)
    sl.save_inference_model(tmp_path / f"{norm}-trained")
    again = discrete.load(tmp_path / f"{norm}-trained")
    assert again.decoder_norm == norm
    dim = 1 if norm == "reference_rows" else 0
    torch.testing.assert_close(again.w_dec.norm(dim=dim), torch.ones(again.w_dec.shape[1 - dim]))


def test_training_config_refuses_an_unknown_decoder_norm() -> None:
    from headscope.errors import InputError

    with pytest.raises(InputError, match="decoder_norm"):
        discrete.DiscreteTrainingSAEConfig(d_in=4, d_sae=3, decoder_norm="columns")
