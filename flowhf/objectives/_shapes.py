"""Shared shape helpers for objectives that work on per-state quantities.

A trajectory of `L` actions visits states s_0 (the prompt) .. s_L (terminal). Batches
are right-padded: actions live on [B, T], states on [B, T+1] (see ARCHITECTURE.md).
"""

from __future__ import annotations

from flowhf._torch import torch


def accumulation_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """float64 if any input is float64, else float32: never accumulate in bf16/fp16."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def lengths_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """Number of actions per trajectory, [B] long."""
    return mask.sum(dim=1).round().long()


def terminal_one_hot(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, T+1] with a 1 at each trajectory's terminal state index L."""
    B, T = mask.shape
    lengths = lengths_from_mask(mask)  # [B]
    positions = torch.arange(T + 1, device=mask.device)  # [T+1]
    return (positions.unsqueeze(0) == lengths.unsqueeze(1)).to(dtype)  # [B, T+1]
