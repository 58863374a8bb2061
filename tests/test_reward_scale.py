"""The reward's scale is one config fact (target.reward_floor, target.reward_scale), never a
rewrite of beta, and a bad beta schedule is a config error raised before any model loads."""

import pytest

from flowhf.config.training import FlowHFConfig
from flowhf.experiments.reproduce.stages import flowhf_overrides


def test_reward_scale_is_config_and_schedule_errors_come_first():
    with pytest.raises(ValueError, match="needs `end`"):
        FlowHFConfig.from_dict({"target": {"beta_schedule": "linear"}})  # no model involved
    target = FlowHFConfig.from_dict(
        {
            "target": {
                "beta": 8.0,
                "beta_end": 4.0,
                "beta_schedule": "linear",
                "beta_steps": 10,
                "reward_scale": 2.0,
            }
        }
    ).target
    schedule = target.beta_per_reward()
    assert (schedule(0), schedule(10)) == (
        4.0,
        2.0,
    ) and target.beta == 8.0  # the config is never rewritten
    with pytest.raises(ValueError, match="reward_scale"):
        FlowHFConfig.from_dict({"target": {"reward_scale": 0}})


def test_reproduce_records_the_reward_scale_instead_of_rewriting_beta(tmp_path):
    from flowhf.config.preset import get_preset
    from flowhf.experiments import CONFIGS
    from flowhf.experiments.reproduce.stages import Context

    ctx = Context(
        get_preset("smoke"),
        tmp_path,
        results={
            "reward_model": {"reward": "sentiment", "score_std": 3.0},
            "sft": {"model_dir": str(tmp_path / "sft")},
        },
    )
    cfg = FlowHFConfig.from_yaml(CONFIGS / "recommended.yaml", flowhf_overrides(ctx, "recommended"))
    assert cfg.target.reward_scale == 3.0 and cfg.target.beta == 8.0
    assert cfg.target.beta_per_reward()(0) == pytest.approx(8.0 / 3.0)
