"""Forward-Looking GFlowNets (Pan et al. 2023, "Better training of GFlowNets with local
credit and incomplete trajectories"), in the form the FlowHF report uses for LMs.

Every prefix s has an energy E(s) = -log R(s) (the target evaluated on the prefix as if it
ended there) and the flow is parametrised as F(s) = F~(s) * exp(-E(s)), with log F~ a
linear head on the policy's hidden state of s. Detailed balance between s -> s' then reads

    delta(s -> s') = log F~(s) + log pi(s' | s) - log F~(s') + E(s') - E(s)

with log F~(terminal) = 0, so F(terminal) = R(y). Summing delta over a trajectory
telescopes to the TB residual with log Z = log F~(s_0) - E(s_0).

Departure/clarification: the report does not say how forced termination enters. Here the
terminal state is s_L whatever the last action was (EOS or the last token before
``max_new_tokens``); its energy is -log R(y|x). For EOS-terminated trajectories the
transition into s_L is the EOS action; its reward barely changes (the text is the same)
so the residual reduces to log F~(s_{L-1}) + log pi(EOS | s_{L-1}) (+ the alpha * log
p_ref(EOS) energy change). Forced trajectories have no EOS action.
"""

from __future__ import annotations

from flowhf._torch import torch
from flowhf.objectives._shapes import accumulation_dtype, terminal_one_hot
from flowhf.objectives.regression import Penalty
from flowhf.objectives.spec import LossOutput, ObjectiveInputs, ObjectiveSpec


def forward_looking(
    log_pf: torch.Tensor,
    mask: torch.Tensor,
    log_flow: torch.Tensor,
    prefix_log_reward: torch.Tensor,
) -> torch.Tensor:
    """FL residual of every transition s_{t-1} -> s_t.

    Args:
        log_pf: [B, T] log pi of the action taken at each step.
        mask: [B, T] 1 for real actions.
        log_flow: [B, T+1] log F~ of states s_0..s_T from the flow head (its value at each
            row's terminal state is ignored and replaced by 0).
        prefix_log_reward: [B, T+1] log R of every state; at index L the full log R(y|x).

    Returns:
        [B, T] residuals, 0 where padded. The report's loss sums their squares.
    """
    B, T = log_pf.shape
    dtype = accumulation_dtype(log_pf, log_flow, prefix_log_reward)
    is_terminal = terminal_one_hot(mask, dtype)  # [B, T+1]
    flow = log_flow.to(dtype) * (1.0 - is_terminal)  # [B, T+1], log F~(s_L) = 0
    energy = -prefix_log_reward.to(dtype)  # [B, T+1]
    residual = (
        flow[:, :-1] + log_pf.to(dtype) - flow[:, 1:] + energy[:, 1:] - energy[:, :-1]
    )  # [B, T]
    return residual * mask.to(dtype)  # [B, T]


def implied_log_z(log_flow: torch.Tensor, prefix_log_reward: torch.Tensor) -> torch.Tensor:
    """log Z(x) = log F(s_0) = log F~(s_0) + log R(s_0) under the FL parametrisation. [B]"""
    return log_flow[:, 0].float() + prefix_log_reward[:, 0].float()


def fl_loss(settings, x: ObjectiveInputs, penalty: Penalty) -> LossOutput:
    """Penalties summed over each trajectory's transitions (the report's form), batch mean."""
    residual = forward_looking(x.log_pf, x.mask, x.log_flow, x.prefix_log_reward)  # [B, T]
    log_z = implied_log_z(x.log_flow, x.prefix_log_reward)  # [B]
    return LossOutput(
        penalty(residual).sum(dim=1).mean(), residual.sum(dim=1).detach(), log_z.detach()
    )


SPEC = ObjectiveSpec(
    "fl",
    fl_loss,
    flow_head=True,
    prefix_rewards=lambda settings: True,
    implied_log_z="flow",
    help="Forward-Looking",
)
