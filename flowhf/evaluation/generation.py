"""Sampling completions for evaluation with Hugging Face ``generate``, and their log-probs.

Prompts are encoded and left-padded by `flowhf.sampling.prompts`, exactly as training and the
baselines encode them: with a chat template the prompt is one user turn with the generation
prompt appended, as an instruct model expects; ``use_chat_template=False`` feeds raw text.

A completion ends with its first EOS token (included, as in the trajectory convention of
ARCHITECTURE.md) or after ``max_new_tokens`` tokens; anything ``generate`` emits after the
first EOS is padding and is masked out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from flowhf.config.evaluation import GenerationSettings
from flowhf.sampling.logprobs import completion_log_probs
from flowhf.sampling.prompts import completion_mask, eos_ids, pad_token_id, prompt_batch


@dataclass
class GeneratedBatch:
    """One batch of prompts and sampled completions, kept for log-prob recomputation."""

    prompt_ids: torch.Tensor  # [B, P] left-padded
    prompt_mask: torch.Tensor  # [B, P]
    completion_ids: torch.Tensor  # [B, T] right-padded
    completion_mask: torch.Tensor  # [B, T] 1.0 up to and including the first EOS
    texts: list[str]
    ended: list[bool] = field(
        default_factory=list
    )  # [B] the completion stopped at an EOS (not cut at max_new_tokens)
    lengths: list[int] = field(default_factory=list)  # [B] tokens, the EOS included


@torch.inference_mode()
def generate_batch(
    model: Any, tokenizer: Any, prompts: Sequence[str], settings: GenerationSettings
) -> GeneratedBatch:
    """Sample one completion per prompt; decoded text excludes special tokens and padding."""
    device = next(model.parameters()).device
    enc = {
        key: value.to(device)
        for key, value in prompt_batch(tokenizer, prompts, settings.use_chat_template).items()
    }
    stop = eos_ids(model, tokenizer)
    out = model.generate(
        **enc,
        pad_token_id=pad_token_id(tokenizer),
        eos_token_id=stop or None,
        **settings.generate_kwargs(),
    )
    completion_ids = out[:, enc["input_ids"].shape[1] :]
    mask = completion_mask(completion_ids, stop)
    lengths = mask.sum(1).long().tolist()
    texts = [
        tokenizer.decode(row[:n].tolist(), skip_special_tokens=True).strip()
        for row, n in zip(completion_ids, lengths)
    ]
    ended = [n > 0 and int(row[n - 1]) in stop for row, n in zip(completion_ids, lengths)]
    return GeneratedBatch(
        enc["input_ids"], enc["attention_mask"], completion_ids, mask, texts, ended, lengths
    )


@torch.inference_mode()
def completion_logprobs(model: Any, batch: GeneratedBatch) -> torch.Tensor:
    """``log p(y_t | x, y_<t)`` of every completion token under ``model`` at temperature 1.

    Returns ``[B, T]`` float32 on the CPU, 0 where the completion mask is 0: the training
    path's `flowhf.sampling.completion_log_probs`, so both score completions the same way.
    """
    device = next(model.parameters()).device
    scores = completion_log_probs(
        model,
        batch.prompt_ids.to(device),
        batch.prompt_mask.to(device),
        batch.completion_ids.to(device),
        batch.completion_mask.to(device),
    )
    return scores.log_pf.cpu()
