"""Penalties that turn balance residuals into a loss.

GFlowNet objectives are regression problems: every balance condition says some residual
should be zero. The penalty is pluggable; squared is the one in every paper, Huber is a
robust option when a few trajectories have huge residuals (early training, rare rewards).
"""

from __future__ import annotations

from collections.abc import Callable

from flowhf._torch import torch

Penalty = Callable[["torch.Tensor"], "torch.Tensor"]


def squared(residual: torch.Tensor) -> torch.Tensor:
    """Elementwise r^2 (the loss of Malkin et al. 2022 and every later paper)."""
    return residual.pow(2)


def huber(residual: torch.Tensor, delta: float = 1.0) -> torch.Tensor:
    """Elementwise Huber: r^2 / 2 for |r| <= delta, delta * (|r| - delta / 2) beyond.

    Note the 1/2: Huber(r) is half of `squared` near zero, so the two penalties give
    gradients of the same *direction* but a factor 2 apart in the quadratic regime.
    """
    abs_r = residual.abs()
    quadratic = 0.5 * residual.pow(2)
    linear = delta * (abs_r - 0.5 * delta)
    return torch.where(abs_r <= delta, quadratic, linear)


def get_penalty(name: str, huber_delta: float = 1.0) -> Penalty:
    """Look a penalty up by name: ``squared`` or ``huber``."""
    if name == "squared":
        return squared
    if name == "huber":
        return lambda r: huber(r, huber_delta)
    raise ValueError(f"unknown regression loss {name!r}: use 'squared' or 'huber'")


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `values` over the positions where `mask` is 1 (0 if the mask is empty)."""
    return (values * mask).sum() / mask.sum().clamp_min(1.0)
