"""Activation (gradient) checkpointing: switching it on and asking whether it is on.

transformers renamed both in 5.2x (``activation_checkpointing_enable`` /
``is_activation_checkpointing``); the older names are used where the new ones are missing.
"""

from __future__ import annotations

import torch


def enable_activation_checkpointing(model: torch.nn.Module) -> None:
    """Recompute each layer's activations in the backward pass (model.gradient_checkpointing).
    Non-reentrant, so a LoRA policy needs no input that requires grad."""
    enable = getattr(model, "activation_checkpointing_enable", None)
    if enable is not None:
        enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def is_checkpointing(model: torch.nn.Module) -> bool:
    """Whether `model` (or the model a DDP wrapper holds) recomputes activations."""
    model = getattr(model, "module", model)  # DDP wraps the model and has neither flag
    flag = getattr(model, "is_activation_checkpointing", None)
    return bool(flag if flag is not None else getattr(model, "is_gradient_checkpointing", False))
