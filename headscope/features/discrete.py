"""The circuit finder's discrete SAE (circuits/sae.py) as a sae-lens architecture, saved and loaded in SAELens format.

The method — parameters `w_enc` [latents, d_in], `w_dec` [d_in, latents], `b_enc`, `b_tied`, and how `encode` /
`decode` normalise them — belongs to `headscope.circuits.sae.DiscreteSAE`. The sae-lens classes here keep those
four parameters under the same names and call DiscreteSAE's own `encode` / `decode` on them, so a change of the
method there changes these classes with it; nothing of the maths is copied. Registered with sae-lens as
architecture "headscope_discrete" (inference) and its training class, so `SAE.load_from_disk` reads a saved circuit
SAE, `SAETrainer` can train one, and `features` views can open it.

    save(module, folder, hook_name=..., model=...)   # a circuit run writes its SAE
    module = load(folder)                            # back as the circuits' DiscreteSAE
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from sae_lens.registry import (
    SAE_CLASS_REGISTRY,
    SAE_TRAINING_CLASS_REGISTRY,
    register_sae_class,
    register_sae_training_class,
)
from sae_lens.saes.sae import (
    SAE,
    SAEConfig,
    TrainingSAE,
    TrainingSAEConfig,
    TrainStepInput,
    TrainStepOutput,
)
from torch import Tensor, nn

from headscope.circuits.sae import DECODER_NORMS, DiscreteSAE, project_gradients, renormalise_
from headscope.errors import InputError
from headscope.files import read_json

ARCHITECTURE = "headscope_discrete"


@dataclass
class DiscreteSAEConfig(SAEConfig):
    apply_b_dec_to_input: bool = False  # the tied bias is applied by DiscreteSAE.encode itself
    decoder_norm: str = "reference_rows"  # the W_dec constraint it was trained under (circuits/sae.py)

    @classmethod
    def architecture(cls) -> str:
        return ARCHITECTURE


@dataclass
class DiscreteTrainingSAEConfig(TrainingSAEConfig):
    apply_b_dec_to_input: bool = False
    decoder_init_norm: float | None = None  # DiscreteSAE normalises its atoms on every forward
    l1_coefficient: float = 0.02
    decoder_norm: str = "reference_rows"  # "reference_rows" (the paper's code) or "atoms"; saved in cfg.json

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.decoder_norm not in DECODER_NORMS:
            raise InputError(
                f"decoder_norm must be one of {', '.join(DECODER_NORMS)}, got {self.decoder_norm!r}"
            )

    @classmethod
    def architecture(cls) -> str:
        return ARCHITECTURE


def _init_params(sae: Any) -> None:
    d_in, d_sae = sae.cfg.d_in, sae.cfg.d_sae
    kw = {"dtype": sae.dtype, "device": sae.device}
    sae.w_enc = nn.Parameter(torch.randn(d_sae, d_in, **kw))
    sae.w_dec = nn.Parameter(torch.randn(d_in, d_sae, **kw))
    sae.b_enc = nn.Parameter(torch.zeros(d_sae, **kw))
    sae.b_tied = nn.Parameter(torch.zeros(d_in, **kw))


def _encode(sae: Any, x: Tensor) -> Tensor:
    return DiscreteSAE.encode(cast(DiscreteSAE, sae), x.to(sae.dtype))


def _decode(sae: Any, f: Tensor) -> Tensor:
    return DiscreteSAE.decode(cast(DiscreteSAE, sae), f)


def _effective_rows(sae: Any) -> Tensor:
    """[latents, d_in]: decode(e_i) − decode(0), the atom each latent adds (the decoder is affine)."""
    eye = torch.eye(sae.cfg.d_sae, dtype=sae.dtype, device=sae.w_dec.device)
    return _decode(sae, eye) - _decode(sae, torch.zeros_like(eye[:1]))


class DiscreteCircuitSAE(SAE[DiscreteSAEConfig]):
    """Inference class: sae-lens hooks (`hook_sae_acts_post`, ...) around DiscreteSAE's encode / decode."""

    w_enc: nn.Parameter
    w_dec: nn.Parameter
    b_enc: nn.Parameter
    b_tied: nn.Parameter

    def initialize_weights(self) -> None:
        _init_params(self)

    def encode(self, x: Tensor) -> Tensor:
        hidden = self.hook_sae_input(x)
        return self.hook_sae_acts_post(_encode(self, hidden))

    def decode(self, feature_acts: Tensor) -> Tensor:
        return self.hook_sae_recons(_decode(self, feature_acts))

    @property
    def W_dec(self) -> Tensor:  # type: ignore[override]  # pyright: ignore[reportIncompatibleVariableOverride]
        return _effective_rows(self)

    @property
    def b_dec(self) -> Tensor:  # type: ignore[override]  # pyright: ignore[reportIncompatibleVariableOverride]
        return _decode(self, torch.zeros(1, self.cfg.d_sae, dtype=self.dtype, device=self.w_dec.device))[0]

    def fold_W_dec_norm(self) -> None:
        raise NotImplementedError("the discrete circuit SAE normalises its atoms itself; nothing to fold")

    def codes(self, x: Tensor) -> Tensor:
        """The discrete code of each row: the index of its largest latent (as the circuit finder reads it)."""
        return self.encode(x).argmax(-1)


class DiscreteCircuitTrainingSAE(TrainingSAE[DiscreteTrainingSAEConfig]):
    """Training class for sae-lens's SAETrainer with circuits/sae.py's constraint, step for step: before every
    forward the stored W_enc rows and W_dec rows (`reference_rows`) or columns (`atoms`) are replaced by their
    unit-norm copies, each gradient loses its component along those units (hooks registered here), and the loss is
    the same MSE(x̂, x) + l1 · mean ‖f‖₁ (mean over elements, not sae-lens's per-row sum). The saved inference
    model holds the renormalised weights (what the next forward would use) and its `decoder_norm`. sae-lens's
    trainer still clips the gradient norm to 1 (its own rule); below that the steps are the finder's."""

    w_enc: nn.Parameter
    w_dec: nn.Parameter
    b_enc: nn.Parameter
    b_tied: nn.Parameter

    def __init__(self, cfg: DiscreteTrainingSAEConfig, use_error_term: bool = False):
        super().__init__(cfg, use_error_term)
        renormalise_(self.w_enc, self.w_dec, cfg.decoder_norm)
        project_gradients(self.w_enc, self.w_dec, cfg.decoder_norm)

    def initialize_weights(self) -> None:
        _init_params(self)

    def get_coefficients(self) -> dict[str, Any]:
        return {"l1": self.cfg.l1_coefficient}

    def encode_with_hidden_pre(self, x: Tensor) -> tuple[Tensor, Tensor]:
        acts = self.hook_sae_acts_post(_encode(self, self.hook_sae_input(x)))
        return acts, acts

    def decode(self, feature_acts: Tensor) -> Tensor:
        return self.hook_sae_recons(_decode(self, feature_acts))

    def training_forward_pass(self, step_input: TrainStepInput) -> TrainStepOutput:
        renormalise_(self.w_enc, self.w_dec, self.cfg.decoder_norm)  # the stored weights, as the reference
        feature_acts, hidden_pre = self.encode_with_hidden_pre(step_input.sae_in)
        sae_out = self.decode(feature_acts)
        mse = (sae_out - step_input.sae_in).pow(2).mean()
        l1 = step_input.coefficients["l1"] * feature_acts.abs().sum(-1).mean()
        return TrainStepOutput(
            sae_in=step_input.sae_in, sae_out=sae_out, feature_acts=feature_acts, hidden_pre=hidden_pre,
            loss=mse + l1, losses={"mse_loss": mse, "l1_loss": l1},
        )  # fmt: skip

    def calculate_aux_loss(
        self, step_input: TrainStepInput, feature_acts: Tensor, hidden_pre: Tensor, sae_out: Tensor
    ) -> dict[str, Tensor]:
        return {"l1_loss": step_input.coefficients["l1"] * feature_acts.abs().sum(-1).mean()}

    def process_state_dict_for_saving_inference(self, state_dict: dict[str, Any]) -> None:
        """Save the unit-norm weights the next forward would use (DiscreteSAE.encode reads the stored ones)."""
        w_enc, w_dec = state_dict["w_enc"].clone(), state_dict["w_dec"].clone()
        renormalise_(w_enc, w_dec, self.cfg.decoder_norm)
        state_dict.update(w_enc=w_enc, w_dec=w_dec)

    @property
    def W_dec(self) -> Tensor:  # type: ignore[override]  # pyright: ignore[reportIncompatibleVariableOverride]
        return _effective_rows(self)

    def log_histograms(self) -> dict[str, Any]:
        return {}


def register() -> None:
    """Register both classes with sae-lens once (its registry refuses a second registration of a name)."""
    if ARCHITECTURE not in SAE_CLASS_REGISTRY:
        register_sae_class(ARCHITECTURE, DiscreteCircuitSAE, DiscreteSAEConfig)
    if ARCHITECTURE not in SAE_TRAINING_CLASS_REGISTRY:
        register_sae_training_class(ARCHITECTURE, DiscreteCircuitTrainingSAE, DiscreteTrainingSAEConfig)


register()


def from_module(module: DiscreteSAE, *, hook_name: str | None = None, model: str | None = None,
                metadata: dict[str, Any] | None = None) -> DiscreteCircuitSAE:  # fmt: skip
    """A circuits DiscreteSAE as the registered sae-lens class (weights copied, fp32, CPU)."""
    d_sae, d_in = module.w_enc.shape
    cfg = DiscreteSAEConfig(d_in=int(d_in), d_sae=int(d_sae), decoder_norm=module.decoder_norm)
    cfg.metadata.hook_name = hook_name
    cfg.metadata.model_name = model
    for key, value in (metadata or {}).items():
        cfg.metadata[key] = value
    sae = DiscreteCircuitSAE(cfg)
    state = {k: v.detach().float().cpu().clone() for k, v in module.state_dict().items()}
    sae.load_state_dict(state)
    return sae.eval()


def save(module: DiscreteSAE, folder: str | Path, *, hook_name: str | None = None, model: str | None = None,
         metadata: dict[str, Any] | None = None) -> Path:  # fmt: skip
    """Write a circuit SAE in SAELens format (cfg.json + sae_weights.safetensors); returns the folder."""
    out = Path(folder)
    sae = from_module(module, hook_name=hook_name, model=model, metadata=metadata)
    sae.save_model(out)
    return out


def load(folder: str | Path) -> DiscreteSAE:
    """A saved circuit SAE, back as the circuits' DiscreteSAE module."""
    from headscope.features.folder import load_folder

    sae = load_folder(folder)
    if not isinstance(sae, DiscreteCircuitSAE):
        raise InputError(f"{folder} holds a {sae.cfg.architecture()} SAE, not a discrete circuit SAE")
    norm = cast(Any, sae.cfg.decoder_norm)
    module = DiscreteSAE(int(sae.cfg.d_in), int(sae.cfg.d_sae), torch.Generator().manual_seed(0), norm)
    module.load_state_dict({k: v.float() for k, v in sae.state_dict().items()})
    return module.eval()


def read_config(folder: str | Path) -> dict[str, Any]:
    """The saved cfg.json (for reports that point to the SAE)."""
    return read_json(Path(folder) / "cfg.json", "SAE config")
