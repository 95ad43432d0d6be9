"""Edge attribution over MIB's model graph (papers.md §10.1): EAP and EAP-IG, every edge of the graph at once.

Score of edge u → v = Σ_{pos} (a_u(clean) − a_u(corrupt)) · ∂m/∂x_v, averaged over prompt pairs, where a_u is what
u writes into the residual stream (`input`: `blocks.0.hook_resid_pre`; a head: its `attn.hook_result`; an MLP:
`hook_mlp_out`) and x_v is v's own input: a head's q/k/v input is the residual copy that feeds only that projection
(`blocks.{l}.hook_{q,k,v}_input`, the bridge's split-qkv fork), an MLP's is the copy that feeds only ln2
(`blocks.{l}.hook_mlp_in`, re-made as its own tensor so the skip path is not counted), the logits' is the final
residual. One sign for both methods: score ≈ m(clean) − m(edge patched), > 0 when the edge carries the task, so a
signed top-k keeps helpful edges. That is MIB's too: its (corrupt − clean) · ∂L/∂x takes the gradient of a loss, the
logit difference negated ("reversed to make it a loss" in the EAP-IG code), so (clean − corrupt) · ∂m/∂x. Σ of a
node's outgoing scores = (a_clean − a_corrupt) · ∂m/∂a_u, the node's own attribution-patching score (the oracle
tests check both, and both methods' signs against single-edge patches). EAP is first order and can get the sign of
a large edge wrong: on SmolLM2 IOI its input → m0 (the whole embedding change into one MLP) scores −3.7 where
patching that edge alone costs +3.1 and EAP-IG gives +4.3, so EAP's signed circuits leave m0 on the corrupted
embedding and stay near f = 0 (its |score| curve, which keeps that edge, does not).

- **EAP**: the gradient once, on the clean prompts: one forward and one backward per chunk of pairs.
- **EAP-IG (inputs)**: the gradient averaged over m = 5 points e_k = e_corr + (k/m)(e_clean − e_corr), k = 1..m, of
  the input embeddings; the activation differences stay the clean and corrupted runs'. Steps run as stacked copies.

Every receiver's gradient meets every earlier sender's difference in one matrix product per receiver block
([senders, rows·pos·d_model] @ [rows·pos·d_model, receivers]) inside a gradient hook, so no gradient is stored and
no edge is visited in Python.

**Grouped-query attention** (SmolLM2: 3 key/value heads for 9 query heads): k and v edges are scored per *query*
head through the shared projection, as MIB does for Qwen-2.5 and Llama-3 (its evaluation requires TransformerLens's
`ungroup_grouped_query_attention`, which gives each query head its own k and v input). The bridge's split-qkv fork
has one k/v input per key/value head, so after the backward each grouped layer sends ∂m/∂scores (for k) and ∂m/∂z
(for v) of the query heads h ≡ j (mod G) alone back to the shared inputs (G local backward passes through that
attention block): key/value head g's gradient is then query head g·G + j's own. Faithfulness runs need per-query-head
k/v *values* instead, and run each grouped layer on G copies of the rows (`ungroup_hooks`): copy j's k/v input of
group g is query head g·G + j's, head h's z comes from copy h mod G, and the copies are dropped at the layer's end.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from headscope.circuits.config import EDGE_METHODS
from headscope.circuits.edges_graph import EdgeGraph
from headscope.circuits.patching import Answers, Batch, Prepared, logit_diff, run_copies
from headscope.models import ModelHandle, hooks
from headscope.models.handle import graph_node
from headscope.progress import StepCounter

IG_STEPS = 5
MAX_GRAD_ROWS = (
    24  # rows (pairs × steps) per backward pass: a backward keeps every layer's activations and forks
)
HookFn = Callable[[Tensor, Any], Tensor]
Kind = Literal["q", "k", "v"]


def graph_for(handle: ModelHandle) -> EdgeGraph:
    f = handle.facts
    return EdgeGraph(f.n_layers, f.n_heads, f.n_kv_heads)


# ---- rows ----------------------------------------------------------------------------------------------------------
def rows(batch: Batch, sl: slice) -> Batch:
    return Batch(batch.ids[sl], batch.last[sl], batch.mask[sl])


def answer_rows(a: Answers, sl: slice) -> Answers:
    return Answers(a.ans[sl], a.ans_w[sl], a.wrong[sl], a.wrong_w[sl])


def chunks(n: int, per: int) -> list[slice]:
    return [slice(i, min(n, i + per)) for i in range(0, n, max(1, per))]


# ---- what the senders write ----------------------------------------------------------------------------------------
def sender_names(n_layers: int) -> list[str]:
    """Hook names whose activations give every sender's output: the embeddings, per layer the heads' results and
    the MLP's output."""
    out = [hooks.resid(0, "pre")]
    for layer in range(n_layers):
        out += [hooks.attn(layer, "result"), hooks.sublayer_out(layer, "mlp")]
    return out


def stack_senders(acts: Sequence[Tensor]) -> Tensor:
    """[input, (result, mlp_out) per layer] activations → [sender, batch, pos, d_model] in forward order."""
    parts = [acts[0][None]]
    for i in range(1, len(acts), 2):
        parts += [acts[i].permute(2, 0, 1, 3), acts[i + 1][None]]
    return torch.cat(parts).contiguous()


def sender_outputs(handle: ModelHandle, batch: Batch) -> Tensor:
    """Every sender's output on `batch`: [sender, batch, pos, d_model]."""
    names = sender_names(handle.facts.n_layers)
    _, cache = handle.run_with_cache(batch.ids, names)
    return stack_senders([cache[n] for n in names])


def corrupt_outputs(handle: ModelHandle, prep: Prepared) -> Tensor:
    """What each sender carries when corrupted: the paired corrupted run's output, or (unpaired) the negatives'
    mean over examples and real positions, as [sender, 1, 1, d_model] to broadcast."""
    acts = sender_outputs(handle, prep.corrupt)
    if prep.paired:
        return acts
    m = prep.corrupt.mask.to(acts.dtype)
    return (torch.einsum("ubpd,bp->ud", acts, m) / m.sum())[:, None, None]


def input_embeddings(clean_out: Tensor, corrupt_out: Tensor) -> tuple[Tensor, Tensor]:
    """The clean and corrupted input embeddings (`blocks.0.hook_resid_pre`, sender 0 of `sender_outputs` and
    `corrupt_outputs`, so no forward of their own); unpaired: the negatives' mean at every position."""
    e_clean = clean_out[0]
    return e_clean, corrupt_out[0].expand_as(e_clean)


# ---- query-head copies (grouped-query attention, ungrouped as MIB does) ---------------------------------------------
def _head_slots(graph: EdgeGraph, kind: str) -> tuple[Tensor, Tensor]:
    """For each query head h: (copy, slot) holding its input — q: (h mod G, h); k, v: (h mod G, h div G)."""
    h = torch.arange(graph.n_heads)
    return h % graph.group, (h if kind == "q" else h // graph.group)


def per_query_head(x: Tensor, graph: EdgeGraph, kind: str) -> Tensor:
    """A q/k/v input (or its gradient) [G·N, pos, slots, d] → each query head's own [head, N, pos, d]."""
    g = graph.group
    copy, slot = _head_slots(graph, kind)
    return x.view(g, x.shape[0] // g, *x.shape[1:])[copy, :, :, slot]


def add_per_query_head(x: Tensor, patch: Tensor, graph: EdgeGraph, kind: str) -> Tensor:
    """x [G·N, pos, slots, d] with each query head's patch [N, pos, head, d] added to the copy/slot it reads."""
    g, n = graph.group, x.shape[0] // graph.group
    if kind == "q":
        return (x.view(g, n, *x.shape[1:]) + patch[None]).view_as(x)
    n_kv = graph.n_kv_heads
    spread = patch.view(n, patch.shape[1], n_kv, g, patch.shape[-1]).permute(3, 0, 1, 2, 4)
    return (x.view(g, n, *x.shape[1:]) + spread).view_as(x)


def ungroup_hooks(graph: EdgeGraph, layer: int) -> tuple[list[tuple[str, HookFn]], list[tuple[str, HookFn]]]:
    """(hooks to run first at the layer's start, hooks after its attention and at its end) that run the layer on G
    copies of the rows so every query head has its own k and v input; none when there is no grouping."""
    g = graph.group
    if g == 1:
        return [], []
    heads = torch.arange(graph.n_heads)

    def grow(x: Tensor, hook: Any) -> Tensor:
        return x.repeat(g, *([1] * (x.dim() - 1)))

    def assemble(z: Tensor, hook: Any) -> Tensor:
        own = z.view(g, z.shape[0] // g, *z.shape[1:])[heads % g, :, :, heads]  # [head, N, pos, d_head]
        return own.permute(1, 2, 0, 3).repeat(g, 1, 1, 1)

    def shrink(x: Tensor, hook: Any) -> Tensor:
        return x[: x.shape[0] // g]

    return [(hooks.resid(layer, "pre"), grow)], [
        (hooks.z(layer), assemble),
        (hooks.resid(layer, "post"), shrink),
    ]


# ---- the gradient pass -------------------------------------------------------------------------------------------
@dataclass
class _Pass:
    """One backward pass's hooks: each receiver's gradient, summed over the copies (IG steps), meets the senders'
    differences `delta` [sender, rows, pos, d_model] in one matrix product, accumulated into `acc`.

    Grouped layers: the shared k/v inputs, the attention scores and z are kept (`held`), with the gradients of the
    latter two; after the backward, `split_groups` sends ∂m/∂scores and ∂m/∂z of the query heads h ≡ j (mod G)
    alone back to the k and v inputs (local backward passes through one attention block), which gives each query
    head's own k/v gradient — what MIB's ungrouped graph scores — without running the layer on G copies."""

    graph: EdgeGraph
    delta: Tensor | None  # None: this pass's own forward's senders (EAP: the clean rows) − `corrupt`
    n_copies: int
    acc: Tensor  # [forward, backward] float64
    corrupt: Tensor | None = None  # the senders' corrupted outputs for these rows, when `delta` is None
    seen: list[Tensor] = field(default_factory=list)  # the senders' outputs in this forward (delta is None)
    held: dict[tuple[int, str], Tensor] = field(default_factory=dict)
    held_grad: dict[tuple[int, str], Tensor] = field(default_factory=dict)

    def _score(self, n_senders: int, grads: Tensor, col: slice | int) -> None:
        """grads [receivers, copies·rows, pos, d_model]."""
        assert self.delta is not None
        r = self.delta.shape[1]
        g = grads.reshape(grads.shape[0], self.n_copies, r, *grads.shape[2:]).sum(1)
        d = self.delta[:n_senders].reshape(n_senders, -1)
        part = (d @ g.reshape(g.shape[0], -1).to(d.dtype).T).double().cpu()
        self.acc[:n_senders, col] += part if isinstance(col, slice) else part[:, 0]

    def _cols(self, layer: int, kind: str) -> slice:
        first = self.graph.head_bwd(layer, 0, kind)
        return slice(first, first + self.graph.n_heads)

    def watch_head(self, layer: int, kind: Kind) -> HookFn:
        gr = self.graph

        def hook(x: Tensor, hook: Any) -> Tensor:
            x = graph_node(x)
            if kind != "q" and gr.group > 1:
                self.held[layer, kind] = x  # split per query head after the backward
            else:
                n = gr.attn_senders(layer)
                x.register_hook(lambda g: self._score(n, g.permute(2, 0, 1, 3), self._cols(layer, kind)))
            return x

        return hook

    def hold(self, layer: int, site: str) -> HookFn:
        def hook(x: Tensor, hook: Any) -> Tensor:
            self.held[layer, site] = x

            def keep(g: Tensor) -> None:
                self.held_grad[layer, site] = g

            x.register_hook(keep)
            return x

        return hook

    def watch_residual(self, n_senders: int, col: int) -> HookFn:
        """An MLP's input (its own copy, so the skip path is not counted) or the logits' input."""

        def hook(x: Tensor, hook: Any) -> Tensor:
            own = x.clone()
            own.register_hook(lambda g: self._score(n_senders, g[None], col))
            return own

        return hook

    def see(self, x: Tensor, hook: Any) -> Tensor:
        """Keep a sender's output from this forward (no gradient through it)."""
        self.seen.append(x.detach())
        return x

    def settle(self) -> None:
        """After the forward: delta = the senders' outputs seen − their corrupted outputs."""
        if self.delta is None:
            assert self.corrupt is not None
            self.delta = (stack_senders(self.seen) - self.corrupt).contiguous()
            self.seen.clear()

    def split_groups(self) -> None:
        """Per-query-head k and v gradients of every grouped layer (see the class docstring): one batched local
        backward per layer and input, over the G head masks."""
        gr = self.graph
        g_of = torch.arange(gr.n_heads) % gr.group
        for layer in range(gr.n_layers):
            for kind, site, head_dim in (("k", "scores", 1), ("v", "z", 2)):
                out, target = self.held[layer, site], self.held[layer, kind]
                grad = self.held_grad.get((layer, site), torch.zeros_like(out))
                shape = [gr.group] + [1] * out.dim()
                shape[head_dim + 1] = gr.n_heads
                masks = (g_of[None] == torch.arange(gr.group)[:, None]).view(shape).to(grad.dtype)
                (g,) = torch.autograd.grad(
                    out, target, grad[None] * masks, retain_graph=True, is_grads_batched=True
                )
                # g [G, rows, pos, kv head, d]: (j, kv head g) is query head g·G + j
                per_head = g.permute(3, 0, 1, 2, 4).reshape(gr.n_heads, *g.shape[1:3], g.shape[-1])
                self._score(gr.attn_senders(layer), per_head, self._cols(layer, kind))


def _pass_hooks(p: _Pass) -> list[tuple[str, HookFn]]:
    gr = p.graph
    plan: list[tuple[str, HookFn]] = [(hooks.resid(0, "pre"), lambda x, hook: graph_node(x))]
    if p.delta is None:  # the senders' outputs, in sender_names' order (hooks fire in forward order)
        plan += [(name, p.see) for name in sender_names(gr.n_layers)]
    for layer in range(gr.n_layers):
        plan += [(hooks.sublayer_in(layer, k), p.watch_head(layer, k)) for k in ("q", "k", "v")]
        if gr.group > 1:
            plan += [(hooks.scores(layer), p.hold(layer, "scores")), (hooks.z(layer), p.hold(layer, "z"))]
        plan.append(
            (hooks.sublayer_in(layer, "mlp"), p.watch_residual(gr.mlp_senders(layer), gr.mlp_bwd(layer)))
        )
    plan.append((hooks.resid(gr.n_layers - 1, "post"), p.watch_residual(gr.n_forward, gr.logits_bwd)))
    return plan


def _gradient_pass(
    handle: ModelHandle,
    clean: Batch,
    answers: Answers,
    p: _Pass,
    expand: HookFn | None,
) -> None:
    """One forward over `p.n_copies` stacked copies of `clean` (built by `expand`) and one backward of
    Σ metric, which runs every receiver hook (grouped layers: then the per-query-head split)."""
    with torch.enable_grad():
        final = run_copies(handle, clean, 0, p.n_copies, _pass_hooks(p), expand=expand, grad=True)
        p.settle()
        logit_diff(final, answers.repeat(p.n_copies)).sum().backward(retain_graph=p.graph.group > 1)
        if p.graph.group > 1:
            p.split_groups()
    p.held.clear()
    p.held_grad.clear()


def edge_scores(
    handle: ModelHandle,
    prep: Prepared,
    method: str = "eap",
    steps: int = IG_STEPS,
    *,
    max_rows: int = MAX_GRAD_ROWS,
    progress: StepCounter | None = None,
) -> np.ndarray:
    """Every edge's score (canonical order, mean over pairs) by `eap` or `eap_ig` (`steps` interpolation points)."""
    if method not in EDGE_METHODS:
        raise ValueError(f"edge method must be one of {', '.join(EDGE_METHODS)}, got {method!r}")
    graph = graph_for(handle)
    n_steps = steps if method == "eap_ig" else 1
    corrupt_out = corrupt_outputs(handle, prep)
    # EAP's gradient pass runs on the clean rows: it gives their senders' outputs itself (no forward of their own)
    clean_out = sender_outputs(handle, prep.clean) if method == "eap_ig" else None
    e_clean, e_corr = input_embeddings(clean_out, corrupt_out) if clean_out is not None else (None, None)
    acc = torch.zeros(graph.n_forward, graph.n_backward, dtype=torch.float64)
    b = prep.clean.ids.shape[0]
    per_pairs = max_rows
    pair_chunks = chunks(b, min(b, per_pairs))
    plan = [
        (pc, sc) for pc in pair_chunks for sc in chunks(n_steps, max(1, per_pairs // (pc.stop - pc.start)))
    ]
    for i, (pc, sc) in enumerate(plan):
        corrupt = corrupt_out[:, pc] if prep.paired else corrupt_out
        n_copies = sc.stop - sc.start
        delta = None if clean_out is None else (clean_out[:, pc] - corrupt).contiguous()
        p = _Pass(graph, delta, n_copies, acc, corrupt)
        expand = None
        if e_clean is not None and e_corr is not None:
            expand = _interpolate(e_clean[pc], e_corr[pc], torch.arange(sc.start + 1, sc.stop + 1) / n_steps)
        _gradient_pass(handle, rows(prep.clean, pc), answer_rows(prep.answers, pc), p, expand)
        if progress is not None:
            progress(i + 1, len(plan))
    return graph.canonical((acc / (b * n_steps)).numpy())


def _interpolate(e_clean: Tensor, e_corr: Tensor, alphas: Tensor) -> HookFn:
    """The input embeddings at e_corr + α (e_clean − e_corr), one stacked copy per α (copy-major rows)."""
    a = alphas.to(e_clean.dtype).to(e_clean.device)

    def hook(x: Tensor, hook: Any) -> Tensor:
        path = e_corr[None] + a[:, None, None, None] * (e_clean - e_corr)[None]
        return path.reshape(-1, *x.shape[1:])

    return hook


@dataclass(frozen=True)
class EdgeRun:
    """One method's edge scores (canonical order) and how long they took end to end."""

    method: str
    scores: np.ndarray
    runtime_s: float
    steps: int | None


def run_edge_method(
    handle: ModelHandle,
    prep: Prepared,
    method: str,
    steps: int = IG_STEPS,
    progress: StepCounter | None = None,
) -> EdgeRun:
    t0 = time.perf_counter()
    scores = edge_scores(handle, prep, method, steps, progress=progress)
    return EdgeRun(method, scores, time.perf_counter() - t0, steps if method == "eap_ig" else None)
