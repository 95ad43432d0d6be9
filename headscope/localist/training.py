"""Localist training: a small Llama-architecture causal LM trained from scratch with loss CE + Σ_l λ_l·Ω_l.

Model: `LlamaForCausalLM` (eager attention, rotary, tied embeddings, no dropout) so checkpoints load through
`ModelHandle`/TransformerBridge like any other model. Data, split, tokenizer and semantic blocks: `corpus`
(blocks are sentences; an article boundary always ends one). Ω, pointer targets and metrics: `train_objective`
(default Ω = mean attention mass outside the query's own sentence, over queries that have such keys).

Runs are seeded (model init and batch order derive from `seed` and the step number only) and resumable: every
`save_every` steps (and at the end) the output folder gets `model.safetensors` + `config.json` (HF format),
the tokenizer, `optimizer.safetensors` (AdamW moments) and `train_state.json` (step, config, loss history). A run
started again on the same folder with the same config continues from the saved step and ends bit-identical.
"""

from __future__ import annotations

import functools
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedModel, PreTrainedTokenizerFast

from headscope import checks
from headscope.attention.locality import LayerSchedule
from headscope.codec import JsonCodec, jfield
from headscope.errors import InputError
from headscope.files import read_json
from headscope.localist.corpus import EOT, Windows, pack_windows, split_articles, train_tokenizer
from headscope.localist.train_eval import EvalResult, evaluate
from headscope.localist.train_objective import PENALTIES, penalty

STATE_FILE = "train_state.json"
OPTIM_FILE = "optimizer.safetensors"
# the shared schedules (attention.locality.SCHEDULES) that need no per-layer list
TRAIN_SCHEDULES = ("uniform", "progressive")
_INTS = (("n_layers", 1, 24), ("d_model", 16, 2048), ("n_heads", 1, 32), ("d_mlp", 1, 65536),
         ("vocab_size", 260, 65536), ("ctx", 16, 1024), ("batch_size", 1, 512), ("steps", 1, 100_000),
         ("warmup", 0, 100_000), ("seed", 0, 2**31 - 1), ("eval_windows", 1, 1_000_000),
         ("save_every", 1, 100_000))  # fmt: skip


@dataclass(frozen=True)
class TrainConfig(JsonCodec):
    """One localist training run. Defaults: the 2-layer AILA-style model (~0.7 M parameters)."""

    lam: float = 0.0
    schedule: str = "uniform"
    beta: float = 1.0
    penalty: str = "leakage"
    n_layers: int = 2
    d_model: int = 128
    n_heads: int = 4
    d_mlp: int = 384
    vocab_size: int = 2048
    ctx: int = 128
    batch_size: int = 16
    steps: int = 400
    lr: float = 3e-3
    warmup: int = 30
    weight_decay: float = 0.01
    seed: int = 0
    eval_windows: int = 256
    max_train_windows: int | None = None  # None: the whole train split
    save_every: int = 100

    def __post_init__(self) -> None:
        set_ = functools.partial(object.__setattr__, self)
        set_("lam", checks.number(self.lam, "lam", 0.0, 1.0))
        checks.choice(self.schedule, "schedule", TRAIN_SCHEDULES)
        set_("beta", LayerSchedule(self.schedule, self.beta).beta)
        PENALTIES.check(self.penalty, field="penalty")
        for name, lo, hi in _INTS:
            set_(name, checks.integer(getattr(self, name), name, lo, hi))
        set_("lr", checks.number(self.lr, "lr", 1e-6, 1.0))
        set_("weight_decay", checks.number(self.weight_decay, "weight_decay", 0.0, 1.0))
        if self.max_train_windows is not None:
            set_("max_train_windows", checks.integer(self.max_train_windows, "max_train_windows", 1))
        if self.d_model % self.n_heads:
            raise InputError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")

    @property
    def lambdas(self) -> tuple[float, ...]:
        """λ_l per layer: the schedule the inference dial uses too (`attention.locality.LayerSchedule`)."""
        return LayerSchedule(self.schedule, self.beta).lambdas(self.lam, self.n_layers)


@dataclass(frozen=True)
class TrainResult(JsonCodec):
    out_dir: str
    config: TrainConfig
    steps_done: int
    seconds: float = jfield(digits=2)
    loss_history: tuple[tuple[int, float, float], ...] = jfield()  # (step, CE, Ω summed over layers)
    metrics: EvalResult = jfield(repr=False)


@dataclass(frozen=True)
class Corpus:
    tokenizer: PreTrainedTokenizerFast
    train: Windows
    test: Windows


@functools.cache
def build_corpus(vocab_size: int, ctx: int, max_train_windows: int | None, eval_windows: int) -> Corpus:
    """Tokenizer (trained on the train split) + train windows + the first `eval_windows` test windows."""
    train_arts = split_articles("train")
    tok = train_tokenizer((a.text for a in train_arts), vocab_size)
    train = pack_windows(tok, train_arts, ctx, max_train_windows)
    test = pack_windows(tok, split_articles("test"), ctx, eval_windows)
    return Corpus(tok, train, test)


def build_model(cfg: TrainConfig, tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    eot = int(tokenizer.convert_tokens_to_ids(EOT))  # type: ignore[arg-type]
    hf_cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.d_model,
        intermediate_size=cfg.d_mlp,
        num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_heads,
        max_position_embeddings=512,  # trained on `ctx`-token windows; rotary lets tabs read longer texts
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        tie_word_embeddings=True,
        attention_dropout=0.0,
    )
    hf_cfg._attn_implementation = "eager"  # attention probabilities are part of the loss
    hf_cfg.architectures = ["LlamaForCausalLM"]
    torch.manual_seed(cfg.seed)
    return LlamaForCausalLM(hf_cfg).float()


def _lr(cfg: TrainConfig, step: int) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(cfg.steps - cfg.warmup, 1)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def _batch(cfg: TrainConfig, windows: Windows, step: int) -> Windows:
    per_epoch = max(len(windows) // cfg.batch_size, 1)
    epoch, k = divmod(step, per_epoch)
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
    idx = torch.randperm(len(windows), generator=gen)[k * cfg.batch_size : (k + 1) * cfg.batch_size]
    return Windows(windows.ids[idx], windows.blocks[idx])


def loss_terms(model: PreTrainedModel, batch: Windows, cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(CE, Σ_l λ_l·Ω_l) for one batch."""
    out = model(input_ids=batch.ids, output_attentions=True)
    logits = out.logits[:, :-1]
    ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch.ids[:, 1:].reshape(-1))
    reg = logits.new_zeros(())
    for lam, attn in zip(cfg.lambdas, out.attentions, strict=True):
        if lam > 0:
            reg = reg + lam * penalty(attn, batch.blocks, cfg.penalty)
    return ce, reg


# -- resumable state (safetensors + JSON, never pickle) ---------------------------------------------------------
def _save_optimizer(opt: torch.optim.Optimizer, path: Path) -> None:
    tensors = {
        f"{idx}.{key}": val.detach().clone().contiguous()
        for idx, state in opt.state_dict()["state"].items()
        for key, val in state.items()
    }
    save_file(tensors, str(path))


def _load_optimizer(opt: torch.optim.Optimizer, path: Path) -> None:
    sd = opt.state_dict()
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, val in load_file(str(path)).items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = val
    opt.load_state_dict({"state": state, "param_groups": sd["param_groups"]})


def save_weights(model: PreTrainedModel, out: Path) -> None:
    """HF-loadable `model.safetensors` + `config.json` (written directly: no progress bar, no shared tensors)."""
    tied = {"lm_head.weight"} if model.config.tie_word_embeddings else set()
    sd = {k: v.detach().contiguous() for k, v in model.state_dict().items() if k not in tied}
    save_file(sd, str(out / "model.safetensors"), metadata={"format": "pt"})
    model.config.save_pretrained(out)


def save_checkpoint(
    out: Path, model: PreTrainedModel, tok: PreTrainedTokenizerFast, opt: torch.optim.Optimizer, state: dict
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    save_weights(model, out)
    tok.save_pretrained(out)
    _save_optimizer(opt, out / OPTIM_FILE)
    (out / STATE_FILE).write_text(json.dumps(state, indent=1), encoding="utf-8")


def _resume(out: Path, cfg: TrainConfig, model: PreTrainedModel, opt: torch.optim.Optimizer) -> dict:
    path = out / STATE_FILE
    if not path.is_file():
        return {"step": 0, "history": [], "seconds": 0.0}
    state = read_json(path, "training state")
    if state.get("config") != cfg.to_json():
        raise InputError(f"{out} holds a run with another config; use a new --out folder")
    weights = load_file(str(out / "model.safetensors"))
    model.load_state_dict(weights, strict=False)  # tied lm_head is not stored separately
    _load_optimizer(opt, out / OPTIM_FILE)
    return state


def _optimizer(model: PreTrainedModel, cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))


def train(
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    progress: bool = True,
    corpus: Corpus | None = None,
    until: int | None = None,
) -> TrainResult:
    """Train (or resume) one run into `out_dir` up to step `until` (default: all); evaluate; write metrics.json."""
    stop = cfg.steps if until is None else min(until, cfg.steps)
    out = Path(out_dir)
    corpus = corpus or build_corpus(cfg.vocab_size, cfg.ctx, cfg.max_train_windows, cfg.eval_windows)
    model = build_model(cfg, corpus.tokenizer)
    opt = _optimizer(model, cfg)
    state = _resume(out, cfg, model, opt)
    t0 = time.perf_counter() - state["seconds"]
    model.train()
    bar = tqdm(range(state["step"], stop), initial=state["step"], total=cfg.steps, disable=not progress,
               desc=f"λ={cfg.lam} {cfg.schedule}", leave=False)  # fmt: skip
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = _lr(cfg, step)
        ce, reg = loss_terms(model, _batch(cfg, corpus.train, step), cfg)
        opt.zero_grad(set_to_none=True)
        (ce + reg).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        state["history"].append([step, round(ce.item(), 5), round(reg.item(), 5)])
        bar.set_postfix(ce=f"{ce.item():.3f}", reg=f"{reg.item():.3f}")
        if (step + 1) % cfg.save_every == 0 or step + 1 == stop:
            state.update(step=step + 1, config=cfg.to_json(), seconds=time.perf_counter() - t0)
            save_checkpoint(out, model, corpus.tokenizer, opt, state)
    metrics = evaluate(model, corpus.test, penalty_kind=cfg.penalty)
    seconds = time.perf_counter() - t0
    result = TrainResult(str(out), cfg, state["step"], seconds, tuple(map(tuple, state["history"])), metrics)
    (out / "metrics.json").write_text(json.dumps(result.to_json(), indent=1), encoding="utf-8")
    return result
