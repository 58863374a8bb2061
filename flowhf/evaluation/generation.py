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

from flowhf.sampling.logprobs import completion_log_probs
from flowhf.sampling.prompts import (  # noqa: F401  (old names)
    completion_mask,
    eos_ids,
    left_padding,
    pad_token_id,
    prompt_batch,
)


@dataclass
class GenerationSettings:
    """Sampling settings of the evaluation (defaults follow the report: temperature 0.1)."""

    temperature: float = field(
        default=0.1, metadata={"help": "Sampling temperature (the report uses 0.1)."}
    )
    top_p: float = field(
        default=1.0, metadata={"help": "Nucleus sampling mass in (0, 1]; 1.0 disables it."}
    )
    top_k: int = field(
        default=0,
        metadata={"help": "Top-k filtering; 0 disables it (HF's own default would be 50)."},
    )
    repetition_penalty: float = field(
        default=1.0, metadata={"help": "HF repetition penalty (> 0); 1.0 disables it."}
    )
    max_new_tokens: int = field(
        default=64, metadata={"help": "Maximum tokens generated per completion."}
    )
    batch_size: int = field(default=16, metadata={"help": "Prompts per generate() call."})
    do_sample: bool = field(
        default=True,
        metadata={"help": "Sample (True) or greedy decode (False; temperature/top_p unused)."},
    )
    use_chat_template: bool = field(
        default=True,
        metadata={"help": "Wrap prompts in the tokenizer's chat template when it has one."},
    )

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(
                f"temperature must be > 0, got {self.temperature} (use do_sample=False for greedy)"
            )
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 disables it), got {self.top_k}")
        if not self.repetition_penalty > 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    def generate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``model.generate`` (sampling knobs only when sampling)."""
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": self.do_sample,
            "repetition_penalty": self.repetition_penalty,
        }
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k)
        return kwargs


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


# The evaluation's old names for the shared prompt path.
encode_prompts = prompt_batch


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
