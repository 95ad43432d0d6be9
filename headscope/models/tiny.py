"""Tiny random models built in code, with a byte-level tokenizer, so tests need no download and no package data."""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

N_BYTES = 256
BOS_ID, EOS_ID = N_BYTES, N_BYTES + 1
VOCAB = N_BYTES + 2
SEED = 1234


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """One token per byte (GPT-2's byte-to-unicode alphabet) plus BOS/EOS; adds no BOS, like SmolLM2."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    vocab["<bos>"], vocab["<eos>"] = BOS_ID, EOS_ID
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>")
    fast.pad_token = fast.eos_token
    return fast


def _seeded(build):
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(SEED)
    try:
        return build()
    finally:
        torch.random.set_rng_state(gen_state)


def tiny_llama() -> PreTrainedModel:
    cfg = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        tie_word_embeddings=True,
    )
    cfg._attn_implementation = "eager"
    cfg.architectures = ["LlamaForCausalLM"]
    return _seeded(lambda: LlamaForCausalLM(cfg).float().eval())


def tiny_gpt2() -> PreTrainedModel:
    cfg = GPT2Config(
        vocab_size=VOCAB,
        n_positions=512,
        n_embd=64,
        n_layer=2,
        n_head=4,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
    )
    cfg._attn_implementation = "eager"
    cfg.architectures = ["GPT2LMHeadModel"]
    return _seeded(lambda: GPT2LMHeadModel(cfg).float().eval())


TINY_BUILDERS = {"tiny-llama": tiny_llama, "tiny-gpt2": tiny_gpt2}
