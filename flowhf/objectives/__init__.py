"""GFlowNet objectives as small tensor functions (one file each) and the REINFORCE contrast."""

from flowhf.objectives.db import detailed_balance
from flowhf.objectives.fl import forward_looking, implied_log_z
from flowhf.objectives.pg import leave_one_out_advantage, reinforce_loo
from flowhf.objectives.registry import (
    OBJECTIVES,
    get_objective,
    logz_modes,
    register_objective,
    unregister_objective,
)
from flowhf.objectives.regression import get_penalty, huber, masked_mean, squared
from flowhf.objectives.spec import LogZMode, LossOutput, ObjectiveInputs, ObjectiveSpec
from flowhf.objectives.subtb import subtb_state_log_flow, subtrajectory_balance
from flowhf.objectives.tb import batch_log_z, importance_log_z, length_log_z, trajectory_balance

__all__ = [
    "OBJECTIVES",
    "LogZMode",
    "LossOutput",
    "ObjectiveInputs",
    "ObjectiveSpec",
    "batch_log_z",
    "length_log_z",
    "importance_log_z",
    "detailed_balance",
    "forward_looking",
    "get_objective",
    "get_penalty",
    "huber",
    "implied_log_z",
    "leave_one_out_advantage",
    "logz_modes",
    "masked_mean",
    "register_objective",
    "reinforce_loo",
    "squared",
    "subtb_state_log_flow",
    "subtrajectory_balance",
    "trajectory_balance",
    "unregister_objective",
]
