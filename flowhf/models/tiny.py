"""Tiny randomly initialised LLaMA-architecture models, built from a config (never downloaded).

Used by the tests and by the exact-target benchmark. The architecture is the same as
SmolLM2 / LLaMA, only smaller, so every code path that runs on a real model runs here.
"""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def tiny_llama_config(
    vocab_size: int,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    max_position_embeddings: int = 512,
    bos_token_id: int | None = None,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        tie_word_embeddings=True,
    )


def tiny_llama(vocab_size: int, seed: int = 0, **kwargs) -> LlamaForCausalLM:
    """A randomly initialised LlamaForCausalLM; deterministic for a given seed."""
    config = tiny_llama_config(vocab_size, **kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model
