"""ReplayBuffer: de-duplication, eviction, priority sampling statistics, JSON state round trip."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest

from flowhf.sampling.replay import ReplayBuffer, ReplayItem

EOS = 2


def filled(prioritized: bool = True, temperature: float = 1.0, seed: int = 0) -> ReplayBuffer:
    """Prompt 'p' holds three sequences with rewards 0, 1, 2 (ids 10, 11, 12)."""
    buf = ReplayBuffer(
        capacity_per_prompt=8, prioritized=prioritized, priority_temperature=temperature, seed=seed
    )
    for reward in (0, 1, 2):
        buf.add("p", [10 + reward, EOS], True, float(reward), 3.0 * reward)
    return buf


def first_token_freqs(buf: ReplayBuffer, draws: int) -> dict[int, float]:
    counts = Counter(buf.sample(["p"], 1)[0][0].token_ids[0] for _ in range(draws))
    return {tok: counts[tok] / draws for tok in (10, 11, 12)}


def softmax(xs: list[float]) -> list[float]:
    exps = [math.exp(x - max(xs)) for x in xs]
    return [e / sum(exps) for e in exps]


def test_dedup_updates_reward_and_keeps_one_copy():
    buf = ReplayBuffer(capacity_per_prompt=4)
    assert buf.add("p", [5, 6, EOS], True, 1.0, -3.0)
    assert buf.add("p", (5, 6, EOS), True, 4.0, 7.5)  # same tuple, tuple input
    assert buf.add("q", [5, 6, EOS], True, 0.5, 0.0)  # same tokens, other prompt: separate
    assert len(buf) == 2 and buf.size("p") == 1 and buf.size("q") == 1 and buf.size("unseen") == 0
    assert buf.items("p") == [ReplayItem((5, 6, EOS), True, 4.0, 7.5)]
    assert buf.prompts() == ["p", "q"]


def test_eviction_drops_lowest_reward_per_prompt():
    buf = ReplayBuffer(capacity_per_prompt=2)
    buf.add("p", [1], False, 1.0, 0.0)
    buf.add("p", [2], False, 3.0, 0.0)
    assert buf.add("p", [3], False, 2.0, 0.0)  # evicts reward 1
    assert sorted(i.reward for i in buf.items("p")) == [2.0, 3.0]
    assert not buf.add("p", [4], False, 0.5, 0.0)  # new item is the worst: not kept
    assert sorted(i.token_ids for i in buf.items("p")) == [(2,), (3,)]
    buf.add("q", [9], False, -5.0, 0.0)  # other prompts are unaffected by p's capacity
    assert buf.size("q") == 1 and len(buf) == 3


def test_eviction_tie_removes_oldest():
    buf = ReplayBuffer(capacity_per_prompt=2)
    buf.add("p", [1], False, 1.0, 0.0)
    buf.add("p", [2], False, 1.0, 0.0)
    buf.add("p", [3], False, 1.0, 0.0)
    assert [i.token_ids for i in buf.items("p")] == [(2,), (3,)]


def test_prioritized_frequencies_match_softmax_of_rewards():
    freqs = first_token_freqs(filled(seed=1), draws=4000)
    expected = softmax([0.0, 1.0, 2.0])  # 0.090, 0.245, 0.665
    for tok, p in zip((10, 11, 12), expected):
        assert abs(freqs[tok] - p) < 0.03, (tok, freqs[tok], p)
    assert freqs[12] > 2 * freqs[11] > 2 * freqs[10]


def test_priority_temperature_sharpens():
    freqs = first_token_freqs(filled(temperature=0.5, seed=2), draws=4000)
    expected = softmax([0.0, 2.0, 4.0])  # 0.016, 0.117, 0.867
    for tok, p in zip((10, 11, 12), expected):
        assert abs(freqs[tok] - p) < 0.03, (tok, freqs[tok], p)


def test_uniform_mode_is_roughly_uniform():
    freqs = first_token_freqs(filled(prioritized=False, seed=3), draws=3000)
    for tok in (10, 11, 12):
        assert abs(freqs[tok] - 1 / 3) < 0.035, freqs


def test_without_replacement_pair_probabilities():
    """Two sequential draws without replacement: P(worst item in the pair) computed by hand."""
    buf = filled(seed=4)
    p0, p1, p2 = softmax([0.0, 1.0, 2.0])
    # The pair {1, 2} arises as (2 then 1) or (1 then 2).
    p_pair_12 = p2 * p1 / (1 - p2) + p1 * p2 / (1 - p1)  # = 0.7017
    draws = 4000
    hits = 0
    for _ in range(draws):
        pair = buf.sample(["p"], 2)[0]
        assert len({i.token_ids for i in pair}) == 2  # never a duplicate when enough items
        hits += any(i.token_ids[0] == 10 for i in pair)
    assert abs(hits / draws - (1 - p_pair_12)) < 0.03


def test_sample_counts_and_replacement_only_when_short():
    buf = filled()
    buf.add("q", [7, EOS], True, 0.0, 0.0)
    out = buf.sample(["p", "q", "p"], [3, 4, 0])
    assert [len(x) for x in out] == [3, 4, 0]
    assert sorted(i.token_ids[0] for i in out[0]) == [10, 11, 12]  # all distinct
    assert all(i.token_ids == (7, EOS) for i in out[1])  # only one item: drawn with replacement
    assert [len(x) for x in buf.sample(["p", "q"], 2)] == [2, 2]


def test_sample_errors_are_clear():
    buf = filled()
    with pytest.raises(KeyError, match="no trajectories stored"):
        buf.sample(["missing"], 1)
    with pytest.raises(ValueError, match="2 prompts but 1 counts"):
        buf.sample(["p", "p"], [1])
    with pytest.raises(ValueError, match="reward must be finite"):
        buf.add("p", [1], False, float("nan"), 0.0)
    with pytest.raises(ValueError, match="log_reward must be finite"):
        buf.add("p", [1], False, 0.0, float("-inf"))
    with pytest.raises(ValueError, match="empty completion"):
        buf.add("p", [], False, 0.0, 0.0)
    with pytest.raises(ValueError, match="capacity_per_prompt"):
        ReplayBuffer(capacity_per_prompt=0)
    with pytest.raises(ValueError, match="priority_temperature"):
        ReplayBuffer(capacity_per_prompt=1, priority_temperature=0.0)


def test_add_batch_checks_lengths():
    buf = ReplayBuffer(capacity_per_prompt=4)
    kept = buf.add_batch(
        ["a", "a", "b"],
        [[1, EOS], [1, EOS], [3]],
        [True, True, False],
        [0.1, 0.9, 0.5],
        [1.0, 2.0, 3.0],
    )
    assert kept == 3 and len(buf) == 2 and buf.items("a")[0].reward == 0.9
    with pytest.raises(ValueError, match="equal lengths"):
        buf.add_batch(["a"], [[1], [2]], [True], [0.0], [0.0])


def test_state_dict_is_strict_json_and_round_trips_draws():
    a = ReplayBuffer(capacity_per_prompt=3, priority_temperature=0.7, seed=11)
    for i in range(5):
        a.add("prompt one\nwith newline", [i, i + 1, EOS], True, 0.1 * i, -1.5 * i)
        a.add("two", [100 + i], False, -0.3 * i, 0.25 * i)
    a.sample(["two"], 2)  # advance the RNG so the restored state is not the seed state
    text = json.dumps(a.state_dict(), allow_nan=False)
    b = ReplayBuffer(capacity_per_prompt=3, priority_temperature=0.7, seed=999)
    b.load_state_dict(json.loads(text))
    assert len(b) == len(a) == 6
    for prompt in a.prompts():
        assert b.items(prompt) == a.items(prompt)
    for _ in range(20):
        assert a.sample(["two", "prompt one\nwith newline"], [2, 5]) == b.sample(
            ["two", "prompt one\nwith newline"], [2, 5]
        )
    assert json.dumps(a.state_dict()) == json.dumps(b.state_dict())


def test_load_state_dict_validates_and_applies_smaller_capacity():
    a = filled()
    small = ReplayBuffer(capacity_per_prompt=2)
    with pytest.warns(UserWarning, match="capacity_per_prompt"):
        small.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert sorted(i.reward for i in small.items("p")) == [1.0, 2.0]
    with pytest.raises(ValueError, match="version"):
        small.load_state_dict({"version": 99})
    bad = a.state_dict()
    bad["items"]["p"][0].pop("reward")
    with pytest.raises(ValueError, match="malformed item 0"):
        ReplayBuffer(capacity_per_prompt=8).load_state_dict(bad)


def test_with_replacement_draws_follow_the_priorities_when_few_items_hold_them():
    def filled(**kwargs):
        buffer = ReplayBuffer(64, prioritized=True, priority_temperature=1.0, seed=3, **kwargs)
        buffer.add("p", [1, EOS], True, reward=1.0, log_reward=1.0)
        buffer.add("p", [2, EOS], True, reward=1.0, log_reward=1.0)
        for t in range(10, 40):  # 30 low-reward items, each exp(-9) as likely as a good one
            buffer.add("p", [t, EOS], True, reward=-8.0, log_reward=-8.0)
        return buffer

    spread = filled().sample(["p"], 12)[0]
    assert (
        sum(item.reward < 0 for item in spread) == 10
    )  # both good items once, then low ones fill the slots
    iid = filled(with_replacement=True).sample(["p"], 12)[0]
    assert all(
        item.reward == 1.0 for item in iid
    )  # P(any low draw) ~ 12 * 30 e^-9 / 2 ~ 2%; seeded
