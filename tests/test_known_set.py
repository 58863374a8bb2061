"""The importance log Z's known part: the replay buffer's completions, summed exactly."""

import math

import pytest
import torch

from flowhf.sampling.replay import ReplayBuffer
from flowhf.training.batch import TrajectoryBatch
from flowhf.training.known_set import known_set


def batch_of(prompts, rows):
    T = max(len(r) for r in rows)
    ids = torch.tensor([r + [0] * (T - len(r)) for r in rows])
    mask = torch.tensor([[1.0] * len(r) + [0.0] * (T - len(r)) for r in rows])
    groups = torch.tensor([sorted(set(prompts)).index(p) for p in prompts])
    return TrajectoryBatch(
        torch.ones(len(rows), 1, dtype=torch.long),
        torch.ones(len(rows), 1, dtype=torch.long),
        ids,
        mask,
        torch.ones(len(rows), dtype=torch.bool),
        groups,
        list(prompts),
        ["policy"] * len(rows),
    )


def test_known_part_is_recomputed_under_todays_target():
    buffer = ReplayBuffer(8)
    buffer.add("a", [5, 2], True, reward=1.0, log_reward=3.0, ref_log_prob=-2.0)
    buffer.add("a", [6, 2], True, reward=0.5, log_reward=1.0, ref_log_prob=-1.0)
    batch = batch_of(["a", "a", "b"], [[5, 2], [7, 2], [5, 2]])
    log_z, member = known_set(buffer, batch, beta=4.0, alpha=1.0)
    expected = math.log(
        math.exp(4.0 * 1.0 - 2.0) + math.exp(4.0 * 0.5 - 1.0)
    )  # beta changed since insertion
    assert log_z[:2].tolist() == pytest.approx([expected] * 2)
    assert log_z[2] == float("-inf")  # prompt b: nothing stored
    assert member.tolist() == [True, False, False]  # [5, 2] is known for a, not for b


def test_items_without_a_reference_log_prob_leave_the_known_set_at_alpha_1():
    buffer = ReplayBuffer(8)
    buffer.add(
        "a", [5, 2], True, reward=1.0, log_reward=3.0
    )  # e.g. restored from an old checkpoint
    batch = batch_of(["a", "a"], [[5, 2], [6, 2]])
    log_z, member = known_set(buffer, batch, beta=2.0, alpha=1.0)
    assert log_z.tolist() == [float("-inf")] * 2 and not member.any()
    log_z, member = known_set(buffer, batch, beta=2.0, alpha=0.0)  # alpha 0 needs only the reward
    assert log_z.tolist() == pytest.approx([2.0, 2.0]) and member.tolist() == [True, False]


def test_replay_state_keeps_the_reference_log_prob():
    buffer = ReplayBuffer(4)
    buffer.add("a", [5, 2], True, reward=1.0, log_reward=3.0, ref_log_prob=-2.5)
    restored = ReplayBuffer(4)
    restored.load_state_dict(buffer.state_dict())
    assert restored.items("a")[0].ref_log_prob == -2.5
