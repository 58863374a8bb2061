"""One place that turns per-trajectory quantities into the training loss of any objective.

Both the LM trainer and the exact-target benchmark call `objective_loss`, so the benchmark
proves the exact code path the trainer runs. What each objective needs and how its loss is
computed is its `ObjectiveSpec` (`flowhf.objectives.spec`), beside its equations.
"""

from __future__ import annotations

from flowhf.config.training import ObjectiveArgs
from flowhf.objectives import LossOutput, ObjectiveInputs, get_objective, get_penalty

# The objective settings are the config's objective group; the old name stays importable.
ObjectiveSettings = ObjectiveArgs

__all__ = ["LossOutput", "ObjectiveInputs", "ObjectiveSettings", "objective_loss"]


def objective_loss(settings: ObjectiveArgs, x: ObjectiveInputs) -> LossOutput:
    """Loss of `settings.objective` on a batch; see each objective's module for the maths."""
    spec = get_objective(settings.objective)
    spec.check_inputs(settings, x)
    return spec.loss(settings, x, get_penalty(settings.penalty, settings.huber_delta))
