"""The discrete SAE of O'Neill & Bui (papers.md §2.3–§2.4): one small ReLU autoencoder shared by all heads, built
as the paper's reference code builds it.

f = ReLU(W_enc (x − b_tied) + b_enc), x̂ = W_dec f + b_tied (no decoder bias). Both weight matrices are stored
[out, in] (W_enc: [latent, d_model], W_dec: [d_model, latent]) and kept unit-norm the reference's way
(`ConstrainedUnitNormLinear`): on every step the **stored** weights are replaced by their normalised copy before the
forward pass, and a gradient hook removes each gradient's component parallel to its normalised unit. W_enc is
normalised per row (one unit vector per latent). W_dec, with `decoder_norm`:
- `reference_rows` (default, as the reference): per row, i.e. for each input dimension across the latents;
- `atoms`: per column, one unit dictionary atom per latent (the Anthropic-style constraint the code's comments
  describe).
Loss: MSE(x̂, x) + λ·mean over rows of ‖f‖₁, with λ per task (0.02 for IOI and greater-than, 0.05 for docstring).
Adam, lr 1e-3, 500 full-batch epochs on the vectors of 10 examples.

Why a small torch module and not sae-lens's classes: sae-lens's StandardTrainingSAE weights its L1 by decoder
norms and has untied biases, and its `SAETrainer` is built for streamed activations; here the whole training set
is ~10 × n_heads vectors trained full-batch for 500 steps. The parameter names (w_enc, w_dec, b_enc, b_tied)
and `encode`/`decode` are kept stable: the features package registers this architecture with sae-lens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from headscope import checks
from headscope.errors import InputError
from headscope.progress import StepCounter

DecoderNorm = Literal["reference_rows", "atoms"]
DECODER_NORMS: tuple[str, ...] = ("reference_rows", "atoms")
TASK_L1 = {"docstring": 0.05}  # papers.md §2.3; every other task: DEFAULT_L1
DEFAULT_L1 = 0.02


def task_l1(task: str) -> float:
    return TASK_L1.get(task, DEFAULT_L1)


@dataclass(frozen=True)
class SAEConfig:
    json_ignore_unknown = True  # read back from reports: keys older or newer versions wrote are ignored

    n_latents: int = 200
    l1: float | None = None  # None: the task's value (task_l1)
    lr: float = 1e-3
    epochs: int = 500
    decoder_norm: DecoderNorm = "reference_rows"

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "n_latents", checks.integer(self.n_latents, "n_latents", 2, 4096))
        if self.l1 is not None:
            set_(self, "l1", checks.number(self.l1, "l1", 0, 10))
        set_(self, "lr", checks.number(self.lr, "lr", 0, 1, lo_open=True))
        set_(self, "epochs", checks.integer(self.epochs, "epochs", 1, 10000))
        set_(self, "decoder_norm", checks.choice(self.decoder_norm, "decoder_norm", DECODER_NORMS))

    def l1_for(self, task: str) -> float:
        return task_l1(task) if self.l1 is None else float(self.l1)


def _unit(w: Tensor, dim: int) -> Tensor:
    return w / w.norm(dim=dim, keepdim=True).clamp_min(1e-12)


def decoder_dim(decoder_norm: str) -> int:
    """The axis W_dec [d_in, latent] is normalised over: 1 = per row (reference), 0 = per column (atom)."""
    return 1 if decoder_norm == "reference_rows" else 0


@torch.no_grad()
def renormalise_(w_enc: Tensor, w_dec: Tensor, decoder_norm: str) -> None:
    """Write the unit-norm weights into the stored parameters (the reference does this in every forward)."""
    w_enc.copy_(_unit(w_enc, 1))
    w_dec.copy_(_unit(w_dec, decoder_dim(decoder_norm)))


def project_gradients(w_enc: Tensor, w_dec: Tensor, decoder_norm: str) -> None:
    """Register the reference's gradient hooks: each gradient loses its component along the normalised units."""
    w_enc.register_hook(lambda g: tangent(g, w_enc, 1))
    w_dec.register_hook(lambda g: tangent(g, w_dec, decoder_dim(decoder_norm)))


def tangent(grad: Tensor, w: Tensor, dim: int) -> Tensor:
    """The gradient without its component along each normalised unit of w."""
    unit = _unit(w.detach(), dim)
    return grad - (grad * unit).sum(dim, keepdim=True) * unit


class DiscreteSAE(nn.Module):
    """f = ReLU(W_enc (x − b_tied) + b_enc), x̂ = W_dec f + b_tied, with unit-norm W_enc rows and W_dec rows
    (`reference_rows`) or columns (`atoms`)."""

    def __init__(
        self,
        d_in: int,
        n_latents: int,
        generator: torch.Generator,
        decoder_norm: DecoderNorm = "reference_rows",
    ):
        super().__init__()
        self.decoder_norm = decoder_norm
        self.w_enc = nn.Parameter(torch.randn(n_latents, d_in, generator=generator))
        self.w_dec = nn.Parameter(torch.randn(d_in, n_latents, generator=generator))
        self.b_enc = nn.Parameter(torch.zeros(n_latents))
        self.b_tied = nn.Parameter(
            torch.zeros(d_in)
        )  # the geometric-median init is None in the reference: zeros
        self.renormalise()
        project_gradients(self.w_enc, self.w_dec, decoder_norm)

    @property
    def dec_dim(self) -> int:
        """The axis W_dec is normalised over: 1 = per row (reference), 0 = per column (atom)."""
        return decoder_dim(self.decoder_norm)

    def renormalise(self) -> None:
        """Write the unit-norm weights into the stored parameters (the reference does this in every forward)."""
        renormalise_(self.w_enc, self.w_dec, self.decoder_norm)

    def encode(self, x: Float[Tensor, "n d_model"]) -> Float[Tensor, "n latent"]:
        return torch.relu((x - self.b_tied) @ self.w_enc.T + self.b_enc)

    def decode(self, f: Float[Tensor, "n latent"]) -> Float[Tensor, "n d_model"]:
        return f @ self.w_dec.T + self.b_tied

    def forward(self, x: Float[Tensor, "n d_model"]) -> tuple[Tensor, Tensor]:
        f = self.encode(x)
        return self.decode(f), f


def sae_loss(sae: DiscreteSAE, x: Tensor, l1: float) -> tuple[Tensor, Tensor]:
    """(total, reconstruction): MSE(x̂, x) + l1 · mean over rows of ‖f‖₁."""
    x_hat, f = sae(x)
    mse = (x_hat - x).pow(2).mean()
    return mse + l1 * f.abs().sum(-1).mean(), mse


@dataclass(frozen=True)
class TrainedSAE:
    sae: DiscreteSAE
    losses: tuple[float, ...]  # total loss per epoch
    mse_first: float
    mse_last: float
    l1: float


def train_sae(
    x: Float[Tensor, "n d_model"],
    cfg: SAEConfig,
    seed: int,
    *,
    l1: float | None = None,
    tick: StepCounter | None = None,
) -> TrainedSAE:
    """Full-batch Adam; same data and seed → same weights (CPU float32 is deterministic here). `l1` overrides
    the config's (the finder passes the task's value); `tick(epoch, epochs)` every 10 epochs and at the end (the
    progress line's "SAE: epoch 230/500")."""
    if x.ndim != 2 or x.shape[0] < 1:
        raise InputError("SAE training data must be a non-empty [n, d_model] matrix")
    weight = cfg.l1_for("") if l1 is None else l1
    gen = torch.Generator().manual_seed(seed)
    sae = DiscreteSAE(x.shape[1], cfg.n_latents, gen, cfg.decoder_norm).to(x.device)
    opt = torch.optim.Adam(sae.parameters(), lr=cfg.lr)
    losses: list[float] = []
    mses: list[float] = []
    with torch.enable_grad():
        for epoch in range(cfg.epochs):
            if tick is not None and epoch % 10 == 0:
                tick(epoch, cfg.epochs)
            sae.renormalise()
            opt.zero_grad(set_to_none=True)
            loss, mse = sae_loss(sae, x, weight)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            mses.append(float(mse.detach()))
    if tick is not None:
        tick(cfg.epochs, cfg.epochs)
    sae.renormalise()  # the stored weights end unit-norm, as the next reference forward would leave them
    with torch.no_grad():
        final = float(sae_loss(sae, x, weight)[1])
    return TrainedSAE(sae.eval(), tuple(losses), mses[0], final, weight)


@torch.no_grad()
def codes(sae: DiscreteSAE, x: Float[Tensor, "batch head_total d_model"]) -> Int[Tensor, "batch head_total"]:
    """The discrete code of each (example, head): the index of its largest latent."""
    f = sae.encode(x.reshape(-1, x.shape[-1]))
    return f.argmax(-1).reshape(x.shape[:-1])
