"""The discrete SAE of O'Neill & Bui (papers.md §2.3–§2.4): one small ReLU autoencoder shared by all heads.

Why a small torch module and not sae-lens's SAE classes: the paper's SAE has a tied pre-encoder/post-decoder
bias, unit-norm encoder rows and decoder atoms renormalised in every forward pass, and a plain L1 penalty on the
codes; sae-lens's StandardTrainingSAE weights its L1 by decoder norms, has untied biases, and its `SAETrainer`
is built for streamed activations (lr schedules, dead-feature tracking, checkpoints, logging). Here the whole
training set is ~10 × n_heads vectors trained full-batch for 500 steps: a 30-line module is exact to the
method, deterministic for a seed, and has no per-step overhead.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from headscope.errors import InputError


@dataclass(frozen=True)
class SAEConfig:
    n_latents: int = 200
    l1: float = 0.02
    lr: float = 1e-3
    epochs: int = 500

    def __post_init__(self) -> None:
        if not 2 <= self.n_latents <= 4096:
            raise InputError(f"n_latents must be in [2, 4096], got {self.n_latents}")
        if not 0 <= self.l1 <= 10:
            raise InputError(f"l1 must be in [0, 10], got {self.l1}")
        if not 0 < self.lr <= 1:
            raise InputError(f"lr must be in (0, 1], got {self.lr}")
        if not 1 <= self.epochs <= 10000:
            raise InputError(f"epochs must be in [1, 10000], got {self.epochs}")


class DiscreteSAE(nn.Module):
    """f = ReLU(Ŵ_enc (x − b) + b_enc), x̂ = Ŵ_dec f + b, with Ŵ the weights' rows (encoder: one per latent)
    and columns (decoder: one atom per latent) scaled to unit norm on every forward pass. We normalise decoder
    atoms, the intended constraint, not the per-input-dimension rows the reference code normalises (§2.3)."""

    def __init__(self, d_in: int, n_latents: int, generator: torch.Generator):
        super().__init__()
        self.w_enc = nn.Parameter(torch.randn(n_latents, d_in, generator=generator))
        self.w_dec = nn.Parameter(torch.randn(d_in, n_latents, generator=generator))
        self.b_enc = nn.Parameter(torch.zeros(n_latents))
        self.b_tied = nn.Parameter(torch.zeros(d_in))  # the geometric-median init is None in the paper: zeros

    def encode(self, x: Float[Tensor, "n d_model"]) -> Float[Tensor, "n latent"]:
        w = self.w_enc / self.w_enc.norm(dim=1, keepdim=True)
        return torch.relu((x - self.b_tied) @ w.T + self.b_enc)

    def decode(self, f: Float[Tensor, "n latent"]) -> Float[Tensor, "n d_model"]:
        w = self.w_dec / self.w_dec.norm(dim=0, keepdim=True)
        return f @ w.T + self.b_tied

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


def train_sae(x: Float[Tensor, "n d_model"], cfg: SAEConfig, seed: int) -> TrainedSAE:
    """Full-batch Adam; same data and seed → same weights (CPU float32 is deterministic here)."""
    if x.ndim != 2 or x.shape[0] < 1:
        raise InputError("SAE training data must be a non-empty [n, d_model] matrix")
    gen = torch.Generator().manual_seed(seed)
    sae = DiscreteSAE(x.shape[1], cfg.n_latents, gen).to(x.device)
    opt = torch.optim.Adam(sae.parameters(), lr=cfg.lr)
    losses: list[float] = []
    mses: list[float] = []
    with torch.enable_grad():
        for _ in range(cfg.epochs):
            opt.zero_grad(set_to_none=True)
            loss, mse = sae_loss(sae, x, cfg.l1)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            mses.append(float(mse.detach()))
    with torch.no_grad():
        final = float(sae_loss(sae, x, cfg.l1)[1])
    return TrainedSAE(sae.eval(), tuple(losses), mses[0], final)


@torch.no_grad()
def codes(sae: DiscreteSAE, x: Float[Tensor, "batch head_total d_model"]) -> Int[Tensor, "batch head_total"]:
    """The discrete code of each (example, head): the index of its largest latent."""
    f = sae.encode(x.reshape(-1, x.shape[-1]))
    return f.argmax(-1).reshape(x.shape[:-1])
