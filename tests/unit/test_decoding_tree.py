"""Tree drafts and their verification, against independent oracles: the mask against a walk over root-to-node
paths, the tree forward against plain forwards over each path, the rules against toy distributions, and every
tree-drafting strategy against greedy."""

from __future__ import annotations

import random
from collections import Counter

import pytest
import torch

from headscope.attention import LocalityDial
from headscope.decoding import DecodeConfig, decode
from headscope.decoding.cache import CachedModel, session
from headscope.decoding.prompts import CATEGORIES, load_categories, render_messages
from headscope.decoding.recycling import RecyclingDrafter, tree_shape
from headscope.decoding.sampling import verify_greedy, verify_sampled
from headscope.decoding.tree import TokenTree, verify_tree_greedy, verify_tree_sampled
from headscope.models import ModelHandle

pytestmark = pytest.mark.usefixtures("one_thread")
PROMPT = "the cat sat on the mat; the cat sat on the"


def random_tree(rng: random.Random, n: int, vocab: int = 50) -> TokenTree:
    parents = [-1] + [rng.randrange(i) for i in range(1, n)]
    return TokenTree(tuple(rng.randrange(vocab) for _ in range(n)), tuple(parents))


def test_tree_mask_is_each_node_and_its_ancestors() -> None:
    rng = random.Random(0)
    for n in (1, 2, 7, 30):
        tree = random_tree(rng, n)
        want = torch.zeros(n, n, dtype=torch.bool)
        for i in range(n):  # the plain loop: walk from the node up to the root
            j = i
            while j >= 0:
                want[i, j] = True
                j = tree.parents[j]
        assert torch.equal(tree.mask(), want)
        assert all(tree.depths[i] == len(tree.path(i)) - 1 for i in range(n))


@pytest.mark.parametrize("n", [5, 17])
def test_tree_forward_equals_a_plain_forward_over_each_path(tiny: ModelHandle, n: int) -> None:
    ids = tiny.tokenize(PROMPT)[0].tolist()
    tree = random_tree(random.Random(n), n, vocab=200)
    tree = TokenTree((ids[-1], *tree.tokens[1:]), tree.parents)
    keep = max((tree.path(i) for i in range(n)), key=len)  # the deepest path, kept in the cache afterwards
    with session(tiny) as sess:
        model = CachedModel(tiny, sess)
        model.logits_last(ids[:-3], 1)  # a cached prefix, then the rest of the context fed with the tree
        rows = model.logits_tree(ids, tree, context_rows=True)
        model.keep_path(keep)
        after = model.logits_last([*ids, *(tree.tokens[i] for i in keep[1:]), 7], 1)
    full = tiny.forward(torch.tensor([ids]))[0]
    torch.testing.assert_close(rows[:2], full[-3:-1], atol=1e-4, rtol=0)
    for i in range(n):
        path = [*ids[:-1], *(tree.tokens[j] for j in tree.path(i))]
        want = tiny.forward(torch.tensor([path]))[0, -1]
        torch.testing.assert_close(rows[2 + i], want, atol=1e-4, rtol=0)
    want = tiny.forward(torch.tensor([[*ids, *(tree.tokens[i] for i in keep[1:]), 7]]))[0, -1]
    torch.testing.assert_close(after[0], want, atol=1e-4, rtol=0)  # the cache kept exactly the path


def test_greedy_tree_rule_follows_the_argmax_and_reduces_to_the_chain_rule() -> None:
    rows = torch.softmax(torch.randn(6, 10, generator=torch.Generator().manual_seed(1)), -1)
    best = rows.argmax(-1).tolist()
    chain = [best[0], best[1], (best[2] + 1) % 10, 4, 4]
    tree = TokenTree.build(9, chain, None)
    assert verify_tree_greedy(tree, rows) == ([1, 2], best[2])
    assert verify_greedy(chain, rows) == (2, best[2])
    # a tree: the root's argmax is the second child; below it the first grandchild is right
    tree = TokenTree((9, (best[0] + 1) % 10, best[0], best[2], (best[3] + 1) % 10), (-1, 0, 0, 2, 3))
    assert verify_tree_greedy(tree, rows) == ([2, 3], best[3])


def test_sampled_tree_rule_on_a_chain_is_the_chain_rule_draw_for_draw() -> None:
    g = torch.Generator().manual_seed(3)
    p = torch.softmax(torch.randn(5, 8, generator=g), -1)
    q: list[torch.Tensor | None] = [torch.softmax(torch.randn(8, generator=g), -1) for _ in range(4)]
    for seed in range(40):
        draft = [int(torch.multinomial(r, 1, generator=g)) for r in q if r is not None]
        a = verify_sampled(draft, q, p, torch.Generator().manual_seed(seed))
        nodes, tok = verify_tree_sampled(
            TokenTree.build(0, draft, None), q, p, torch.Generator().manual_seed(seed)
        )
        assert a == (len(nodes), tok)


def test_sampled_tree_rule_preserves_the_distribution() -> None:
    """Root with three deterministic children (one of them deep): the first token is distributed as p_root, and
    the second, after an accepted child, as that child's row."""
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(5, 6, generator=g) * 1.5, -1)
    order = p[0].argsort(descending=True).tolist()
    tree = TokenTree((5, order[0], order[2], order[1], 3), (-1, 0, 0, 0, 1))
    firsts, seconds = Counter(), Counter()
    n = 20000
    for seed in range(n):
        nodes, tok = verify_tree_sampled(tree, None, p, torch.Generator().manual_seed(seed))
        out = [tree.tokens[i] for i in nodes] + [tok]
        firsts[out[0]] += 1
        if nodes and nodes[0] == 1:
            seconds[out[1]] += 1
    for t in range(6):
        assert abs(firsts[t] / n - float(p[0, t])) < 0.015
        assert abs(seconds[t] / sum(seconds.values()) - float(p[1, t])) < 0.03


def test_static_tree_shape_is_like_the_papers_and_prefix_closed() -> None:
    shape = tree_shape(80)
    levels = Counter(len(p) for p in shape)
    assert [levels[d] for d in range(1, 7)] == [8, 23, 25, 17, 6, 1]  # the paper's: 8, 21, 25, 15, 8, 3
    assert all(p[:-1] in shape or len(p) == 1 for p in shape)
    small = tree_shape(16)
    assert set(small) <= set(shape) and all(q[:-1] in small or len(q) == 1 for q in small)


def test_recycling_matrix_rows_are_the_last_top_k_with_the_accepted_path_last() -> None:
    drafter = RecyclingDrafter(DecodeConfig(recycle_k=3, tree_size=6), vocab=10)
    drafter.prime([4, 5, 4], torch.eye(10)[[1, 2, 3]] + torch.arange(10) * 0.01)
    assert drafter.adj[4].tolist()[0] == 3 and drafter.adj[5].tolist()[0] == 2  # a later row of 4 wins
    draft = drafter.propose([0, 4], k=4)
    assert draft.parents is not None and draft.parents[:3] == (-1, -1, -1)
    assert draft.tokens[:3] == drafter.adj[4].tolist()
    rows = torch.softmax(torch.randn(len(draft.tokens) + 1, 10), -1)
    drafter.observe(rows, 1, draft, [1])
    top = torch.topk(rows, 3).indices
    assert (
        drafter.adj[4].tolist() == top[0].tolist()
        and drafter.adj[draft.tokens[1]].tolist() == top[2].tolist()
    )


def _tree_steps_are_consistent(trace) -> None:
    for s in trace.steps:
        parents = (
            s.draft_parents if s.draft_parents is not None else tuple(range(-1, len(s.draft_tokens) - 1))
        )
        assert len(parents) == len(s.draft_tokens) and all(p < i for i, p in enumerate(parents))
        path = s.accepted_path
        assert all(parents[b] == a for a, b in zip((-1, *path), path, strict=False))
        assert list(s.accepted[: len(path)]) == [s.draft_tokens[i] for i in path]


@pytest.mark.parametrize("strategy", ["token_recycling", "ngram", "lookahead"])
def test_tree_strategies_equal_greedy_on_every_category_prompt(tiny: ModelHandle, strategy: str) -> None:
    cfg = DecodeConfig(max_new_tokens=20, tree_size=20, max_draft=5)
    trees = 0
    for category in CATEGORIES:
        for item in load_categories()[category][:1]:
            ids = tiny.tokenize(render_messages(tiny, item.messages)[-200:])[0].tolist()  # (byte tokens)
            greedy = decode(tiny, ids, "greedy", cfg)
            trace = decode(tiny, ids, strategy, cfg)
            assert trace.token_ids == greedy.token_ids, (strategy, category)
            _tree_steps_are_consistent(trace)
            trees += sum(s.draft_parents is not None for s in trace.steps)
    assert trees > 0  # trees were drafted, not only chains


def test_token_recycling_records_each_steps_tree_and_the_greedy_attention(tiny_llama: ModelHandle) -> None:
    ids = tiny_llama.tokenize(PROMPT)[0].tolist()
    cfg = DecodeConfig(max_new_tokens=24, attention_entropy=True)
    greedy = decode(tiny_llama, ids, "greedy", cfg)
    trace = decode(tiny_llama, ids, "token_recycling", cfg)
    assert trace.token_ids == greedy.token_ids and trace.tokens_per_target_forward > 1.5
    assert any(s.draft_source == "recycling" and s.draft_parents for s in trace.steps)
    # each accepted token's attention entropy, read from its tree node's row, is greedy's for that token
    torch.testing.assert_close(trace.attention_entropy, greedy.attention_entropy, atol=1e-4, rtol=0)
    step = next(s for s in trace.to_json()["steps"] if s["draft_parents"])
    assert step["accepted_length"] == len(step["accepted"]) and len(step["accepted_path"]) <= len(
        step["accepted"]
    )


def test_token_recycling_under_interventions_matches_greedy_on_the_same_model(
    tiny_llama: ModelHandle,
) -> None:
    ids = tiny_llama.tokenize(PROMPT)[0].tolist()
    for cfg in (
        DecodeConfig(max_new_tokens=16, ablate_heads="0.1, 1.*"),
        DecodeConfig(max_new_tokens=16, dial=LocalityDial(lam=0.7, heads="1.0", schedule="progressive")),
    ):
        greedy = decode(tiny_llama, ids, "greedy", cfg)
        trace = decode(tiny_llama, ids, "token_recycling", cfg)
        assert trace.token_ids == greedy.token_ids and trace.intervention == greedy.intervention
        if cfg.dial is not None:  # the dial's hooks take the causal layout: its drafts go as chains
            assert all(s.draft_parents is None for s in trace.steps)


def test_token_recycling_sampling_is_seeded(tiny_gpt2: ModelHandle) -> None:
    ids = tiny_gpt2.tokenize(PROMPT)[0].tolist()
    cfg = DecodeConfig(max_new_tokens=20, temperature=0.8, seed=4)
    a = decode(tiny_gpt2, ids, "token_recycling", cfg)
    b = decode(tiny_gpt2, ids, "token_recycling", cfg)
    assert a.token_ids == b.token_ids and len(a.token_ids) > 0
    assert all(0 < p <= 1 for s in a.steps for p in s.verifier_probs)
