"""Optimiser and learning-rate schedule: the policy, the flow / log Z heads and the scalar
log Z each get their own learning rate (Malkin et al. train log Z ~100x faster).

The trainer and the exact-target harness both build their optimiser here."""

from __future__ import annotations

import math

import torch

from flowhf.config.training import OptimArgs
from flowhf.training.heads import HEAD_KINDS


def build_optimizer(
    policy: torch.nn.Module, heads: dict[str, torch.nn.Module], opt: OptimArgs
) -> torch.optim.Optimizer:
    trainable = [p for p in policy.parameters() if p.requires_grad]
    groups = [
        {
            "params": trainable,
            "lr": opt.learning_rate,
            "weight_decay": opt.weight_decay,
            "name": "policy",
        }
    ]
    for name, head in heads.items():
        lr = (
            getattr(opt, HEAD_KINDS[name].learning_rate)
            if name in HEAD_KINDS
            else opt.head_learning_rate
        )
        groups.append(
            {"params": list(head.parameters()), "lr": lr, "weight_decay": 0.0, "name": name}
        )
    return torch.optim.AdamW(groups)


def build_scheduler(
    optimizer: torch.optim.Optimizer, opt: OptimArgs, total_steps: int | None = None
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then constant, linear or cosine decay to 0 at the last step
    (``total_steps``: the run's step budget, default optim.max_steps)."""
    total = total_steps or opt.max_steps

    def factor(step: int) -> float:
        if opt.warmup_steps and step < opt.warmup_steps:
            return (step + 1) / opt.warmup_steps
        return decay_factor(
            opt.lr_scheduler, (step - opt.warmup_steps) / max(1, total - opt.warmup_steps)
        )

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def decay_factor(kind: str, progress: float) -> float:
    """Learning-rate multiplier after warm-up, ``progress`` in [0, 1] of the budget.

    Shared with the exact-target harness, whose budget may be wall-clock seconds.
    """
    if kind == "constant":
        return 1.0
    progress = min(1.0, progress)
    return 1.0 - progress if kind == "linear" else 0.5 * (1 + math.cos(math.pi * progress))


def set_lr_factor(optimizer: torch.optim.Optimizer, base_lrs: list[float], factor: float) -> None:
    """Scale every group's base learning rate by ``factor`` (a schedule driven by time)."""
    for group, base in zip(optimizer.param_groups, base_lrs):
        group["lr"] = base * factor
