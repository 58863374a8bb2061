"""Tiny randomly initialised LLaMA-architecture models, built from a config (never downloaded).

Used by the tests and by the exact-target benchmark. The architecture is the same as
SmolLM2 / LLaMA, only smaller, so every code path that runs on a real model runs here.
"""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM

SPECIAL_TOKEN_IDS = ("bos_token_id", "eos_token_id", "pad_token_id")


def tiny_llama_config(
    vocab_size: int,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    max_position_embeddings: int = 512,
    **token_ids: int | None,
) -> LlamaConfig:
    """A small LlamaConfig; ``token_ids``: ``bos_token_id`` / ``eos_token_id`` / ``pad_token_id``,
    None when not given (not LlamaConfig's own defaults)."""
    unknown = sorted(set(token_ids) - set(SPECIAL_TOKEN_IDS))
    if unknown:
        raise TypeError(f"tiny_llama_config() got unexpected keyword arguments {unknown}")
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_position_embeddings,
        **{key: token_ids.get(key) for key in SPECIAL_TOKEN_IDS},
        tie_word_embeddings=True,
    )


def tiny_llama(vocab_size: int, seed: int = 0, **kwargs) -> LlamaForCausalLM:
    """A randomly initialised LlamaForCausalLM; deterministic for a given seed."""
    config = tiny_llama_config(vocab_size, **kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model


TINY_ALIAS = "tiny-random"
TINY_DIRNAME = "tiny-random-llama"
_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_tokenizer(texts: list[str], vocab_size: int = 512):
    """A byte-level BPE tokenizer trained on `texts` (any input encodes; deterministic).

    Special tokens follow SmolLM2's chat format, with EOS = <|im_end|>, so code paths that
    use chat templates run unchanged on the tiny model.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
    )
    fast.chat_template = _CHAT_TEMPLATE
    fast.padding_side = "left"
    return fast


def tiny_model_dir(cache_dir=None, seed: int = 0):
    """Folder with a tiny random LLaMA + tiny tokenizer (the `tiny-random` model alias).

    Built once from the shipped prompt texts and reused; used by `configs/smoke.yaml`, the
    `smoke` pipeline preset and the CLI tests. Never downloads anything.
    """
    from flowhf.io import build_folder_once
    from flowhf.models.cache import cache_root

    def build(folder):
        tokenizer = tiny_tokenizer(_shipped_texts())
        model = tiny_llama(
            len(tokenizer),
            seed=seed,
            hidden_size=64,
            num_layers=2,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    # processes started together build it once
    return build_folder_once(
        cache_root(cache_dir) / TINY_DIRNAME,
        build,
        lambda target: (target / "config.json").is_file(),
    )


def _shipped_texts() -> list[str]:
    import json
    from importlib import resources

    texts = [
        "The quick brown fox jumps over the lazy dog. 0123456789 !?.,;:'\"()[]{}<>+-*/=_#@$%^&|~`\\"
    ]
    shipped = resources.files("flowhf.data") / "shipped"
    for name in ("sentiment_prompts.jsonl", "toxicity_probes.jsonl", "stackexchange_train.jsonl"):
        path = shipped / name
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines()[:300]:
                row = json.loads(line)
                texts.extend(str(v) for v in row.values() if isinstance(v, str))
    return texts
