"""Weighted sum of rewards: r = sum_i w_i * r_i, for full completions and for prefixes.

Each component scores prefixes by its own route (e.g. one-pass for a causal RM, decoded text for
VADER), then the [B, T+1] matrices are summed with the same weights. Every component receives all
columns and takes the ones it needs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch

from flowhf.rewards.base import Reward, check_batch


def weighted_sum(values: Iterable[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    """sum_i weights[i] * values[i], added left to right: the one weighted sum of rewards (here,
    and `flowhf.rewards.functions` for TRL's reward_funcs). ``values`` may be lazy: each is read
    once, in order."""
    total = None
    for value, weight in zip(values, weights):
        part = weight * value
        total = part if total is None else total + part
    return total


def _format_weight(w: float) -> str:
    return f"{w:g}"


class CombinedReward(Reward):
    """sum_i weights[i] * rewards[i]."""

    def __init__(
        self, rewards: Sequence[Reward], weights: Sequence[float] | None = None, **base_kwargs: Any
    ) -> None:
        rewards = list(rewards)
        weights = [1.0] * len(rewards) if weights is None else [float(w) for w in weights]
        if not rewards:
            raise ValueError("a combined reward needs at least one component")
        if len(weights) != len(rewards):
            raise ValueError(f"got {len(rewards)} rewards but {len(weights)} weights")
        bad = [r for r in rewards if not isinstance(r, Reward)]
        if bad:
            raise TypeError(
                f"combined reward components must be Reward objects, got {type(bad[0]).__name__}"
            )
        base_kwargs.setdefault(
            "name",
            " + ".join(
                r.name if w == 1.0 else f"{_format_weight(w)}*{r.name}"
                for r, w in zip(rewards, weights)
            ),
        )
        super().__init__(**base_kwargs)
        self.rewards = rewards
        self.weights = weights

    def set_prefix_stride(self, stride: int) -> None:
        super().set_prefix_stride(stride)
        for reward in getattr(self, "rewards", []):
            reward.set_prefix_stride(stride)

    def components(
        self, prompts: list[str], completions: list[str], **columns: Any
    ) -> dict[str, torch.Tensor]:
        """Unweighted reward of every component, by name (for logging, e.g. train/reward/NAME)."""
        out: dict[str, torch.Tensor] = {}
        for reward in self.rewards:
            key, k = reward.name, 2
            while key in out:  # two components with one name: keep both
                key, k = f"{reward.name}#{k}", k + 1
            out[key] = reward(prompts, completions, **columns)
        return out

    def score(self, prompts: list[str], completions: list[str], **columns: Any) -> torch.Tensor:
        return weighted_sum(
            (r(prompts, completions, **columns) for r in self.rewards), self.weights
        )

    def score_prefixes(
        self, prompts: list[str], completion_ids: list[list[int]], tokenizer: Any, **columns: Any
    ) -> torch.Tensor:
        check_batch(prompts, completion_ids, columns, self.name)
        return weighted_sum(
            (r.score_prefixes(prompts, completion_ids, tokenizer, **columns) for r in self.rewards),
            self.weights,
        )
