"""Patching baselines and the activations they share: tokenised batches, the logit-difference metric, per-head
outputs for the SAE, activation patching (the ground truth) and attribution patching (its gradient approximation).

Heads are patched at `blocks.{l}.attn.hook_z` (per query head, before W_O): the same intervention as patching
`hook_result` (z_h W_O^h is linear in z_h) at a fraction of the memory. Effects are metric(clean) − metric(patched),
so a head the task needs has a positive effect.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from headscope.circuits.tasks import Example, TaskData
from headscope.models import ModelHandle, hooks
from headscope.models.batch import Padded, pad_id, right_pad
from headscope.models.handle import graph_node

Progress = Callable[[int, int], None]
Reduce = Literal["mean", "last"]


Batch = Padded


def encode(handle: ModelHandle, prompts: Sequence[str], width: int | None = None) -> Batch:
    """Right-padded ids (`models.batch`): we read logits at each prompt's `last` token."""
    rows = [handle.tokenize(p)[0].tolist() for p in prompts]
    return right_pad(rows, pad_id(handle.tokenizer), handle.device, width=width)


@dataclass(frozen=True)
class Answers:
    """Per-example answer/wrong token sets as padded index + weight matrices (weights 1/|set|, 0 on padding)."""

    ans: Int[Tensor, "batch n_ans"]
    ans_w: Float[Tensor, "batch n_ans"]
    wrong: Int[Tensor, "batch n_wrong"]
    wrong_w: Float[Tensor, "batch n_wrong"]

    @staticmethod
    def of(examples: Sequence[Example], device: torch.device) -> Answers:
        def pack(sets: list[tuple[int, ...]]) -> tuple[Tensor, Tensor]:
            width = max(len(s) for s in sets)
            idx = torch.zeros((len(sets), width), dtype=torch.long)
            w = torch.zeros((len(sets), width))
            for i, s in enumerate(sets):
                idx[i, : len(s)], w[i, : len(s)] = torch.tensor(s), 1.0 / len(s)
            return idx.to(device), w.to(device)

        a, aw = pack([e.answers for e in examples])
        b, bw = pack([e.wrongs for e in examples])
        return Answers(a, aw, b, bw)


def final_logits(logits: Float[Tensor, "batch pos d_vocab"], batch: Batch) -> Float[Tensor, "batch d_vocab"]:
    return logits[torch.arange(logits.shape[0], device=logits.device), batch.last]


def logit_diff(final: Float[Tensor, "batch d_vocab"], answers: Answers) -> Float[Tensor, " batch"]:
    """mean(logits[answers]) − mean(logits[wrongs]) per example."""
    right = (final.gather(1, answers.ans) * answers.ans_w).sum(1)
    return right - (final.gather(1, answers.wrong) * answers.wrong_w).sum(1)


def accuracy(final: Float[Tensor, "batch d_vocab"], answers: Answers) -> Float[Tensor, " batch"]:
    """1 where the best right token beats every wrong one."""
    neg_inf = torch.finfo(final.dtype).min
    right = final.gather(1, answers.ans).masked_fill(answers.ans_w == 0, neg_inf).amax(1)
    wrong = final.gather(1, answers.wrong).masked_fill(answers.wrong_w == 0, neg_inf).amax(1)
    return (right > wrong).float()


@dataclass(frozen=True)
class Prepared:
    """Everything the methods share for one task on one model: encoded clean/corrupted prompts and answer sets."""

    clean: Batch
    corrupt: Batch
    answers: Answers  # for the clean prompts
    corrupt_answers: Answers  # negatives scored with their paired (or cyclically matched) positive's tokens
    paired: bool


def prepare(handle: ModelHandle, task: TaskData) -> Prepared:
    pos = [e.prompt for e in task.positives]
    lens = [handle.tokenize(p).shape[1] for p in pos]
    paired = task.aligned and len(task.negatives) == len(pos)
    if paired:
        paired = lens == [handle.tokenize(q).shape[1] for q in task.negatives]
    width = max(lens) if paired else None
    clean, corrupt = encode(handle, pos, width), encode(handle, task.negatives, width)
    matched = [task.positives[i % len(pos)] for i in range(len(task.negatives))]
    return Prepared(
        clean, corrupt, Answers.of(task.positives, handle.device), Answers.of(matched, handle.device), paired
    )


# ---- activations -------------------------------------------------------------------------------------------------
def head_outputs(
    handle: ModelHandle, batch: Batch, reduce: Reduce = "mean", layers: Sequence[int] | None = None
) -> Float[Tensor, "batch head_total d_model"]:
    """Each head's output written to the residual stream (hook_result), averaged over real positions or taken at
    the last one; heads flattened layer-major (index l·n_heads + h). Reduced inside the hook to spare memory."""
    out: list[Tensor] = []
    w = batch.mask.float() / batch.mask.sum(1, keepdim=True)
    rows = torch.arange(batch.ids.shape[0], device=batch.ids.device)

    def keep(act: Tensor, hook: Any) -> Tensor:
        red = act[rows, batch.last] if reduce == "last" else torch.einsum("bphd,bp->bhd", act, w)
        out.append(red.detach().float())
        return act

    layers = range(handle.facts.n_layers) if layers is None else layers
    handle.forward(batch.ids, fwd_hooks=[(hooks.attn(layer, "result"), keep) for layer in layers])
    return torch.cat(out, dim=1)


def z_cache(handle: ModelHandle, batch: Batch) -> list[Tensor]:
    """Every layer's hook_z [batch, pos, head, d_head] for `batch`."""
    names = [hooks.z(layer) for layer in range(handle.facts.n_layers)]
    _, cache = handle.run_with_cache(batch.ids, names)
    return [cache[n] for n in names]


def patch_sources(handle: ModelHandle, prep: Prepared) -> list[Tensor]:
    """What each head's z is replaced by: the paired corrupted run's z, or (unpaired) the negatives' mean z over
    examples and real positions (mean-ablation), broadcast to every clean position."""
    zs = z_cache(handle, prep.corrupt)
    if prep.paired:
        return zs
    m = prep.corrupt.mask.float()
    means = [torch.einsum("bphd,bp->hd", z, m) / m.sum() for z in zs]
    shape = (*prep.clean.ids.shape, handle.facts.n_heads, handle.facts.d_head)
    return [mu.expand(shape) for mu in means]


# ---- activation patching -----------------------------------------------------------------------------------------
def patched_metric(handle: ModelHandle, prep: Prepared, layer: int, head: int, source: Tensor) -> float:
    """Mean logit difference on the clean prompts with head (layer, head)'s z replaced by `source`'s."""

    def patch(z: Tensor, hook: Any) -> Tensor:
        z = z.clone()
        z[:, :, head] = source[:, : z.shape[1], head]
        return z

    logits = handle.forward(prep.clean.ids, fwd_hooks=[(hooks.z(layer), patch)])
    return float(logit_diff(final_logits(logits, prep.clean), prep.answers).mean())


@dataclass(frozen=True)
class PatchingResult:
    effects: Float[Tensor, "layer head"]  # metric(clean) − metric(patched)
    clean_metric: float
    corrupt_metric: float
    mode: str  # "paired" or "mean_ablation"


def activation_patching(
    handle: ModelHandle, prep: Prepared, progress: Progress | None = None, layers: Sequence[int] | None = None
) -> PatchingResult:
    """Exhaustive per-head patching, corrupted → clean: one forward pass per head (of `layers`; others stay 0)."""
    clean_logits = handle.forward(prep.clean.ids)
    clean = float(logit_diff(final_logits(clean_logits, prep.clean), prep.answers).mean())
    corrupt_logits = handle.forward(prep.corrupt.ids)
    corrupt = float(logit_diff(final_logits(corrupt_logits, prep.corrupt), prep.corrupt_answers).mean())
    sources = patch_sources(handle, prep)
    n_l, n_h = handle.facts.n_layers, handle.facts.n_heads
    effects = torch.zeros(n_l, n_h)
    todo = [(layer, head) for layer in (range(n_l) if layers is None else layers) for head in range(n_h)]
    for i, (layer, head) in enumerate(todo):
        effects[layer, head] = clean - patched_metric(handle, prep, layer, head, sources[layer])
        if progress is not None:
            progress(i + 1, len(todo))
    return PatchingResult(effects, clean, corrupt, "paired" if prep.paired else "mean_ablation")


# ---- attribution patching ----------------------------------------------------------------------------------------
def attribution_patching(handle: ModelHandle, prep: Prepared) -> Float[Tensor, "layer head"]:
    """First-order estimate of every head's patching effect from one forward and one backward pass:
    effect ≈ −Σ_{batch,pos,d_head} (z_source − z_clean) · ∂metric/∂z_clean.

    The gradient is taken with `torch.autograd.grad` on the hooked activations of a `grad=True` run.
    """
    sources = patch_sources(handle, prep)
    names = [hooks.z(layer) for layer in range(handle.facts.n_layers)]
    saved: dict[str, Tensor] = {}

    def keeper(name: str) -> Callable[[Tensor, Any], Tensor]:
        def keep(z: Tensor, hook: Any) -> Tensor:
            saved[name] = graph_node(z)
            return saved[name]

        return keep

    with torch.enable_grad():
        logits = handle.run(prep.clean.ids, fwd_hooks=[(n, keeper(n)) for n in names], grad=True)
        metric = logit_diff(final_logits(logits, prep.clean), prep.answers).mean()
        grads = torch.autograd.grad(metric, [saved[n] for n in names])
    rows = []
    for src, z, g in zip(sources, (saved[n] for n in names), grads, strict=True):
        delta = src[:, : z.shape[1]] - z.detach()
        rows.append(-(delta * g).sum(dim=(0, 1, 3)))
    return torch.stack(rows).detach().cpu()
