"""Activations and interventions shared by every circuit method: tokenised batches, the logit-difference metric,
per-head outputs for the SAE, and batched head patching (the ground truth, faithfulness, `circuits ablate`).

Heads are patched at `blocks.{l}.attn.hook_z` (per query head, before W_O): the same intervention as patching
`hook_result` (z_h W_O^h is linear in z_h) at a fraction of the memory. Effects are metric(clean) − metric(patched),
so a head the task needs has a positive effect.

**Batched runs that start at the patched layer.** `run_copies` runs the clean prompts once through the layers
before `start`, then, at `blocks.{start}.hook_resid_pre`, stacks n copies of that residual along the batch axis;
each copy then carries its own intervention through the remaining layers. Layers below `start` are computed once
for all copies: the clean cache at the patched layer, reused. Because the batch grows inside the forward, the
causal mask is passed as one [1, 1, pos, pos] boolean tensor that broadcasts over any batch (the model would
otherwise build a [batch, 1, pos, pos] mask for the original batch). Where the architecture allows it, only each
row's last position goes through the final norm and unembedding. The oracle (tests/unit/test_circuits_patching.py)
is the same intervention made one head per forward from the embeddings (`patched_metric`).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from headscope.circuits.tasks import Example, TaskData
from headscope.errors import InputError
from headscope.models import ModelHandle, hooks
from headscope.models.batch import Padded, pad_id, right_pad
from headscope.progress import StepCounter

Reduce = Literal["mean", "last"]
HookFn = Callable[[Tensor, Any], Tensor]
MAX_ROWS = 256  # rows (copies × prompts) per forward: bounds memory, and wider batches gain little on CPU

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

    def repeat(self, n: int) -> Answers:
        """The same answers for n stacked copies of the batch (copy-major rows)."""
        return Answers(*(t.repeat(n, 1) for t in (self.ans, self.ans_w, self.wrong, self.wrong_w)))


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

    @property
    def mode(self) -> str:
        return "paired" if self.paired else "mean_ablation"


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


def metric(handle: ModelHandle, batch: Batch, answers: Answers) -> Float[Tensor, " batch"]:
    """Per-example logit difference of one plain forward."""
    return logit_diff(final_logits(handle.forward(batch.ids), batch), answers)


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


def mean_sources(handle: ModelHandle, prep: Prepared) -> list[Tensor]:
    """Mean-ablation values: the negatives' mean z over examples and real positions, broadcast to every clean
    position (position-free, so it also works when negatives and positives do not align)."""
    m = prep.corrupt.mask.float()
    means = [torch.einsum("bphd,bp->hd", z, m) / m.sum() for z in z_cache(handle, prep.corrupt)]
    shape = (*prep.clean.ids.shape, handle.facts.n_heads, handle.facts.d_head)
    return [mu.expand(shape) for mu in means]


def patch_sources(handle: ModelHandle, prep: Prepared) -> list[Tensor]:
    """What each head's z is replaced by: the paired corrupted run's z, or (unpaired) mean-ablation values."""
    return z_cache(handle, prep.corrupt) if prep.paired else mean_sources(handle, prep)


# ---- batched runs from the patched layer -------------------------------------------------------------------------
def causal_mask(width: int, device: torch.device) -> Bool[Tensor, "1 1 pos pos"]:
    return torch.tril(torch.ones(width, width, dtype=torch.bool, device=device))[None, None]


_LAST_ONLY: weakref.WeakKeyDictionary[ModelHandle, bool] = weakref.WeakKeyDictionary()


def _last_position_only(handle: ModelHandle) -> bool:
    """Whether this architecture accepts a residual cut to one position before its final norm (Llama-style models
    do; GPT-2 reshapes to the input's length there). Probed once per handle on a two-token input."""
    if handle not in _LAST_ONLY:
        ids = torch.zeros((1, 2), dtype=torch.long, device=handle.device)
        cut = (hooks.resid(handle.facts.n_layers - 1, "post"), lambda x, hook: x[:, -1:])
        try:
            _LAST_ONLY[handle] = handle.forward(ids, fwd_hooks=[cut]).shape[1] == 1
        except RuntimeError:
            _LAST_ONLY[handle] = False
    return _LAST_ONLY[handle]


def _check_window(handle: ModelHandle, width: int) -> None:
    window = getattr(handle.hf_model.config, "sliding_window", None)
    if isinstance(window, int) and 0 < window < width:
        raise InputError(
            f"prompts of {width} tokens exceed this model's sliding attention window ({window}); "
            "batched patching assumes plain causal attention"
        )


def run_copies(
    handle: ModelHandle,
    batch: Batch,
    start: int,
    n_copies: int,
    fwd_hooks: Sequence[tuple[str, HookFn]] = (),
    *,
    expand: HookFn | None = None,
    grad: bool = False,
) -> Float[Tensor, "copy_batch d_vocab"]:
    """Final-position logits of n copies of `batch` (rows copy-major: copy k is rows k·B … (k+1)·B − 1) that
    share layers < `start` and diverge from `blocks.{start}.hook_resid_pre` on, where `expand` (default: repeat
    the residual n times) builds the copies. `fwd_hooks` see the stacked copies."""
    b, width = batch.ids.shape
    _check_window(handle, width)
    grow = expand or (lambda x, hook: x.repeat(n_copies, 1, 1))
    last = batch.last.repeat(n_copies)
    plan = [(hooks.resid(start, "pre"), grow), *fwd_hooks]
    cut = _last_position_only(handle)
    if cut:
        rows = torch.arange(n_copies * b, device=batch.ids.device)
        plan.append((hooks.resid(handle.facts.n_layers - 1, "post"), lambda x, hook: x[rows, last][:, None]))
    mask = causal_mask(width, batch.ids.device)
    logits = handle.run(batch.ids, fwd_hooks=plan, attention_mask=mask, grad=grad)
    if cut:
        return logits[:, 0]
    return logits[torch.arange(logits.shape[0], device=logits.device), last]


def _chunks(n: int, per: int) -> list[range]:
    return [range(i, min(n, i + per)) for i in range(0, n, per)]


def _replace(mask: Bool[Tensor, "copy head"], source: Tensor, b: int) -> HookFn:
    """A hook_z hook: in copy k, the heads where mask[k] is set take `source`'s z (shared by all copies)."""

    def hook(z: Tensor, hook: Any) -> Tensor:
        n = mask.shape[0]
        view = z.view(n, b, *z.shape[1:])
        keep = mask.to(z.device)[:, None, None, :, None]
        return torch.where(keep, source[None, :, : z.shape[1]], view).view_as(z)

    return hook


def patched_metrics(
    handle: ModelHandle,
    prep: Prepared,
    masks: Bool[Tensor, "copy layer head"],
    sources: Sequence[Tensor],
    *,
    max_rows: int = MAX_ROWS,
    progress: StepCounter | None = None,
) -> Float[Tensor, "copy batch"]:
    """Per-copy, per-pair logit difference on the clean prompts, where copy k's heads masks[k] take `sources`'
    z (the corrupted run's, or mean-ablation values). Each chunk of copies starts at its first patched layer."""
    b = prep.clean.ids.shape[0]
    out = torch.empty(masks.shape[0], b)
    chunks = _chunks(masks.shape[0], max(1, max_rows // b))
    for i, chunk in enumerate(chunks):
        m = masks[chunk.start : chunk.stop]
        layers = [int(x) for x in torch.nonzero(m.any(dim=(0, 2))).flatten()]
        start = layers[0] if layers else handle.facts.n_layers - 1
        plan = [(hooks.z(layer), _replace(m[:, layer], sources[layer], b)) for layer in layers]
        final = run_copies(handle, prep.clean, start, len(chunk), plan)
        out[chunk.start : chunk.stop] = logit_diff(final, prep.answers.repeat(len(chunk))).view(-1, b).cpu()
        if progress is not None:
            progress(i + 1, len(chunks))
    return out


# ---- activation patching (the ground truth) ----------------------------------------------------------------------
@dataclass(frozen=True)
class PatchingResult:
    per_pair: Float[Tensor, "batch layer head"]  # metric(clean) − metric(patched), per prompt pair
    clean_per_pair: Float[Tensor, " batch"]
    corrupt_per_pair: Float[Tensor, " batch"]
    mode: str  # "paired" or "mean_ablation"

    @property
    def effects(self) -> Float[Tensor, "layer head"]:
        return self.per_pair.mean(0)

    @property
    def clean_metric(self) -> float:
        return float(self.clean_per_pair.mean())

    @property
    def corrupt_metric(self) -> float:
        return float(self.corrupt_per_pair.mean())


def one_hot_masks(handle: ModelHandle, layer: int) -> Bool[Tensor, "head layer head"]:
    """One copy per head of `layer`, each patching that head alone."""
    n_l, n_h = handle.facts.n_layers, handle.facts.n_heads
    masks = torch.zeros(n_h, n_l, n_h, dtype=torch.bool)
    masks[torch.arange(n_h), layer, torch.arange(n_h)] = True
    return masks


def activation_patching(
    handle: ModelHandle,
    prep: Prepared,
    progress: StepCounter | None = None,
    layers: Sequence[int] | None = None,
) -> PatchingResult:
    """Per-head patching, corrupted → clean, every head of `layers` (others stay 0): one batched forward per
    layer holding one copy of the prompts per head, each starting at that layer."""
    clean = metric(handle, prep.clean, prep.answers).cpu()
    corrupt = metric(handle, prep.corrupt, prep.corrupt_answers).cpu()
    sources = patch_sources(handle, prep)
    n_l, n_h = handle.facts.n_layers, handle.facts.n_heads
    per_pair = torch.zeros(clean.shape[0], n_l, n_h)
    todo = list(range(n_l)) if layers is None else list(layers)
    for i, layer in enumerate(todo):
        patched = patched_metrics(handle, prep, one_hot_masks(handle, layer), sources)
        per_pair[:, layer] = (clean[None] - patched).T
        if progress is not None:
            progress(i + 1, len(todo))
    return PatchingResult(per_pair, clean, corrupt, prep.mode)


def patched_metric(handle: ModelHandle, prep: Prepared, layer: int, head: int, source: Tensor) -> float:
    """Mean logit difference on the clean prompts with head (layer, head)'s z replaced by `source`'s: one plain
    forward from the embeddings, one head — the unbatched reference the batched runs are checked against."""

    def patch(z: Tensor, hook: Any) -> Tensor:
        z = z.clone()
        z[:, :, head] = source[:, : z.shape[1], head]
        return z

    logits = handle.forward(prep.clean.ids, fwd_hooks=[(hooks.z(layer), patch)])
    return float(logit_diff(final_logits(logits, prep.clean), prep.answers).mean())


def activation_patching_unbatched(
    handle: ModelHandle, prep: Prepared, layers: Sequence[int], progress: StepCounter | None = None
) -> Float[Tensor, "layer head"]:
    """The previous implementation (one head per forward, each from the embeddings): the benchmark's baseline."""
    clean = float(metric(handle, prep.clean, prep.answers).mean())
    sources = patch_sources(handle, prep)
    effects = torch.zeros(handle.facts.n_layers, handle.facts.n_heads)
    todo = [(layer, head) for layer in layers for head in range(handle.facts.n_heads)]
    for i, (layer, head) in enumerate(todo):
        effects[layer, head] = clean - patched_metric(handle, prep, layer, head, sources[layer])
        if progress is not None:
            progress(i + 1, len(todo))
    return effects
