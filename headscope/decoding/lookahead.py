"""Lookahead decoding (Fu et al. 2024; papers.md §9.4): Jacobi iteration whose trajectories fill an n-gram pool,
and pooled n-grams verified in the same forward. Lossless at temperature 0 (greedy verification).

Layout of one forward (a single causal sequence): [pending token | pooled guess (N − 1 tokens) | Jacobi window].
- The pooled guess is an n-gram from the pool whose first token is the pending token; the Jacobi window holds the
  current guesses for the positions after it. The whole draft is verified greedily like any other draft, so an
  accepted guess lets the window's own predictions — computed on top of it in the same pass — be accepted too.
- Jacobi update: the verifier's predictions past the accepted point become the next window (as in `jacobi`).
- Pool: every N-gram of the context (prompt and output), and the trajectories: each prediction extends the chain
  of guesses it was computed from (the token it follows, and that token's own chain), and every chain of N tokens
  enters the pool — the n-grams read along the 2D window's diagonals in the paper, here collected across
  successive iterations of the one window.
- Choice among the pooled n-grams of the pending token: the one that agrees longest with the Jacobi window's
  guesses, then the one whose recorded preceding token equals the context's, then the most recent; none (the
  window alone) when the best neither agrees with the window nor follows the same token, and none in the step
  after a pooled guess that had no token accepted (so the window keeps iterating).

- Up to G − 1 further pooled n-grams of the pending token (`lookahead_guesses` = G, each starting with a token
  no earlier branch starts with) go in as branches of their own: the draft is a tree — the chosen guess with
  the window after it first, the others beside it — verified in the same forward under the tree mask (the
  paper's verification branch, which checks G guesses in parallel).
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Sequence

from torch import Tensor

from headscope.decoding.config import DecodeConfig
from headscope.decoding.drafters import EMPTY, Draft

Gram = tuple[int, ...]


class LookaheadDrafter:
    adaptive = (
        False  # a fixed window W, as in the paper: the window must stay wide for its trajectories to move
    )

    def __init__(self, cfg: DecodeConfig):
        self.cfg = cfg
        self.n = cfg.lookahead_n
        # first token → recent (preceding token, continuation of N − 1 tokens), most recent last
        self.pool: defaultdict[int, deque[tuple[int, Gram]]] = defaultdict(
            lambda: deque(maxlen=cfg.lookahead_pool)
        )
        self.counted = 0  # context positions whose n-grams are in the pool
        self.guesses: list[int] = []
        self.chains: list[Gram] = []  # per guess: the chain of tokens it was predicted along, itself last
        self.fed_chains: list[Gram] = []
        self.used_gram = 0  # length of the pooled guess in the last draft
        self.gram_missed = False  # the last pooled guess had no token accepted: give the window a turn

    def propose(self, context: list[int], k: int) -> Draft:
        if k <= 0:
            return EMPTY
        self._count_context(context)
        gram = () if self.gram_missed else self._choose(context)
        self.used_gram = len(gram)
        width = min(k, max(self.cfg.window, self.n - 1))
        tokens = list(gram[:width])
        chains = [tuple(context[-self.n :])]  # the pending token's chain: the true context
        for tok in tokens:  # a pooled n-gram is one chain
            chains.append((*chains[-1], tok)[-(self.n + 1) :])
        for tok, chain in zip(self.guesses[len(tokens) :], self.chains[len(tokens) :], strict=False):
            if len(tokens) >= width:
                break
            tokens.append(tok)
            chains.append(chain)
        while len(tokens) < width:  # fresh positions start as a copy of the last token
            tokens.append(tokens[-1] if tokens else context[-1])
            chains.append((*chains[-1], tokens[-1])[-(self.n + 1) :])
        self.fed_chains = chains
        extra = self._other_grams(context, tokens[0], k)
        if not extra:
            return Draft(tokens, "lookahead")
        parents = [*range(-1, len(tokens) - 1)]
        for gram in extra:  # each further guess is a chain of its own below the root
            parents += [-1, *range(len(tokens), len(tokens) + len(gram) - 1)]
            tokens += gram
        return Draft(tokens, "lookahead", parents=tuple(parents))

    def _other_grams(self, context: list[int], first: int, k: int) -> list[list[int]]:
        """Up to G − 1 pooled n-grams of the pending token, most recent first, each with a first token that no
        earlier branch has (siblings must differ)."""
        out: list[list[int]] = []
        starts = {first}
        for _, gram in reversed(self.pool.get(context[-1], ())):
            if len(out) >= self.cfg.lookahead_guesses - 1:
                break
            if gram and gram[0] not in starts:
                out.append(list(gram[:k]))
                starts.add(gram[0])
        return out

    def observe(self, p_rows: Tensor, n_accepted: int, draft: Draft, path: Sequence[int] = ()) -> None:
        main = len(self.fed_chains)  # the pending token and the main branch (guess + window) come first
        on_main = all(i < main - 1 for i in path)
        n_accepted = (
            n_accepted if on_main else 0
        )  # another guess won: the window's rows sit on a rejected one
        best = p_rows[:main].argmax(-1).tolist()
        self.gram_missed = self.used_gram > 0 and not path
        if len(best) != len(self.fed_chains) or len(p_rows) < main:  # a step this drafter did not propose
            self.guesses, self.chains, self.fed_chains = [], [], []
            return
        grown = [(*chain, pred)[-(self.n + 1) :] for chain, pred in zip(self.fed_chains, best, strict=True)]
        for chain in grown[1:]:  # the pending token's own prediction is the verifier's token: in the context
            if len(chain) == self.n + 1:
                self._add(chain[1], chain[0], chain[2:])
        # The verifier's predictions past the accepted point are the next Jacobi window.
        later = range(n_accepted + 1, main)
        self.guesses = [best[j] for j in later]
        self.chains = [grown[j] for j in later]

    def _choose(self, context: list[int]) -> Gram:
        cands = self.pool.get(context[-1])
        if not cands:
            return ()
        before = context[-2] if len(context) >= 2 else -1

        def score(item: tuple[int, tuple[int, Gram]]) -> tuple[int, int, int]:
            i, (prev, gram) = item
            agree = 0
            while agree < min(len(gram), len(self.guesses)) and gram[agree] == self.guesses[agree]:
                agree += 1
            return agree, int(prev == before), i

        best = max(enumerate(cands), key=score)
        agree, same_prev, _ = score(best)
        # A guess that neither agrees with the window nor follows the same token would only displace the window.
        return best[1][1] if agree or same_prev or not self.guesses else ()

    def _add(self, first: int, prev: int, gram: Gram) -> None:
        bucket = self.pool[first]
        item = (prev, gram)
        if item in bucket:
            bucket.remove(item)  # move to the most recent end
        bucket.append(item)

    def _count_context(self, context: list[int]) -> None:
        n = self.n
        for i in range(max(self.counted, n), len(context) + 1):
            gram = context[i - n : i]
            self._add(gram[0], context[i - n - 1] if i - n >= 1 else -1, tuple(gram[1:]))
        self.counted = max(self.counted, len(context) + 1)

    def pool_size(self) -> int:
        return sum(len(b) for b in self.pool.values())
