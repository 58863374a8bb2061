"""Training: the FlowHF trainer (a rollout, a scorer and an update over one policy), the shared
loss assembly, checkpoints, logging."""

from flowhf.config.training import FlowHFConfig
from flowhf.training.logging import MetricsLogger, ProgressBar, plot_histograms
from flowhf.training.loss import ObjectiveInputs, ObjectiveSettings, objective_loss

__all__ = [
    "FlowHFConfig",
    "FlowHFTrainer",
    "MetricsLogger",
    "ObjectiveInputs",
    "ObjectiveSettings",
    "ProgressBar",
    "objective_loss",
    "plot_histograms",
]


def __getattr__(name):  # the trainer imports models/rewards: load it only when asked for
    if name == "FlowHFTrainer":
        from flowhf.training.trainer import FlowHFTrainer

        return FlowHFTrainer
    raise AttributeError(name)
