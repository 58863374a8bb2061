"""Dense toy rewards for smoke runs on tiny random models (VADER scores their gibberish 0).

Use as ``python:flowhf.rewards.toy:letter_share`` (the smoke preset's proxy) or
``python:flowhf.rewards.toy:distinct_word_share`` (its gold judge: it punishes repetition,
which letter_share does not see).
"""

from __future__ import annotations

import torch


def letter_share(prompts: list[str], completions: list[str], **columns) -> torch.Tensor:
    """Fraction of a completion's characters that are letters (0 for an empty completion)."""
    return torch.tensor(
        [sum(c.isalpha() for c in text) / max(len(text), 1) for text in completions]
    )


def distinct_word_share(prompts: list[str], completions: list[str], **columns) -> torch.Tensor:
    """Distinct words over words of a completion (0 for an empty completion)."""
    return torch.tensor(
        [len(set(text.split())) / max(len(text.split()), 1) for text in completions]
    )
