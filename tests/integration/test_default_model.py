"""The real embedded default model (SmolLM2-135M from its GGUF), against plain transformers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from headscope.models import CATALOG, ModelHandle
from headscope.models.loading import _cache_dir

pytestmark = pytest.mark.default_model
PROMPT = "The capital of France is Paris. The capital of Italy is"


@pytest.fixture(scope="module")
def fresh_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hscache")


@pytest.fixture(scope="module")
def first_and_cached(fresh_cache: Path) -> tuple[ModelHandle, ModelHandle]:
    """Two loads into an empty cache: the first converts the GGUF, the second reads the safetensors copy."""
    mp = pytest.MonkeyPatch()
    mp.setenv("HEADSCOPE_CACHE", str(fresh_cache))
    try:
        first = ModelHandle.load("smollm2-135m", device="cpu")
        cached = ModelHandle.load("smollm2-135m", device="cpu")
    finally:
        mp.undo()
    return first, cached


@pytest.fixture(scope="module")
def plain(first_and_cached: tuple[ModelHandle, ModelHandle], fresh_cache: Path):
    folder = _cache_dir(CATALOG["smollm2-135m"], CATALOG["smollm2-135m"].source_path())  # type: ignore[arg-type]
    folder = fresh_cache / folder.relative_to(folder.parents[2])
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, local_files_only=True).eval()
    return model, AutoTokenizer.from_pretrained(folder, local_files_only=True)


def test_cache_written_and_reload_is_exact(first_and_cached: tuple[ModelHandle, ModelHandle]) -> None:
    first, cached = first_and_cached
    assert not first.loaded_from_cache and cached.loaded_from_cache
    ids = first.tokenize(PROMPT)
    assert torch.equal(first.forward(ids), cached.forward(ids))
    assert first.identity == cached.identity and first.identity.sha256 is not None
    assert len(first.identity.sha256) == 64


def test_facts_and_tokenisation(default_model: ModelHandle) -> None:
    f = default_model.facts
    assert (f.n_layers, f.n_heads, f.n_kv_heads, f.d_head, f.d_model) == (30, 9, 3, 64, 576)
    ids = default_model.tokenize(PROMPT)[0].tolist()
    assert ids[0] != 1, "SmolLM2's tokenizer adds no <|im_start|> BOS; the handle must not either"
    assert not default_model.prepends_bos


def test_logits_equal_plain_transformers(first_and_cached, plain) -> None:
    handle, _ = first_and_cached
    model, tok = plain
    ids = handle.tokenize(PROMPT)
    assert ids[0].tolist() == tok(PROMPT).input_ids
    with torch.no_grad():
        expected = model(ids).logits
    assert float((handle.forward(ids) - expected).abs().max()) <= 1e-4


def test_greedy_20_tokens_matches_plain_generate(first_and_cached, plain) -> None:
    handle, _ = first_and_cached
    model, _ = plain
    ids = handle.tokenize(PROMPT)
    ours = handle.greedy(ids, 20)
    ref = model.generate(ids, max_new_tokens=20, do_sample=False)[0, ids.shape[1] :].tolist()
    assert ours == ref[: len(ours)] and len(ours) == min(20, len(ref))


def test_corrupt_cache_is_recreated(
    first_and_cached, fresh_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _ = first_and_cached
    meta = next(fresh_cache.glob("models/smollm2-135m/*/meta.json"))
    weights = meta.parent / "model.safetensors"
    # Replace, not overwrite in place: live handles memory-map this file, and truncating a mapped file under them
    # is a SIGBUS (the loader itself only ever unlinks and renames, which leaves existing maps valid).
    damaged = weights.with_suffix(".tmp")
    damaged.write_bytes(b"not a safetensors file")
    damaged.replace(weights)
    monkeypatch.setenv("HEADSCOPE_CACHE", str(fresh_cache))
    again = ModelHandle.load("smollm2-135m", device="cpu")
    assert not again.loaded_from_cache  # rebuilt from the GGUF
    ids = first.tokenize("Hello")
    assert torch.equal(again.forward(ids), first.forward(ids))
    assert json.loads(meta.read_text())["sha256"] == first.identity.sha256


def test_truncated_meta_is_rebuilt(
    first_and_cached, fresh_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _ = first_and_cached
    meta = next(fresh_cache.glob("models/smollm2-135m/*/meta.json"))
    broken = meta.with_suffix(".tmp")
    broken.write_text(meta.read_text()[:25])  # a crash mid-write, or a disk that filled up
    broken.replace(meta)
    monkeypatch.setenv("HEADSCOPE_CACHE", str(fresh_cache))
    again = ModelHandle.load("smollm2-135m", device="cpu")
    assert not again.loaded_from_cache
    assert json.loads(meta.read_text())["sha256"] == first.identity.sha256
    ids = first.tokenize("Hello")
    assert torch.equal(again.forward(ids), first.forward(ids))


def test_no_token_reads_as_a_replacement_character(default_model: ModelHandle) -> None:
    """313 SmolLM2 tokens hold part of a UTF-8 character and decoded alone to "�": each reads as its bytes (one
    token is the character U+FFFD itself and keeps it), and the bytes of a text's tokens are the text's own UTF-8
    (checked against Python's encoder)."""
    from headscope.models.token_text import token_bytes

    tok = default_model.tokenizer
    every = default_model.str_tokens(range(tok.vocab_size))

    def whole(i: int) -> bool:
        try:
            (token_bytes(tok, i) or b"").decode("utf-8")
        except UnicodeDecodeError:
            return False
        return True

    partial = [i for i in range(tok.vocab_size) if not whole(i)]
    assert len(partial) == 313 and all("\\x" in every[i] and "\ufffd" not in every[i] for i in partial)
    assert [t for t in every if "\ufffd" in t] == ["\ufffd"]  # the character itself (token 24211)
    text = "naïve café — 東京 “quoted” ✓"
    ids = default_model.tokenize(text)[0].tolist()
    assert b"".join(token_bytes(tok, i) or b"?" for i in ids) == text.encode("utf-8")
    shown = default_model.str_tokens(ids)
    assert [t for t in shown if "\\x" in t] and "".join(shown) != tok.decode(ids)  # some split characters
