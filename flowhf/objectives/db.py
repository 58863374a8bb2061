"""Detailed Balance (Bengio et al. 2023, "GFlowNet foundations") on the token tree.

    delta(s -> s') = log F(s) + log pi(s' | s) - log F(s'),   log F(s_L) = log R(y|x)

with log F a learned head on the policy's hidden states and P_B = 1. This is
Forward-Looking (`fl.py`) with every intermediate energy set to zero, which is how it is
computed here; a test checks it against an independent implementation.
"""

from __future__ import annotations

from flowhf._torch import torch
from flowhf.objectives._shapes import accumulation_dtype, terminal_one_hot
from flowhf.objectives.fl import forward_looking
from flowhf.objectives.regression import Penalty
from flowhf.objectives.spec import LossOutput, ObjectiveInputs, ObjectiveSpec


def detailed_balance(
    log_pf: torch.Tensor,
    mask: torch.Tensor,
    log_flow: torch.Tensor,
    log_reward: torch.Tensor,
) -> torch.Tensor:
    """DB residual of every transition.

    Args:
        log_pf: [B, T] log pi of the actions taken.
        mask: [B, T] 1 for real actions.
        log_flow: [B, T+1] log F of states s_0..s_T (value at the terminal is ignored).
        log_reward: [B] target log R(y|x), the terminal state's flow.

    Returns:
        [B, T] residuals, 0 where padded.
    """
    B, T = log_pf.shape
    dtype = accumulation_dtype(log_pf, log_flow, log_reward)
    terminal_only = terminal_one_hot(mask, dtype) * log_reward.to(dtype).unsqueeze(1)  # [B, T+1]
    return forward_looking(log_pf, mask, log_flow, terminal_only)


def db_loss(settings, x: ObjectiveInputs, penalty: Penalty) -> LossOutput:
    """Penalties summed over each trajectory's transitions, batch mean; log Z = log F(s_0)."""
    residual = detailed_balance(x.log_pf, x.mask, x.log_flow, x.log_reward)  # [B, T]
    log_z = x.log_flow[:, 0].detach().float()  # [B]
    return LossOutput(penalty(residual).sum(dim=1).mean(), residual.sum(dim=1).detach(), log_z)


SPEC = ObjectiveSpec("db", db_loss, flow_head=True, implied_log_z="flow", help="Detailed Balance")
