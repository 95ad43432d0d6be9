from __future__ import annotations

import threading

import pytest
import torch

from headscope.errors import InputError
from headscope.models import ModelHandle
from headscope.models.tiny import TINY_BUILDERS


def _n_hooks(handle: ModelHandle) -> int:
    points = {id(hp): hp for hp in handle.bridge.hook_dict.values()}  # aliases share one hook point
    return sum(len(hp.fwd_hooks) + len(hp.bwd_hooks) for hp in points.values())


def test_tiny_models_run_and_match_plain_transformers(tiny: ModelHandle) -> None:
    ids = tiny.tokenize("hello there")
    assert ids.shape == (1, len("hello there"))  # byte tokenizer, no BOS
    plain = TINY_BUILDERS[tiny.entry.name]()  # a fresh, unbridged model with the same seeded weights
    with torch.no_grad():
        expected = plain(ids).logits
    assert torch.allclose(tiny.forward(ids), expected, atol=1e-6)


def test_facts(tiny_llama: ModelHandle, tiny_gpt2: ModelHandle) -> None:
    f = tiny_llama.facts
    assert (f.n_layers, f.n_heads, f.n_kv_heads, f.d_head, f.d_model) == (2, 4, 2, 16, 64)
    assert tiny_gpt2.facts.n_kv_heads == tiny_gpt2.facts.n_heads == 4
    assert f.n_params == sum(p.numel() for p in tiny_llama.hf_model.parameters())


def test_hook_changes_output_and_is_removed_after_exception(tiny: ModelHandle) -> None:
    ids = tiny.tokenize("abcdef")
    clean = tiny.forward(ids)
    before = _n_hooks(tiny)

    def zero_resid(act: torch.Tensor, hook: object) -> torch.Tensor:
        return torch.zeros_like(act)

    hooked = tiny.forward(ids, fwd_hooks=[("blocks.0.hook_resid_post", zero_resid)])
    assert not torch.allclose(hooked, clean)
    with pytest.raises(RuntimeError, match="boom"), tiny.hooks([("blocks.0.hook_resid_post", zero_resid)]):
        assert _n_hooks(tiny) == before + 1
        raise RuntimeError("boom")
    assert _n_hooks(tiny) == before
    assert torch.equal(tiny.forward(ids), clean)


def test_unknown_hook_name_is_an_input_error(tiny_llama: ModelHandle) -> None:
    with pytest.raises(InputError, match="unknown hook"):
        tiny_llama.run_with_cache(tiny_llama.tokenize("x"), ["blocks.9.nope"])


def test_run_with_cache_patterns_are_causal_distributions(tiny: ModelHandle) -> None:
    ids = tiny.tokenize("attention rows sum to one")
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(tiny.facts.n_layers)]
    _, cache = tiny.run_with_cache(ids, names)
    n = ids.shape[1]
    for name in names:
        pat = cache[name]
        assert pat.shape == (1, tiny.facts.n_heads, n, n)
        assert torch.allclose(pat.sum(-1), torch.ones(1, tiny.facts.n_heads, n), atol=1e-5)
        assert float(pat.triu(1).abs().max()) == 0.0


def test_hook_result_is_switched_on_only_while_asked(tiny_llama: ModelHandle) -> None:
    ids = tiny_llama.tokenize("per head")
    _, cache = tiny_llama.run_with_cache(ids, ["blocks.1.attn.hook_result", "blocks.1.hook_attn_out"])
    result = cache["blocks.1.attn.hook_result"]
    assert result.shape == (1, ids.shape[1], 4, 64)
    # Per-head outputs sum to the attention output minus the output bias (Llama has none).
    assert torch.allclose(result.sum(2), cache["blocks.1.hook_attn_out"], atol=1e-5)
    assert not getattr(tiny_llama.bridge.cfg, "use_attn_result", False)


def test_tokenize_bad_input(tiny_llama: ModelHandle) -> None:
    for bad in ["", "   "]:
        with pytest.raises(InputError, match="empty"):
            tiny_llama.tokenize(bad)
    with pytest.raises(InputError, match="limit"):
        tiny_llama.tokenize("x" * 600)


def test_lock_serialises_hooked_runs(tiny_llama: ModelHandle) -> None:
    """A second thread's hooked run waits for the first hooks block to exit: hook state never interleaves."""
    ids = tiny_llama.tokenize("lock")
    clean = tiny_llama.forward(ids)
    inside, release, results = threading.Event(), threading.Event(), {}

    def scale(act: torch.Tensor, hook: object) -> torch.Tensor:
        return act * 3

    def holder() -> None:
        with tiny_llama.hooks([("blocks.0.hook_resid_post", scale)]):
            inside.set()
            release.wait(5)

    def other() -> None:
        results["other"] = tiny_llama.forward(ids)

    t1 = threading.Thread(target=holder)
    t1.start()
    inside.wait(5)
    t2 = threading.Thread(target=other)
    t2.start()
    t2.join(0.3)
    assert t2.is_alive(), "the unhooked run must wait for the lock"
    release.set()
    t1.join(5)
    t2.join(5)
    assert torch.equal(results["other"], clean)


def test_greedy_matches_hf_generate(tiny_llama: ModelHandle) -> None:
    ids = tiny_llama.tokenize("The quick brown")
    out = tiny_llama.greedy(ids, 8)
    plain = TINY_BUILDERS["tiny-llama"]()
    ref = plain.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=0)  # pyright: ignore[reportCallIssue]
    # the whole continuation, not a prefix of it: both stop at EOS or after 8 tokens
    assert out == ref[0, ids.shape[1] :].tolist() and 0 < len(out) <= 8


def test_a_token_that_is_part_of_a_character_reads_as_its_bytes(tiny: ModelHandle) -> None:
    """The tiny models' byte-level tokenizer gives every byte its own token: alone, the bytes of "é" or "—"
    decoded to "�" each; they read as their bytes, escaped as Python writes them."""
    text = "café — naïve\x1b"
    ids = tiny.tokenize(text)[0].tolist()
    want = [bytes([b]).decode("utf-8", errors="backslashreplace") for b in text.encode()]
    assert tiny.str_tokens(ids) == want and "\\xe2" in want  # ASCII, "\x1b" included, stays as it is
    assert [tiny.tokenizer.decode([i]) for i in ids[3:5]] == ["\ufffd", "\ufffd"]  # "é" as it read before


def test_a_byte_fallback_piece_reads_as_its_byte() -> None:
    """SentencePiece's byte fallback (Gemma, Llama 2): "<0xE2>" is one byte; a whole piece stays as decoded."""
    from headscope.models.token_text import token_texts

    pieces = {5: "<0xE2>", 6: "▁the", 7: "<0x41>"}
    decoded = {5: "\ufffd", 6: " the", 7: "A"}

    class _SentencePiece:
        def convert_ids_to_tokens(self, i: int) -> str:
            return pieces[i]

        def decode(self, ids: list[int]) -> str:
            return decoded[ids[0]]

    assert token_texts(_SentencePiece(), [5, 6, 7]) == ["\\xe2", " the", "A"]
