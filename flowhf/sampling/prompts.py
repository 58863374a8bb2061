"""How a prompt becomes token ids and where a completion ends: one path for every method.

FlowHF training, the evaluation's sampling, the TRL baselines (and the real-LM benchmark)
all encode prompts here, so the methods are compared on the same inputs; a test checks
that every runner gives the same ids for the same prompt.

- A prompt is a text or, in TRL's conversational format, a list of ``{"role", "content"}``
  messages. Messages always go through the tokenizer's chat template with the generation
  prompt appended, as TRL's GRPOTrainer renders them.
- With a chat template (and ``use_chat_template``) a text prompt is one user turn, rendered
  the same way (no extra special tokens: the template holds BOS / role tokens). Otherwise
  the raw text with the tokenizer's own special tokens (what TRL does with a text prompt).
- Conversational completions are one assistant message (`as_completion`), as TRL hands
  them to reward functions; `message_text` turns either format back into plain text.
- Prompts are LEFT-padded (a decoder-only model continues from the right end); completions
  are right-padded (ARCHITECTURE.md).
- A completion ends at its first EOS id: the tokenizer's EOS or any id of the model's
  generation config.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch


def uses_chat_template(tokenizer: Any, use_chat_template: bool) -> bool:
    """Whether prompts are wrapped: asked for and the tokenizer has a template."""
    return bool(use_chat_template and getattr(tokenizer, "chat_template", None))


def as_conversation(prompt: str) -> list[dict[str, str]]:
    """The prompt as one user turn (the chat / TRL conversational format)."""
    return [{"role": "user", "content": prompt}]


def as_completion(text: str) -> list[dict[str, str]]:
    """A completion in TRL's conversational format: one assistant message."""
    return [{"role": "assistant", "content": text}]


def is_conversation(value: Any) -> bool:
    """Whether ``value`` is TRL's conversational format: a non-empty list of role/content messages."""
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(m, dict) and "role" in m for m in value)
    )


def message_text(value: Any, role: str) -> str:
    """Plain text of a prompt/completion: the string itself, or the last ``role`` message's content."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
        matching = [m for m in value if m.get("role") == role] or value
        content = matching[-1].get("content", "")
        if isinstance(content, list):  # content blocks: keep the text parts
            return "".join(part.get("text", "") for part in content if isinstance(part, dict))
        return str(content)
    raise TypeError(
        f"expected a string or a list of chat messages, got {type(value).__name__}: {value!r:.120}"
    )


def prompt_key(prompt: Any) -> str:
    """A text that identifies a prompt (the replay buffer's key): the text, or the messages as JSON."""
    import json

    return (
        prompt
        if isinstance(prompt, str)
        else json.dumps(prompt, sort_keys=True, ensure_ascii=False)
    )


def encode_prompt(tokenizer: Any, prompt: str | list[dict], use_chat_template: bool) -> list[int]:
    """Token ids of one prompt (see the module docstring for the format)."""
    if is_conversation(prompt) and not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            "conversational prompts (lists of role/content messages) need a tokenizer with a chat "
            "template; set tokenizer.chat_template, or give the prompts as text"
        )
    if is_conversation(prompt) or uses_chat_template(tokenizer, use_chat_template):
        messages = prompt if is_conversation(prompt) else as_conversation(prompt)
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):
            ids = ids["input_ids"]
        return [int(i) for i in ids]
    return [int(i) for i in tokenizer(prompt, add_special_tokens=True)["input_ids"]]


def encode_prompts(
    tokenizer: Any, prompts: Sequence[str | list[dict]], use_chat_template: bool
) -> list[list[int]]:
    """Token ids of each prompt, unpadded."""
    return [encode_prompt(tokenizer, p, use_chat_template) for p in prompts]


def left_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, P] ids and mask, padded on the left."""
    P = max(len(r) for r in rows)
    ids = torch.full((len(rows), P), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), P, dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, P - len(r) :] = torch.as_tensor(r)
            mask[i, P - len(r) :] = 1
    return ids, mask


def pad_token_id(tokenizer: Any) -> int:
    """The pad id prompts are padded with: the tokenizer's, else its EOS."""
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    if tokenizer.eos_token_id is None:
        raise ValueError(
            "the tokenizer has neither a pad nor an EOS token; set tokenizer.pad_token"
        )
    return tokenizer.eos_token_id


def prompt_batch(
    tokenizer: Any, prompts: Sequence[str], use_chat_template: bool
) -> dict[str, torch.Tensor]:
    """Left-padded ``input_ids`` / ``attention_mask`` of a batch of prompts (for ``generate``)."""
    ids, mask = left_pad(
        encode_prompts(tokenizer, prompts, use_chat_template), pad_token_id(tokenizer)
    )
    return {"input_ids": ids, "attention_mask": mask}


@contextlib.contextmanager
def left_padding(tokenizer: Any) -> Iterator[Any]:
    """Temporarily left-pad, with EOS as pad token when the tokenizer has none."""
    from flowhf.models.loading import prepare_tokenizer  # here: peft loads only when padding

    old_side, old_pad = tokenizer.padding_side, tokenizer.pad_token
    prepare_tokenizer(tokenizer, "left")
    try:
        yield tokenizer
    finally:
        tokenizer.padding_side = old_side
        if old_pad is None:
            tokenizer.pad_token = None


def completion_token_ids(tokenizer: Any, text: str) -> list[int]:
    """A completion text's canonical token ids: no special tokens and no EOS."""
    return [int(i) for i in tokenizer(text, add_special_tokens=False)["input_ids"]]


def encode_completion(
    tokenizer: Any, text: str, eos_id: int, max_new_tokens: int | None = None
) -> tuple[list[int], bool]:
    """A completion text as actions, and whether it ends with EOS: its ids + ``eos_id``; or, with
    ``max_new_tokens`` ids or more, its first max_new_tokens ids and no EOS, exactly like a
    sampled completion forced to end at the limit (None: no limit)."""
    ids = completion_token_ids(tokenizer, text)
    if max_new_tokens is None or len(ids) < max_new_tokens:
        return ids + [eos_id], True
    return ids[:max_new_tokens], False


def eos_ids(model: Any, tokenizer: Any) -> list[int]:
    """Every token id that ends a completion (tokenizer EOS and the generation config's), sorted."""
    ids: set[int] = set()
    config_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (config_eos, tokenizer.eos_token_id):
        if value is None:
            continue
        ids.update(
            int(i)
            for i in (value if isinstance(value, (list, tuple)) else [value])
            if i is not None
        )
    return sorted(ids)


def completion_mask(completion_ids: torch.Tensor, stop_ids: Sequence[int]) -> torch.Tensor:
    """1.0 for every token up to and including the first stop token; all ones if none."""
    length = completion_ids.shape[1]
    if not stop_ids or length == 0:
        return torch.ones_like(completion_ids, dtype=torch.float32)
    is_stop = torch.isin(completion_ids, torch.tensor(stop_ids, device=completion_ids.device))
    first = torch.where(
        is_stop.any(1),
        is_stop.int().argmax(1),
        torch.full_like(is_stop[:, 0], length, dtype=torch.long),
    )
    positions = torch.arange(length, device=completion_ids.device)
    return (positions[None, :] <= first[:, None]).float()
