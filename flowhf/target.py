"""The GFlowNet target: the unnormalised distribution the policy learns to sample from.

    log R(y | x) = beta * r(x, y) + alpha * log p_ref(y | x)

- alpha = 0, beta = 100: the FlowHF report's target (reward x 100, no LM prior). With a
  scalar log Z this diverges on long sequences (see `flowhf/objectives/tb.py`).
- alpha = 1: the KL-regularised target, p*(y|x) ∝ p_ref(y|x) exp(beta r(x, y)), which is
  the optimum of KL-penalised RLHF with KL coefficient 1/beta (relative TB, TBA, the
  red-teaming GFlowNet of Lee et al. 2024).

Prefix energies (FL, SubTB with FL flows) need log R of every prefix s_t = y_<=t:
``beta * r(x, s_t) + alpha * sum_{k<=t} log p_ref(y_k | x, y_<k)``; the reference part is
free, already computed for the full target.

beta may follow a schedule (constant, linear, cosine), as in Hu et al. 2024 (reward
temperature annealing) and Lee et al. 2024.

The reward's scale is decided in one place, the run's config (`TargetArgs`): r is floored
(`floor_reward`, ``target.reward_floor``) and beta is read per ``target.reward_scale`` units
of reward (`TargetArgs.beta_per_reward`). A reward spec's own `RewardTransform` acts inside
the reward, before either.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from flowhf._torch import torch
from flowhf.objectives._shapes import accumulation_dtype


def _reference_cumsum(
    ref_log_pf: torch.Tensor | None, mask: torch.Tensor | None, dtype: torch.dtype
) -> torch.Tensor:
    """[B, T+1] log p_ref of every prefix s_0..s_T (entry 0 is 0)."""
    if ref_log_pf is None or mask is None:
        raise ValueError("alpha != 0 needs the reference log-probs and the action mask")
    step = ref_log_pf.to(dtype) * mask.to(dtype)  # [B, T]
    return torch.cat([step.new_zeros(step.shape[0], 1), step.cumsum(dim=1)], dim=1)


def target_log_reward(
    reward: torch.Tensor,
    beta: float,
    alpha: float = 0.0,
    ref_log_pf: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """log R(y|x) = beta * r + alpha * log p_ref(y|x) of full completions [B], or of every state
    s_0..s_T [B, T+1] (beta * r(x, s_t) + alpha * cumulative log p_ref) when ``reward`` is [B, T+1].

    Args:
        reward: [B] r(x, y); or [B, T+1] r of each prefix (entry t: first t actions; entries
            past a row's length repeat its final value, see `flowhf.rewards`).
        beta, alpha: target weights.
        ref_log_pf: [B, T] per-token reference log-probs (needed when alpha != 0).
        mask: [B, T] 1 for real actions.
    """
    dtype = accumulation_dtype(reward)
    out = beta * reward.to(dtype)  # [B] or [B, T+1]
    if alpha != 0.0:
        reference = _reference_cumsum(ref_log_pf, mask, dtype)  # [B, T+1]
        out = out + alpha * (reference if reward.dim() == 2 else reference[:, -1])
    return out


# Prefix energies read the same target at every state: one implementation, the name says which.
prefix_target_log_reward = target_log_reward


def floor_reward(reward: torch.Tensor, floor: float | None) -> torch.Tensor:
    """max(r, floor) elementwise (a log-reward floor for rare, very negative rewards); r if None.
    The one floor: ``target.reward_floor`` and a reward spec's `RewardTransform` both use it."""
    return reward if floor is None else reward.clamp_min(floor)


def scale_reward(reward: torch.Tensor, scale: float, shift: float = 0.0) -> torch.Tensor:
    """r * scale + shift elementwise: a reward in other units (a `RewardTransform`'s affine
    normalisation). The target's own unit, ``target.reward_scale``, divides beta instead
    (`TargetArgs.beta_per_reward`), which is the same as scaling r by 1 / reward_scale."""
    return reward * scale + shift


@dataclass
class BetaSchedule:
    """beta as a function of the training step: constant, linear or cosine from start to end."""

    start: float = field(
        default=1.0, metadata={"help": "beta at step 0 (the reward's inverse temperature)."}
    )
    end: float | None = field(
        default=None, metadata={"help": "beta at `steps` and after; None = constant."}
    )
    kind: str = field(default="constant", metadata={"help": "constant | linear | cosine."})
    steps: int = field(
        default=0, metadata={"help": "steps over which beta moves from start to end."}
    )

    def __post_init__(self) -> None:
        if self.kind not in ("constant", "linear", "cosine"):
            raise ValueError(f"beta schedule kind {self.kind!r}: use constant, linear or cosine")
        if self.kind != "constant" and (self.end is None or self.steps <= 0):
            raise ValueError(f"a {self.kind} beta schedule needs `end` and `steps` > 0")

    def __call__(self, step: int) -> float:
        if self.kind == "constant" or self.end is None:
            return float(self.start)
        progress = min(max(step / self.steps, 0.0), 1.0)
        if self.kind == "linear":
            weight = progress
        else:
            weight = 0.5 * (1.0 - math.cos(math.pi * progress))
        return float(self.start + (self.end - self.start) * weight)
