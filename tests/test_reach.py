"""Time-to-reach a reference run's final training reward, on hand-written metrics files."""

import json

import pytest

from flowhf.experiments.analysis.reach import (
    format_reach_markdown,
    reach_table,
    time_to_reach,
    trailing_means,
)


def _write(run_dir, rows):
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return run_dir


def test_trailing_means():
    assert trailing_means([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]


def test_reach_uses_policy_reward_and_trailing_mean(tmp_path):
    ppo = _write(
        tmp_path / "ppo",
        [
            {"train/reward_mean": r, "train/elapsed_seconds": 10.0 * i}
            for i, r in enumerate([0.0, 1.0, 2.0, 2.0], start=1)
        ],
    )
    # replay-inflated reward_mean must be ignored in favour of reward_mean_policy
    fast = _write(
        tmp_path / "fast",
        [
            {
                "train/reward_mean": 9.0,
                "train/reward_mean_policy": r,
                "train/elapsed_seconds": 5.0 * i,
            }
            for i, r in enumerate([1.0, 2.0, 3.0], start=1)
        ],
    )
    slow = _write(
        tmp_path / "slow",
        [
            {"train/reward_mean": r, "train/elapsed_seconds": 7.0 * i}
            for i, r in enumerate([0.0, 0.5, 1.0], start=1)
        ],
    )
    _write(
        tmp_path / "sft", [{"train/loss": 1.0, "train/elapsed_seconds": 1.0}]
    )  # no reward: left out
    table = reach_table({"ppo": ppo, "fast": fast, "slow": slow, "sft": tmp_path / "sft"}, window=2)
    assert table["target"] == pytest.approx(2.0)  # mean of the last two PPO steps
    assert table["runs"]["fast"] == {
        "seconds": 15.0,
        "reached": True,
        "final": 2.5,
        "steps": 3,
    }  # trailing means 1, 1.5, 2.5
    assert table["runs"]["slow"]["reached"] is False and table["runs"]["slow"]["seconds"] is None
    assert "sft" not in table["runs"]
    text = format_reach_markdown(table)
    assert (
        "| slow | no | not reached | 0.750 | no |" in text
        and "| fast | yes | 15 | 2.500 | yes |" in text
    )


def test_missing_metrics_names_the_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="no metrics.jsonl"):
        time_to_reach(tmp_path, 1.0)
