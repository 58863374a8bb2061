"""Sampling completions for evaluation with Hugging Face ``generate``, and their log-probs.

Prompts are left-padded in batches (decoder-only models continue from the right end). When
the tokenizer has a chat template the prompt is wrapped as one user turn with the generation
prompt appended, as an instruct model expects; ``use_chat_template=False`` feeds raw text.

A completion ends with its first EOS token (included, as in the trajectory convention of
ARCHITECTURE.md) or after ``max_new_tokens`` tokens; anything ``generate`` emits after the
first EOS is padding and is masked out.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class GenerationSettings:
    """Sampling settings of the evaluation (defaults follow the report: temperature 0.1)."""

    temperature: float = field(default=0.1, metadata={"help": "Sampling temperature (the report uses 0.1)."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass in (0, 1]; 1.0 disables it."})
    top_k: int = field(
        default=0, metadata={"help": "Top-k filtering; 0 disables it (HF's own default would be 50)."}
    )
    repetition_penalty: float = field(
        default=1.0, metadata={"help": "HF repetition penalty (> 0); 1.0 disables it."}
    )
    max_new_tokens: int = field(default=64, metadata={"help": "Maximum tokens generated per completion."})
    batch_size: int = field(default=16, metadata={"help": "Prompts per generate() call."})
    do_sample: bool = field(
        default=True, metadata={"help": "Sample (True) or greedy decode (False; temperature/top_p unused)."}
    )
    use_chat_template: bool = field(
        default=True,
        metadata={"help": "Wrap prompts in the tokenizer's chat template when it has one."},
    )

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature} (use do_sample=False for greedy)")
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


@contextlib.contextmanager
def left_padding(tokenizer: Any) -> Iterator[Any]:
    """Temporarily left-pad, with EOS as pad token when the tokenizer has none."""
    old_side, old_pad = tokenizer.padding_side, tokenizer.pad_token
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError("the tokenizer has neither a pad nor an EOS token; set tokenizer.pad_token")
        tokenizer.pad_token = tokenizer.eos_token
    try:
        yield tokenizer
    finally:
        tokenizer.padding_side = old_side
        if old_pad is None:
            tokenizer.pad_token = None


def encode_prompts(tokenizer: Any, prompts: Sequence[str], use_chat_template: bool) -> dict[str, torch.Tensor]:
    """Left-padded ``input_ids`` / ``attention_mask`` for a batch of prompts."""
    if use_chat_template and getattr(tokenizer, "chat_template", None):
        texts = [
            tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
            for p in prompts
        ]
        # The template already holds BOS / role tokens: adding specials would double them.
        return tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    return tokenizer(list(prompts), return_tensors="pt", padding=True)


def eos_ids(model: Any, tokenizer: Any) -> list[int]:
    """Every token id that ends a completion (generation config and tokenizer EOS)."""
    ids: set[int] = set()
    config_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (config_eos, tokenizer.eos_token_id):
        if value is None:
            continue
        ids.update(value if isinstance(value, (list, tuple)) else [value])
    return sorted(ids)


def completion_mask(completion_ids: torch.Tensor, stop_ids: Sequence[int]) -> torch.Tensor:
    """1.0 for every token up to and including the first stop token; all ones if none."""
    length = completion_ids.shape[1]
    if not stop_ids or length == 0:
        return torch.ones_like(completion_ids, dtype=torch.float32)
    is_stop = torch.isin(completion_ids, torch.tensor(stop_ids, device=completion_ids.device))
    first = torch.where(is_stop.any(1), is_stop.int().argmax(1), torch.full_like(is_stop[:, 0], length, dtype=torch.long))
    positions = torch.arange(length, device=completion_ids.device)
    return (positions[None, :] <= first[:, None]).float()


@torch.inference_mode()
def generate_batch(model: Any, tokenizer: Any, prompts: Sequence[str], settings: GenerationSettings) -> GeneratedBatch:
    """Sample one completion per prompt; decoded text excludes special tokens and padding."""
    device = next(model.parameters()).device
    with left_padding(tokenizer):
        enc = encode_prompts(tokenizer, prompts, settings.use_chat_template)
        pad_id = tokenizer.pad_token_id
    stop = eos_ids(model, tokenizer)
    enc = {key: value.to(device) for key, value in enc.items()}
    out = model.generate(
        **enc, pad_token_id=pad_id, eos_token_id=stop or None, **settings.generate_kwargs()
    )
    completion_ids = out[:, enc["input_ids"].shape[1] :]
    mask = completion_mask(completion_ids, stop)
    lengths = mask.sum(1).long().tolist()
    texts = [
        tokenizer.decode(row[:n].tolist(), skip_special_tokens=True).strip()
        for row, n in zip(completion_ids, lengths)
    ]
    return GeneratedBatch(enc["input_ids"], enc["attention_mask"], completion_ids, mask, texts)


@torch.inference_mode()
def completion_logprobs(model: Any, batch: GeneratedBatch) -> torch.Tensor:
    """``log p(y_t | x, y_<t)`` of every completion token under ``model`` at temperature 1.

    Returns ``[B, T]`` float32, 0 where the completion mask is 0. Position ids follow the
    left padding (cumulative attention) exactly as ``generate`` computed them.
    """
    device = next(model.parameters()).device
    ids = torch.cat([batch.prompt_ids, batch.completion_ids], dim=1).to(device)
    attn = torch.cat([batch.prompt_mask, batch.completion_mask.to(batch.prompt_mask.dtype)], dim=1).to(device)
    positions = (attn.long().cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=ids, attention_mask=attn, position_ids=positions).logits
    prompt_len, steps = batch.prompt_ids.shape[1], batch.completion_ids.shape[1]
    # Logit at position i predicts token i + 1: completion token t is predicted at P - 1 + t.
    step_logits = logits[:, prompt_len - 1 : prompt_len - 1 + steps].float()
    logp = torch.log_softmax(step_logits, dim=-1)
    taken = logp.gather(-1, batch.completion_ids.to(device).unsqueeze(-1)).squeeze(-1)
    return (taken * batch.completion_mask.to(device)).cpu()
