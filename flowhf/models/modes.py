"""A module in eval mode for a while, its training mode restored after (one place for the toggle)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Sample or measure without dropout (LoRA dropout included), then restore `model.training`,
    also when the body raises."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
