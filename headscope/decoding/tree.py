"""Token trees: what a tree draft is, its attention mask, and the two verification rules along a tree.

A step's draft is a tree whose root is the *pending* token (the last token of the context, not yet in the KV
cache) and whose other nodes are drafted tokens; node i's parent is `parents[i]` (< i; the root's is −1), so a
chain draft is the tree with parents (−1, 0, 1, …). One verifier forward feeds every node at once: node i sits at
position (context length − 1) + depth(i), and sees the cached prefix and its own ancestors (itself included) —
the tree attention mask — so its logits are exactly those a plain forward over the root-to-node path would give.

Verification walks from the root (papers.md §10.3):
- greedy: follow the child whose token is the verifier's argmax at the current node; stop where no child has it;
  the argmax there is the step's own token. Lossless: the accepted path is what greedy would have produced.
- sampling: at each node, the children are tried in order with the speculative sampling rule (accept child c
  with probability min(1, p(c)/q(c)); on a rejection p ← norm(max(p − q, 0))); if no child is accepted, the
  step's token is drawn from what is left of p. q is the distribution the child was drawn from (one-hot for a
  deterministic draft: then a rejected token is simply removed from p). Each output token is distributed
  exactly as under plain sampling (recursive rejection sampling, SpecInfer; for a chain it is Leviathan et al.'s
  rule, token for token the same random draws as `sampling.verify_sampled`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from headscope.errors import InputError


@dataclass(frozen=True)
class TokenTree:
    """Node 0 is the root (the pending token); `parents[i] < i` for every other node."""

    tokens: tuple[int, ...]
    parents: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.tokens or len(self.tokens) != len(self.parents) or self.parents[0] != -1:
            raise InputError("a token tree needs a root (parent −1) and one parent per node")
        if any(not 0 <= p < i for i, p in enumerate(self.parents) if i):
            raise InputError("every tree node's parent must come before it")

    @classmethod
    def build(cls, root: int, drafted: Sequence[int], parents: Sequence[int] | None) -> TokenTree:
        """The step's tree from a draft: `parents` index the drafted tokens (−1 = the root); None = a chain."""
        if parents is None:
            parents = range(-1, len(drafted) - 1)
        return cls((root, *drafted), (-1, *(p + 1 for p in parents)))

    def __len__(self) -> int:
        return len(self.tokens)

    @functools.cached_property
    def depths(self) -> tuple[int, ...]:
        out: list[int] = []
        for p in self.parents:
            out.append(0 if p < 0 else out[p] + 1)
        return tuple(out)

    @functools.cached_property
    def is_chain(self) -> bool:
        return all(p == i - 1 for i, p in enumerate(self.parents))

    @functools.cached_property
    def children(self) -> tuple[tuple[int, ...], ...]:
        kids: list[list[int]] = [[] for _ in self.tokens]
        for i, p in enumerate(self.parents):
            if p >= 0:
                kids[p].append(i)
        return tuple(tuple(k) for k in kids)

    def path(self, node: int) -> list[int]:
        """The nodes from the root to `node`, both included."""
        out = []
        while node >= 0:
            out.append(node)
            node = self.parents[node]
        return out[::-1]

    def mask(self) -> Bool[Tensor, "node node"]:
        """[i, j] = node j is node i or one of its ancestors: what node i may attend to within the tree."""
        n = len(self.tokens)
        seen = torch.zeros(n, n, dtype=torch.bool)
        for i, p in enumerate(self.parents):
            if p >= 0:
                seen[i] = seen[p]  # a parent comes first, so its row is complete
            seen[i, i] = True
        return seen

    def first_chain(self) -> TokenTree:
        """The root and, from each node, its first child: the branch drafted as most likely."""
        nodes = [0]
        while self.children[nodes[-1]]:
            nodes.append(self.children[nodes[-1]][0])
        return TokenTree(tuple(self.tokens[i] for i in nodes), tuple(range(-1, len(nodes) - 1)))

    def pruned(self, max_depth: int) -> TokenTree:
        """The nodes at depth ≤ `max_depth` (a BFS-ordered tree keeps its order; parents renumbered)."""
        keep = [i for i, d in enumerate(self.depths) if d <= max_depth]
        if len(keep) == len(self.tokens):
            return self
        index = {old: new for new, old in enumerate(keep)}
        return TokenTree(
            tuple(self.tokens[i] for i in keep),
            tuple(-1 if self.parents[i] < 0 else index[self.parents[i]] for i in keep),
        )


def trie(candidates: Sequence[Sequence[int]]) -> tuple[list[int], tuple[int, ...]]:
    """Candidate continuations merged on their shared prefixes: the drafted tokens and their parents (−1: the
    root), in the candidates' order (so the first candidate is the tree's first branch)."""
    tokens: list[int] = []
    parents: list[int] = []
    child: dict[tuple[int, int], int] = {}  # (parent, token) → node
    for cand in candidates:
        at = -1
        for tok in cand:
            if (at, tok) not in child:
                child[(at, tok)] = len(tokens)
                tokens.append(tok)
                parents.append(at)
            at = child[(at, tok)]
    return tokens, tuple(parents)


def verify_tree_greedy(tree: TokenTree, p_rows: Float[Tensor, "node d_vocab"]) -> tuple[list[int], int]:
    """The accepted nodes (root excluded) and the verifier's own next token after them."""
    best = p_rows.argmax(-1).tolist()
    node, path = 0, []
    while True:
        child = next((c for c in tree.children[node] if tree.tokens[c] == best[node]), None)
        if child is None:
            return path, int(best[node])
        path.append(child)
        node = child


def verify_tree_sampled(
    tree: TokenTree,
    q_rows: Sequence[Tensor | None] | None,
    p_rows: Float[Tensor, "node d_vocab"],
    gen: torch.Generator,
) -> tuple[list[int], int]:
    """Recursive rejection sampling along the tree (module docstring); q_rows[i − 1] belongs to node i."""
    p_rows = p_rows.cpu()  # the seeded generator lives on the CPU (one generator, any device)
    node, path = 0, []
    while True:
        p = p_rows[node]
        accepted = None
        for child in tree.children[node]:
            tok = tree.tokens[child]
            q = q_rows[child - 1] if q_rows is not None else None
            q = q.cpu() if q is not None else None
            if q is None:
                q = torch.zeros_like(p).index_fill_(0, torch.tensor([tok]), 1.0)
            if float(torch.rand((), generator=gen)) < min(1.0, float(p[tok]) / max(float(q[tok]), 1e-30)):
                accepted = child
                break
            residual = (p - q).clamp_min(0.0)
            p = residual / residual.sum() if float(residual.sum()) > 0.0 else p  # p == q: any draw is exact
        if accepted is None:
            return path, int(torch.multinomial(p, 1, generator=gen))
        path.append(accepted)
        node = accepted


def verify_tree(
    tree: TokenTree,
    q_rows: Sequence[Tensor | None] | None,
    p_rows: Tensor,
    greedy: bool,
    gen: torch.Generator,
) -> tuple[list[int], int]:
    if greedy:
        return verify_tree_greedy(tree, p_rows)
    return verify_tree_sampled(tree, q_rows, p_rows, gen)
