"""Train an SAE with sae-lens's own trainer on activations from the offline Wikipedia train split, save it in
SAELens format with a card, judged on the held-out sets (heldout.py: the Wikipedia test split and the chat set).

Steps: collect the hook's activations (collect.py; reused if cached) → `TopKTrainingSAE` / `BatchTopKTrainingSAE`
/ `StandardTrainingSAE` trained by `SAETrainer(...).fit()` from a seeded, shuffled iterator over the stored rows
(epochs when `tokens` exceeds the split) → `save_inference_model` (folds a TopK SAE's decoder norms and the
activation scaling; a BatchTopK SAE becomes a JumpReLU SAE with its learned threshold) → stored in `dtype` (fp16
for shipping) → reloaded through `saes.load` and evaluated on each held-out set (evaluate.py), so the card's
figures are those of the file on disk.

`curve` token counts record an EV-vs-tokens curve during the same run: at each count, a copy of the SAE being
trained is saved as an inference SAE (the same folding as the final one) and its explained variance and L0 are
measured on the held-out sets' stored activations (no forward pass). The learning rate follows the run's own
cosine schedule, so an early point is the SAE part-way through this run, not a run that stopped there.

`init` continues training from a saved BatchTopK SAE (a fine-tune, issue 24: the shipped res15 / res24 went on
from their Wikipedia weights on the same articles rendered as chat conversations, collect.py's "chat" windows):
`continue_from` puts its weights into the training SAE in the training scale, exactly as `save_inference_model`
would give them back (up to the fp16 rounding of the stored unit decoder rows), the trainer starts fresh (Adam
state, warm-up, cosine schedule), and the card records both stages (`stages`) and one curve over the total tokens.

Inputs are scaled to mean ‖x‖ = √d_in during training (as sae-lens's `expected_average_only_in`; folded into the weights
at the end), so one learning rate and L1 coefficient fit every model and hook.
"""

from __future__ import annotations

import copy
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from headscope import checks
from headscope.codec import JsonCodec, jfield
from headscope.errors import InputError
from headscope.features import collect as collect_mod
from headscope.features import heldout, saes
from headscope.features.evaluate import EvalConfig, activation_figures, evaluate_heldout
from headscope.features.sites import TRAIN_KINDS, Site, site
from headscope.models.handle import ModelHandle
from headscope.progress import Progress, part

ARCHITECTURES: tuple[str, ...] = ("topk", "batchtopk", "standard")
CARD_FORMAT = "headscope-sae-card/2"
CHECK_TOKENS = 1024  # the first tokens of each held-out set: the slice a test re-measures against the card


@dataclass(frozen=True)
class TrainConfig:
    kind: str
    layer: int
    latents: int
    architecture: str = "topk"
    k: int = 32
    tokens: int = 1_000_000
    batch_size: int = 4096
    lr: float = 4e-4
    l1: float = 5.0  # standard architecture only
    seed: int = 0
    ctx: int = collect_mod.DEFAULT_CTX
    eval_tokens: int = 51_200
    corpus: str = "wiki"
    dtype: str = "float16"
    render: str = "plain"  # the train split as plain text windows or as chat conversations (collect.py)
    # activation rows collected (None: `tokens`); with fewer rows, `tokens` samples are drawn in several epochs
    rows: int | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # store what the checks return: "64" and 64.0 become 64
        checks.choice(self.kind, "hook", TRAIN_KINDS)
        set_(self, "layer", checks.integer(self.layer, "layer", 0, 1000))
        set_(self, "latents", checks.integer(self.latents, "latents", 8, 65536))
        checks.choice(self.architecture, "architecture", ARCHITECTURES)
        set_(self, "k", checks.integer(self.k, "topk", 1, self.latents))
        set_(self, "tokens", checks.integer(self.tokens, "tokens", 256, 10**9))
        set_(self, "batch_size", checks.integer(self.batch_size, "batch_size", 16, 65536))
        set_(self, "lr", checks.number(self.lr, "lr", 0, 1, lo_open=True))
        set_(self, "l1", checks.number(self.l1, "l1", 0, 1000))
        set_(self, "seed", checks.integer(self.seed, "seed", 0, 2**31 - 1))
        set_(self, "ctx", checks.integer(self.ctx, "ctx", 8, 4096))
        set_(self, "eval_tokens", checks.integer(self.eval_tokens, "eval_tokens", 0, 10**8))
        checks.choice(self.corpus, "corpus", collect_mod.CORPORA)
        checks.choice(self.dtype, "dtype", ("float16", "float32"))
        checks.choice(self.render, "render", collect_mod.RENDERS)
        if self.rows is not None:
            set_(self, "rows", checks.integer(self.rows, "rows", self.batch_size, 10**9))

    @property
    def site(self) -> Site:
        return site(self.kind, self.layer)

    @property
    def steps(self) -> int:
        return max(1, self.tokens // self.batch_size)


@dataclass(frozen=True)
class TrainResult(JsonCodec):
    folder: Path = jfield(encode=str, decode=Path)
    card: dict[str, Any] = jfield(default_factory=dict)


@dataclass(frozen=True)
class CurvePoint(JsonCodec):
    """Held-out explained variance and L0 after `tokens` training samples (see the module docstring)."""

    tokens: int
    explained_variance: dict[str, float] = jfield(digits=5)
    l0: dict[str, float] = jfield(digits=3)


def row_batches(rows: np.ndarray, batch_size: int, seed: int, scale: float = 1.0) -> Iterator[Tensor]:
    """Endless shuffled fp32 batches of the stored rows × `scale`: a new seeded permutation each epoch."""
    n = rows.shape[0]
    if n < batch_size:
        raise InputError(f"only {n} activation rows were collected; the batch size is {batch_size}")
    rng = np.random.default_rng(seed)
    while True:
        perm = rng.permutation(n)
        for i in range(0, n - batch_size + 1, batch_size):
            yield torch.from_numpy(rows[np.sort(perm[i : i + batch_size])].astype(np.float32)) * scale


def input_stats(rows: np.ndarray, d_in: int, seed: int, sample: int = 65_536) -> tuple[float, Tensor]:
    """(s, mean): the scale that brings the mean row norm to √d_in (SAELens's `expected_average_only_in`), and
    the mean of the scaled rows, from a seeded sample. The mean initialises b_dec, as SAELens's runner does:
    from zeros, Adam would need thousands of steps to move b_dec to the data's offset (‖mean‖ ≈ 0.75 ‖x‖ in
    SmolLM2's residual stream) and the first hundreds of steps would fit the offset instead of features."""
    idx = np.sort(
        np.random.default_rng(seed).choice(rows.shape[0], min(sample, rows.shape[0]), replace=False)
    )
    x = torch.from_numpy(rows[idx].astype(np.float32))
    scale = float(d_in**0.5 / x.norm(dim=-1).mean().clamp_min(1e-12))
    return scale, (x * scale).mean(0)


def _training_sae(cfg: TrainConfig, d_in: int, hook: str, model: str) -> Any:
    from sae_lens import (
        BatchTopKTrainingSAE,
        BatchTopKTrainingSAEConfig,
        StandardTrainingSAE,
        StandardTrainingSAEConfig,
        TopKTrainingSAE,
        TopKTrainingSAEConfig,
    )

    common: dict[str, Any] = {
        "d_in": d_in,
        "d_sae": cfg.latents,
        "normalize_activations": "none",  # inputs arrive scaled (input_stats); the scale is folded in after
    }
    torch.manual_seed(cfg.seed)  # sae-lens initialises its weights from the global generator
    if cfg.architecture == "topk":
        sae = TopKTrainingSAE(TopKTrainingSAEConfig(k=cfg.k, **common))
    elif cfg.architecture == "batchtopk":  # k latents per row on average over a batch; saved as JumpReLU
        sae = BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(k=float(cfg.k), **common))
    else:
        sae = StandardTrainingSAE(StandardTrainingSAEConfig(l1_coefficient=cfg.l1, l1_warm_up_steps=cfg.steps // 20,
                                                            **common))  # fmt: skip
    sae.cfg.metadata.hook_name = hook
    sae.cfg.metadata.model_name = model
    sae.cfg.metadata.context_size = cfg.ctx
    sae.cfg.metadata.prepend_bos = False
    return sae


Recorder = Callable[[Any, int], None]  # (the training SAE, samples trained on so far)


def with_checkpoints(
    batches: Iterator[Tensor], points: list[int], record: Recorder, sae: Any
) -> Iterator[Tensor]:
    """`batches`, calling `record(sae, served)` before the first batch past each point: the trainer asks for a
    batch only after stepping on the previous one, so the SAE has then seen exactly `served` samples."""
    pending, served = sorted(points), 0
    for batch in batches:
        while pending and served >= pending[0]:
            record(sae, served)
            pending.pop(0)
        yield batch
        served += batch.shape[0]


def inference_copy(sae: Any, scale: float, folder: Path) -> Any:
    """What `save_inference_model` would make of the SAE now (scaling folded in), without touching it."""
    snap = copy.deepcopy(sae)
    snap.fold_activation_norm_scaling_factor(scale)
    snap.save_inference_model(folder)
    return saes.load_folder(folder)


@torch.no_grad()
def continue_from(sae: Any, src: Any, scale: float) -> None:
    """Put a saved BatchTopK SAE's weights (`src`: the JumpReLU inference SAE it was saved as, reading raw
    activations) into a fresh BatchTopK training SAE that reads activations × `scale`.

    Training computes h = ((s·x − b_dec) W_enc + b_enc) · ‖W_dec‖ (per latent), keeps the batch's top k·rows
    values and decodes f / ‖W_dec‖ · W_dec + b_dec; saving divides by s and folds ‖W_dec‖ into the encoder. So
    W_dec = W'_dec, W_enc = W'_enc / ‖W'_dec‖, b_enc = s·b'_enc / ‖W'_dec‖, b_dec = s·b'_dec and the running
    threshold s·θ' give h = s·(pre-activation of src) and save back to src's weights."""
    arch = getattr(getattr(src.cfg, "metadata", None), "training_architecture", None)
    if type(sae).__name__ != "BatchTopKTrainingSAE" or arch != "batchtopk":
        raise InputError(
            f"a fine-tune continues a BatchTopK SAE as BatchTopK; got {arch!r} → {type(sae).__name__}"
        )
    if (src.cfg.d_in, src.cfg.d_sae) != (sae.cfg.d_in, sae.cfg.d_sae):
        raise InputError(
            f"the SAE to continue is {src.cfg.d_in}→{src.cfg.d_sae}, the recipe {sae.cfg.d_in}→{sae.cfg.d_sae}"
        )
    w_dec = src.W_dec.detach().float()
    norm = w_dec.norm(dim=-1).clamp_min(1e-12)
    sae.W_dec.copy_(w_dec)
    sae.W_enc.copy_(src.W_enc.detach().float() / norm)
    sae.b_enc.copy_(scale * src.b_enc.detach().float() / norm)
    sae.b_dec.copy_(scale * src.b_dec.detach().float())
    sae.topk_threshold.fill_(scale * float(src.threshold.detach().double().mean()))


def _fit(cfg: TrainConfig, sae: Any, rows: np.ndarray, record: Callable[[Any, int], None] | None = None,
         points: tuple[int, ...] = (), init: Any = None) -> tuple[Any, int, float]:  # fmt: skip
    from sae_lens import LoggingConfig, SAETrainer
    from sae_lens.config import SAETrainerConfig

    steps = cfg.steps
    scale, mean = input_stats(rows, sae.cfg.d_in, cfg.seed)
    if init is None:
        with torch.no_grad():
            sae.b_dec.copy_(mean)
    else:
        continue_from(sae, init, scale)
    trainer_cfg = SAETrainerConfig(
        total_training_samples=steps * cfg.batch_size, train_batch_size_samples=cfg.batch_size, lr=cfg.lr,
        lr_end=cfg.lr / 10, lr_scheduler_name="cosineannealing", lr_warm_up_steps=max(1, steps // 20),
        dead_feature_window=max(10, min(1000, steps // 8)), feature_sampling_window=max(20, steps),
        logger=LoggingConfig(log_to_wandb=False),
    )  # fmt: skip
    batches = row_batches(rows, cfg.batch_size, cfg.seed, scale)
    if record is not None and points:
        batches = with_checkpoints(
            batches, list(points), lambda s, n: record(inference_copy_of(s, scale), n), sae
        )
    trainer = SAETrainer(cfg=trainer_cfg, sae=sae, data_provider=batches)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trained = trainer.fit()
    trained.fold_activation_norm_scaling_factor(scale)  # the SAE now reads raw activations
    return trained, trainer.n_training_samples, time.perf_counter() - t0


def inference_copy_of(sae: Any, scale: float) -> Any:
    with tempfile.TemporaryDirectory() as tmp:
        return inference_copy(sae, scale, Path(tmp))


def _save(trained: Any, out: Path, dtype: str) -> None:
    trained.save_inference_model(out)
    if dtype != "float32":  # reload the inference SAE and store it in the shipping dtype
        sae = saes.load_folder(out)
        sae.to(getattr(torch, dtype)).save_model(out)


def heldout_activations(handle: ModelHandle, site: Site, ctx: int, max_tokens: int, corpus: str = "wiki",
                        batch_size: int = 8) -> dict[str, Tensor]:  # fmt: skip
    """Each held-out set's activations at the site (positions ≥ 1 of each sequence, padding dropped), fp32: the
    test split's from the activation store (collected once for every hook, as the train split's), the chat set's
    by a forward pass (it is small)."""
    windows = max(1, max_tokens // ctx)  # the windows `heldout.wiki_test` evaluates
    kept = windows * (ctx - 1)
    store = collect_mod.collect(handle, [site], "test", ctx=ctx, max_tokens=kept, corpus=corpus)  # type: ignore[arg-type]
    out = {"wiki-test": torch.from_numpy(np.asarray(store.array(site.hook)[:kept], dtype=np.float32))}
    seqs = heldout.chat(handle, ctx, max_tokens)
    rows = []
    for lo in range(0, seqs.tokens.shape[0], batch_size):
        acts = collect_mod.capture(handle, seqs.tokens[lo : lo + batch_size], [site.hook])[site.hook]
        rows += [acts[i, 1:n].float().cpu() for i, n in enumerate(seqs.lengths[lo : lo + batch_size])]
    out["chat"] = torch.cat(rows)
    return out


def train(handle: ModelHandle, cfg: TrainConfig, out: str | Path, *, name: str | None = None,
          progress: Progress | None = None, curve: tuple[int, ...] = (),
          init: saes.FeatureSAE | None = None) -> TrainResult:  # fmt: skip
    """Collect, train, save (SAELens format + card.json) and evaluate one SAE on the held-out sets; with `init`,
    continue from that SAE (a fine-tune: its card's stages and curve come first on the new card)."""
    st = cfg.site.check(handle.facts.n_layers)
    if init is not None and init.hook != st.hook:
        raise InputError(f"the SAE to continue reads {init.hook}, the recipe {st.hook}")
    folder = Path(out)
    t0 = time.perf_counter()
    step = part(progress, 0.0, 0.3)  # collecting, training, evaluating: roughly 30 / 50 / 20 % of the time
    store = collect_mod.collect(
        handle, [st], "train", ctx=cfg.ctx, max_tokens=cfg.rows or cfg.tokens,
        corpus=cfg.corpus, render=cfg.render, progress=step,  # type: ignore[arg-type]
    )  # fmt: skip
    rows = store.array(st.hook)
    if cfg.rows is not None:
        rows = rows[: cfg.rows]  # the recipe's rows, however many the store holds
    collect_seconds = time.perf_counter() - t0
    points: list[CurvePoint] = []
    record = None
    if curve:
        held = heldout_activations(handle, st, cfg.ctx, max(cfg.eval_tokens, CHECK_TOKENS), cfg.corpus)
        record = lambda sae, n: points.append(_point(sae, held, n))  # noqa: E731
    sae = _training_sae(cfg, handle.facts.d_model, st.hook, handle.identity.name)
    part(progress, 0.3, 0.8)("train SAE", 0.0)
    trained, seen, seconds = _fit(
        cfg, sae, rows, record, tuple(c for c in curve if c < cfg.steps * cfg.batch_size),
        None if init is None else init.sae,
    )  # fmt: skip
    _save(trained, folder, cfg.dtype)
    card = _card(handle, cfg, name or folder.name, seen, seconds, collect_seconds)
    if curve:
        points.append(_point(saes.load_folder(folder), held, seen))  # the shipped file itself, last
        card["curve"] = [p.to_json() for p in points]
    if init is not None:
        card = continued_card(init.card, card)
    saes.write_card(folder, card)
    if cfg.eval_tokens > 0:
        card["heldout"] = heldout_card(handle, saes.load(handle, folder), cfg, part(progress, 0.8, 1.0))
        saes.write_card(folder, card)
    return TrainResult(folder, card)


def _point(sae: Any, held: dict[str, Tensor], tokens: int) -> CurvePoint:
    figures = {name: activation_figures(sae, x) for name, x in held.items()}
    return CurvePoint(tokens, {n: f[0] for n, f in figures.items()}, {n: f[1] for n, f in figures.items()})


def heldout_card(handle: ModelHandle, fsae: Any, cfg: TrainConfig, progress: Progress | None = None) -> dict:
    """The card's held-out figures: each set up to `eval_tokens` tokens, and the first CHECK_TOKENS again (what
    the shipped-SAE test re-measures, so a card is checked against the file, not read back)."""
    out: dict[str, Any] = {}
    for i, name in enumerate(heldout.SETS):
        step = part(progress, i / len(heldout.SETS), (i + 1) / len(heldout.SETS))
        full = evaluate_heldout(handle, [fsae], name, cfg=EvalConfig(cfg.ctx, max_tokens=cfg.eval_tokens),
                                corpus=cfg.corpus, progress=step)[0]  # fmt: skip
        check = evaluate_heldout(handle, [fsae], name, cfg=EvalConfig(cfg.ctx, max_tokens=min(CHECK_TOKENS, cfg.eval_tokens)),
                                 corpus=cfg.corpus)[0]  # fmt: skip
        out[name] = {**full.to_json(), "check": {k: check.to_json()[k] for k in CHECK_KEYS}}
    return out


CHECK_KEYS = ("tokens", "explained_variance", "l0", "ce_loss_with_sae", "kl_div")
STAGE_KEYS = ("tokens_seen", "training_seconds", "collect_seconds", "data", "config", "threads")


def continued_card(base: dict[str, Any], card: dict[str, Any]) -> dict[str, Any]:
    """The card of an SAE trained in stages: `stages` lists each stage (the base card's own stages, or the base
    itself, then this one); `tokens_seen` and `training_seconds` are the totals; the curve is the base's followed
    by this stage's points at base tokens + the stage's tokens. `data` and `config` are the last stage's."""
    earlier: list[dict[str, Any]] = list(base.get("stages") or [{k: base.get(k) for k in STAGE_KEYS}])
    data = earlier[0].get("data")
    if "stages" not in base and isinstance(data, dict):  # a card from before `render` existed: plain windows
        earlier[0]["data"] = {"render": "plain", **data}
    offset = int(base.get("tokens_seen") or 0)
    out = {**card, "stages": [*earlier, {k: card.get(k) for k in STAGE_KEYS}]}
    out["tokens_seen"] = offset + int(card["tokens_seen"])
    out["training_seconds"] = round(
        float(base.get("training_seconds") or 0) + float(card["training_seconds"]), 1
    )
    if "curve" in card:
        shifted = [{**p, "tokens": offset + int(p["tokens"])} for p in card["curve"]]
        out["curve"] = [*base.get("curve", []), *shifted]
    return out


def _card(
    handle: ModelHandle, cfg: TrainConfig, name: str, seen: int, seconds: float, collect_seconds: float
) -> dict:
    import sae_lens

    return {
        "format": CARD_FORMAT, "name": name,
        "model": {"name": handle.identity.name, "sha256": handle.identity.sha256},
        "hook": cfg.site.hook, "kind": cfg.kind, "layer": cfg.layer, "architecture": cfg.architecture,
        "d_in": handle.facts.d_model, "d_sae": cfg.latents, "k": None if cfg.architecture == "standard" else cfg.k,
        "tokens_seen": seen, "training_seconds": round(seconds, 1), "collect_seconds": round(collect_seconds, 1),
        "data": {"corpus": cfg.corpus, "render": cfg.render, "split": "train", "ctx": cfg.ctx, "position_0": "excluded"},
        "config": asdict(cfg), "dtype": cfg.dtype, "sae_lens_version": sae_lens.__version__,
        "threads": torch.get_num_threads(),
    }  # fmt: skip
