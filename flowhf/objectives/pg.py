"""REINFORCE with a leave-one-out baseline (Williams 1992; Kool et al. 2019, "Buy 4
REINFORCE samples, get a baseline for free!"), optionally with a KL penalty to a reference.

THIS IS A REWARD MAXIMISER, not a GFlowNet objective. It is here, on the same interface, so
benchmarks can show what maximisation does to the distribution (it collapses onto the
highest modes) next to the objectives that sample in proportion to the reward.

Per sample the surrogate loss is

    L_i = -A_i * sum_t log pi(y_t | x, y_<t),
    A_i = r~_i - mean_{j != i, same prompt} r~_j,      r~ = r - kl_coef * (log pi - log p_ref)

with A detached; kl_coef > 0 is the sequence-level KL-penalised RLHF objective.
"""

from __future__ import annotations

from flowhf._torch import torch
from flowhf.objectives._shapes import accumulation_dtype
from flowhf.objectives.regression import Penalty
from flowhf.objectives.spec import LossOutput, ObjectiveInputs, ObjectiveSpec


def leave_one_out_advantage(reward: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """A_i = r_i - mean of the other rewards of the same prompt. [B]; groups need >= 2 rows."""
    _, inverse, counts = torch.unique(group_ids, return_inverse=True, return_counts=True)
    if bool((counts < 2).any()):
        raise ValueError("leave-one-out baseline needs >= 2 samples per prompt in a batch")
    sums = torch.zeros(counts.shape[0], dtype=reward.dtype, device=reward.device).index_add_(
        0, inverse, reward
    )
    n = counts.to(reward.dtype)[inverse]  # [B]
    others_mean = (sums[inverse] - reward) / (n - 1)
    return reward - others_mean  # [B]


def reinforce_loo(
    log_pf: torch.Tensor,
    mask: torch.Tensor,
    reward: torch.Tensor,
    group_ids: torch.Tensor,
    ref_log_pf: torch.Tensor | None = None,
    kl_coef: float = 0.0,
) -> torch.Tensor:
    """Per-sample REINFORCE-LOO surrogate loss [B] (mean it for the batch loss).

    Args:
        log_pf: [B, T] log pi of the actions taken (carries the gradient).
        mask: [B, T] 1 for real actions.
        reward: [B] the quantity to maximise.
        group_ids: [B] prompt id of each row.
        ref_log_pf: [B, T] reference log-probs, needed when kl_coef > 0.
        kl_coef: weight of the sequence-level KL penalty.
    """
    B, T = log_pf.shape
    dtype = accumulation_dtype(log_pf, reward)
    m = mask.to(dtype)
    log_pf_sum = (log_pf.to(dtype) * m).sum(dim=1)  # [B]
    shaped = reward.to(dtype)
    if kl_coef > 0:
        if ref_log_pf is None:
            raise ValueError("kl_coef > 0 needs ref_log_pf")
        shaped = shaped - kl_coef * (log_pf_sum - (ref_log_pf.to(dtype) * m).sum(dim=1))
    advantage = leave_one_out_advantage(shaped.detach(), group_ids)  # [B]
    return -advantage * log_pf_sum  # [B]


def pg_loss(settings, x: ObjectiveInputs, penalty: Penalty) -> LossOutput:
    """Mean REINFORCE-LOO surrogate of the raw reward (log R when none is given); no log Z."""
    reward = x.log_reward if x.reward is None else x.reward
    per_traj = reinforce_loo(
        x.log_pf, x.mask, reward, x.group_ids, x.ref_log_pf, settings.pg_kl_coef
    )  # [B]
    return LossOutput(
        per_traj.mean(), per_traj.detach(), torch.full((x.log_pf.shape[0],), float("nan"))
    )


SPEC = ObjectiveSpec(
    "pg", pg_loss, min_group_size=2, help="REINFORCE-LOO reward maximiser, for comparison"
)
