"""Token Recycling (Luo et al. 2024, arXiv 2408.08696; papers.md §10.3): the candidates every forward discards,
kept in an adjacency matrix and drafted as a tree.

- **Adjacency matrix** A ∈ V × k (k = `recycle_k`, the paper's 8): row t holds the top-k next tokens the verifier
  proposed the last time it processed token t. After every forward the rows of all the tokens it processed (every
  tree node, the accepted path last so that its rows win) are overwritten with the top-k of their distributions;
  the first forward, over the prompt, fills the rows of the prompt's tokens (cold start: a new matrix per run,
  so a run never depends on the ones before it).
- **Static tree** (`tree_shape`): the candidate paths (rank at depth 1, rank at depth 2, …) ordered by a fixed
  prior — a child of rank i weighs 1/(i+1), each level ×0.6 — and cut to the `size` best. At 80 nodes the levels
  hold 8, 23, 25, 17, 6, 1 nodes (the paper's template: 8, 21, 25, 15, 8, 3); a smaller size keeps the most
  valuable nodes of the same tree, so one prior serves every size.
- **Draft**: fill the shape breadth-first from the pending token: the child of rank i of a node carrying token u
  carries A[u][i]; a node whose parent had no row (a token never processed) is left out with its subtree. The
  tree is verified in one forward (`tree.py`), greedily or by recursive rejection sampling (deterministic drafts).

On a CPU the tree forward's cost grows with the node count (a forward over 24 nodes costs about what two
one-token forwards do on SmolLM2 with two threads), unlike a GPU's, so the default size is far below the paper's
80: see bench/decoding.py's size sweep for the size that pays best on this machine.
"""

from __future__ import annotations

import functools
import heapq
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from headscope.decoding.config import DecodeConfig
from headscope.decoding.drafters import EMPTY, Draft

RANK_PRIOR = 1.0  # a child of rank i weighs 1 / (i + 1) ** RANK_PRIOR
LEVEL_PRIOR = 0.6  # each level deeper multiplies a path's weight by this
Path = tuple[int, ...]  # ranks from the root: (0, 1) = the second candidate after the first candidate


@functools.cache
def tree_shape(size: int, k: int = 8, max_depth: int = 16) -> tuple[Path, ...]:
    """The `size` most valuable candidate paths under the prior, prefix-closed, in breadth-first order."""
    weight = [LEVEL_PRIOR / (i + 1) ** RANK_PRIOR for i in range(k)]
    frontier: list[tuple[float, Path]] = [(-weight[i], (i,)) for i in range(k)]
    heapq.heapify(frontier)
    chosen: list[Path] = []
    while frontier and len(chosen) < size:
        score, path = heapq.heappop(frontier)
        chosen.append(path)  # its parent scored higher, so it is already in
        if len(path) < max_depth:
            for i in range(k):
                heapq.heappush(frontier, (score * weight[i], (*path, i)))
    return tuple(sorted(chosen, key=lambda p: (len(p), p)))


class RecyclingDrafter:
    """Drafts a tree from the adjacency matrix; learns from every row the verifier computes."""

    adaptive = False  # a static tree, as in the paper
    reads_context = True  # the prompt's rows fill the matrix before the first draft

    def __init__(self, cfg: DecodeConfig, vocab: int):
        self.k = cfg.recycle_k
        self.shape = tree_shape(cfg.tree_size, cfg.recycle_k)
        self.adj = np.full((vocab, self.k), -1, dtype=np.int64)
        self.root = -1  # the pending token of the step being drafted

    def propose(self, context: list[int], k: int) -> Draft:
        self.root = context[-1]
        if k <= 0:
            return EMPTY
        node_of: dict[Path, int] = {(): -1}  # path → index among the drafted tokens (−1: the root)
        token_of: dict[Path, int] = {(): context[-1]}
        rows: dict[int, list[int]] = {}
        tokens: list[int] = []
        parents: list[int] = []
        for path in self.shape:
            up = path[:-1]
            if len(path) > k or up not in node_of:
                continue
            parent_tok = token_of[up]
            if parent_tok not in rows:
                rows[parent_tok] = self.adj[parent_tok].tolist()
            tok = rows[parent_tok][path[-1]]
            if tok < 0:
                continue
            node_of[path], token_of[path] = len(tokens), tok
            tokens.append(tok)
            parents.append(node_of[up])
        return Draft(tokens, "recycling", parents=tuple(parents)) if tokens else EMPTY

    def prime(self, tokens: Sequence[int], logits: Tensor) -> None:
        """The prompt's rows: what the verifier proposed after each prompt token."""
        self._update(list(tokens), logits)

    def observe(self, p_rows: Tensor, n_accepted: int, draft: Draft, path: Sequence[int] = ()) -> None:
        """Every node's row (row 0: the root, the pending token); the accepted path's rows last, so they win."""
        on_path = set(path)
        off = [i for i in range(len(draft.tokens)) if i not in on_path]
        tokens = [*(draft.tokens[i] for i in off), self.root, *(draft.tokens[i] for i in path)]
        rows = [*(i + 1 for i in off), 0, *(i + 1 for i in path)]
        self._update(tokens, p_rows[rows])

    def _update(self, tokens: list[int], rows: Tensor) -> None:
        top = torch.topk(rows, self.k, dim=-1).indices.cpu().numpy()
        last = {tok: i for i, tok in enumerate(tokens)}  # a later row of the same token wins
        self.adj[np.fromiter(last.keys(), dtype=np.int64)] = top[np.fromiter(last.values(), dtype=np.int64)]
