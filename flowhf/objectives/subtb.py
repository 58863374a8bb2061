"""Sub-Trajectory Balance, SubTB(lambda) (Madan et al. 2023, "Learning GFlowNets from
partial episodes for improved convergence and stability").

For every pair of states i < j <= L on a trajectory

    delta(i, j) = log F(s_i) + sum_{t=i+1..j} log pi(y_t | s_{t-1}) - log F(s_j),
    log F(s_L) = log R(y | x)

and the loss of one trajectory is the lambda^(j-i)-weighted mean of penalty(delta(i, j)):

    L(y) = sum_{i<j} lambda^(j-i) penalty(delta(i, j)) / sum_{i<j} lambda^(j-i).

The state flow is either a plain head (``log F(s) = head(s)``, DB-style) or, with
``prefix_log_reward`` given, the forward-looking parametrisation of Pan et al.
(``log F(s) = log F~(s) + log R(s)``), which is the form used for LMs by Hu et al. 2024.

``weighting="tb"`` keeps only the pair (0, L): with log F(s_0) = log Z this is exactly
Trajectory Balance (a test checks the equality). Memory is O(B T^2): fine for T <= 512.
"""

from __future__ import annotations

from flowhf._torch import torch
from flowhf.objectives._shapes import accumulation_dtype, lengths_from_mask, terminal_one_hot
from flowhf.objectives.regression import Penalty, squared
from flowhf.objectives.spec import LossOutput, ObjectiveInputs, ObjectiveSpec


def subtb_state_log_flow(
    log_flow: torch.Tensor,
    mask: torch.Tensor,
    log_reward: torch.Tensor,
    prefix_log_reward: torch.Tensor | None = None,
) -> torch.Tensor:
    """log F(s_t) for t = 0..T with the terminal state pinned to log R(y|x). [B, T+1]"""
    dtype = accumulation_dtype(log_flow, log_reward)
    flow = log_flow.to(dtype)  # [B, T+1]
    if prefix_log_reward is not None:
        flow = flow + prefix_log_reward.to(dtype)  # forward-looking: F = F~ * R(s)
    is_terminal = terminal_one_hot(mask, dtype)  # [B, T+1]
    return flow * (1.0 - is_terminal) + is_terminal * log_reward.to(dtype).unsqueeze(1)


def subtrajectory_residuals(
    log_pf: torch.Tensor,
    mask: torch.Tensor,
    state_log_flow: torch.Tensor,
) -> torch.Tensor:
    """delta(i, j) for all pairs: [B, T+1, T+1] (entry [b, i, j]; meaningful for i < j <= L)."""
    B, T = log_pf.shape
    dtype = accumulation_dtype(log_pf, state_log_flow)
    step = log_pf.to(dtype) * mask.to(dtype)  # [B, T]
    cum = torch.cat(
        [step.new_zeros(B, 1), step.cumsum(dim=1)], dim=1
    )  # [B, T+1], cum[t] = sum_{<=t}
    flow = state_log_flow.to(dtype)  # [B, T+1]
    # delta[i, j] = F_i - cum_i + cum_j - F_j
    left = (flow - cum).unsqueeze(2)  # [B, T+1, 1]  (index i)
    right = (cum - flow).unsqueeze(1)  # [B, 1, T+1]  (index j)
    return left + right  # [B, T+1, T+1]


def subtb_weights(mask: torch.Tensor, lam: float, weighting: str = "geometric") -> torch.Tensor:
    """Normalised pair weights [B, T+1, T+1], zero outside 0 <= i < j <= L."""
    B, T = mask.shape
    lengths = lengths_from_mask(mask)  # [B]
    idx = torch.arange(T + 1, device=mask.device)
    i, j = idx.view(-1, 1), idx.view(1, -1)  # [T+1, 1], [1, T+1]
    valid = (i < j).unsqueeze(0) & (j.unsqueeze(0) <= lengths.view(B, 1, 1))  # [B, T+1, T+1]
    if weighting == "geometric":
        if not lam > 0:
            raise ValueError(f"SubTB lambda must be > 0, got {lam}")
        raw = torch.pow(
            torch.tensor(float(lam), dtype=torch.float64), (j - i).clamp_min(0).double()
        )
        weights = raw.unsqueeze(0).expand(B, -1, -1) * valid  # [B, T+1, T+1]
    elif weighting == "tb":
        weights = ((i == 0).unsqueeze(0) & (j.unsqueeze(0) == lengths.view(B, 1, 1))).double()
    else:
        raise ValueError(f"unknown SubTB weighting {weighting!r}: use 'geometric' or 'tb'")
    return weights / weights.sum(dim=(1, 2), keepdim=True).clamp_min(1e-300)


def subtrajectory_balance(
    log_pf: torch.Tensor,
    mask: torch.Tensor,
    log_flow: torch.Tensor,
    log_reward: torch.Tensor,
    lam: float = 1.0,
    prefix_log_reward: torch.Tensor | None = None,
    weighting: str = "geometric",
    penalty: Penalty = squared,
) -> torch.Tensor:
    """SubTB(lambda) loss per trajectory.

    Args:
        log_pf: [B, T] log pi of the actions taken.
        mask: [B, T] 1 for real actions.
        log_flow: [B, T+1] flow head output at states s_0..s_T (terminal value ignored).
        log_reward: [B] target log R(y|x).
        lam: lambda of the geometric weighting (lambda = 1 weights all pairs equally).
        prefix_log_reward: [B, T+1] if given, use forward-looking flows F = F~ * R(s).
        weighting: "geometric" (Madan et al.) or "tb" (only the full trajectory).
        penalty: elementwise penalty of residuals.

    Returns:
        [B] weighted mean penalty per trajectory.
    """
    B, T = log_pf.shape
    flow = subtb_state_log_flow(log_flow, mask, log_reward, prefix_log_reward)  # [B, T+1]
    residuals = subtrajectory_residuals(log_pf, mask, flow)  # [B, T+1, T+1]
    weights = subtb_weights(mask, lam, weighting).to(residuals.dtype)  # [B, T+1, T+1]
    return (weights * penalty(residuals)).sum(dim=(1, 2))  # [B]


def subtb_loss(settings, x: ObjectiveInputs, penalty: Penalty) -> LossOutput:
    """SubTB(lambda) with forward-looking flows when ``settings.subtb_energies``."""
    prefix = x.prefix_log_reward if settings.subtb_energies else None
    per_traj = subtrajectory_balance(
        x.log_pf,
        x.mask,
        x.log_flow,
        x.log_reward,
        settings.subtb_lambda,
        prefix,
        "geometric",
        penalty,
    )  # [B]
    log_z = subtb_state_log_flow(x.log_flow, x.mask, x.log_reward, prefix)[:, 0]  # [B]
    return LossOutput(per_traj.mean(), per_traj.detach(), log_z.detach())


SPEC = ObjectiveSpec(
    "subtb",
    subtb_loss,
    flow_head=True,
    prefix_rewards=lambda settings: settings.subtb_energies,
    implied_log_z="flow",
    help="Sub-Trajectory Balance (lambda)",
)
