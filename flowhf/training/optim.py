"""Optimiser and learning-rate schedule: the policy, the flow / log Z heads and the scalar
log Z each get their own learning rate (Malkin et al. train log Z ~100x faster)."""

from __future__ import annotations

import math

import torch

from flowhf.training.config import OptimArgs


def build_optimizer(policy: torch.nn.Module, heads: dict[str, torch.nn.Module], opt: OptimArgs) -> torch.optim.Optimizer:
    trainable = [p for p in policy.parameters() if p.requires_grad]
    groups = [{"params": trainable, "lr": opt.learning_rate, "weight_decay": opt.weight_decay, "name": "policy"}]
    for name, head in heads.items():
        lr = opt.logz_learning_rate if name == "log_z" else opt.head_learning_rate
        groups.append({"params": list(head.parameters()), "lr": lr, "weight_decay": 0.0, "name": name})
    return torch.optim.AdamW(groups)


def build_scheduler(optimizer: torch.optim.Optimizer, opt: OptimArgs) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then constant, linear or cosine decay to 0 at max_steps."""

    def factor(step: int) -> float:
        if opt.warmup_steps and step < opt.warmup_steps:
            return (step + 1) / opt.warmup_steps
        if opt.lr_scheduler == "constant":
            return 1.0
        progress = min(1.0, (step - opt.warmup_steps) / max(1, opt.max_steps - opt.warmup_steps))
        return 1.0 - progress if opt.lr_scheduler == "linear" else 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
