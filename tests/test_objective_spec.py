"""An objective is one spec: a new one trains through the trainer and the exact-target
harness without touching either, and every fact about an objective is read from its spec."""

import math

import pytest

from flowhf.config.training import FlowHFConfig
from flowhf.experiments.enumerable.targets import builtin_target
from flowhf.experiments.enumerable.train import ToyConfig, run_toy
from flowhf.objectives import (
    OBJECTIVES,
    ObjectiveSpec,
    get_objective,
    huber,
    register_objective,
    unregister_objective,
)
from flowhf.objectives.db import db_loss
from flowhf.training.trainer import FlowHFTrainer
from tests.test_trainer import tiny_config


@pytest.fixture
def db_half_huber():
    """DB with a Huber(0.5) penalty whatever the config says: the whole new objective."""
    spec = register_objective(
        ObjectiveSpec(
            "db_half_huber",
            lambda settings, x, penalty: db_loss(settings, x, lambda r: huber(r, 0.5)),
            flow_head=True,
            implied_log_z="flow",
        )
    )
    yield spec
    unregister_objective(spec.name)


def test_registered_toy_objective_trains_a_step(tmp_path, db_half_huber):
    trainer = FlowHFTrainer(args=tiny_config(tmp_path, "objective.objective=db_half_huber"))
    metrics = trainer.training_step()
    assert math.isfinite(metrics["train/loss"]) and metrics["train/skipped"] == 0.0
    assert list(trainer.heads) == ["flow_head"]
    toy = run_toy(
        builtin_target("quick", n_prompts=1),
        ToyConfig(objective="db_half_huber", steps=3, samples_per_prompt=8, eval_every_seconds=1e9),
    )
    assert math.isfinite(toy.tv) and not toy.diverged


def test_spec_drives_config_checks():
    assert set(OBJECTIVES) >= {"tb", "fl", "db", "subtb", "pg"}
    with pytest.raises(ValueError, match="use tb, fl, db, subtb, pg"):
        FlowHFConfig.from_dict({"objective": {"objective": "dpo"}})
    with pytest.raises(ValueError, match="samples_per_prompt >= 2"):
        FlowHFConfig.from_dict(
            {"objective": {"objective": "pg"}, "sampling": {"samples_per_prompt": 1}}
        )
    one = FlowHFConfig.from_dict(
        {"objective": {"objective": "tb", "logz": "scalar"}, "sampling": {"samples_per_prompt": 1}}
    )
    assert get_objective("tb").heads(one.objective) == ("log_z",)
    subtb = FlowHFConfig().objective
    assert get_objective("subtb").needs_prefix_rewards(subtb)
    subtb.subtb_energies = False
    assert not get_objective("subtb").needs_prefix_rewards(subtb)
