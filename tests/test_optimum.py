"""At the analytic optimum every residual is zero.

A tabular policy over a tiny token tree (2 symbols + EOS, at most 3 actions, forced
termination after 3 symbols) is built from exact flows F(s) = sum of R over the terminal
states below s. With pi(a|s) = F(child)/F(s), log Z = log F(root) and exact (FL) flows,
the TB, DB, FL and SubTB residuals all vanish, for alpha-style prefix energies too.
"""

import itertools
import math

import torch

from flowhf.objectives import (
    detailed_balance,
    forward_looking,
    subtrajectory_balance,
    trajectory_balance,
)

V, MAX_LEN = 2, 3
EOS = V


def log_reward(content):  # any positive reward; prefix energies reuse it on prefixes
    return 0.7 * content.count(0) - 0.4 * len(content) + (1.3 if tuple(content) == (1, 0) else 0.0)


def flow(content):
    """Exact state flow of the non-terminal state whose text is `content`."""
    if len(content) == MAX_LEN:  # forced terminal
        return math.exp(log_reward(content))
    return math.exp(log_reward(content)) + sum(flow(content + [a]) for a in range(V))


def trajectories():
    """All completions as (actions, content), with EOS unless forced."""
    for n in range(MAX_LEN + 1):
        for content in itertools.product(range(V), repeat=n):
            content = list(content)
            yield (content + [EOS] if n < MAX_LEN else content), content


def batch():
    rows = list(trajectories())
    T = MAX_LEN + 1
    B = len(rows)
    log_pf = torch.zeros(B, T, dtype=torch.float64)
    mask = torch.zeros(B, T, dtype=torch.float64)
    log_flow_fl = torch.zeros(B, T + 1, dtype=torch.float64)
    log_flow_db = torch.zeros(B, T + 1, dtype=torch.float64)
    prefix = torch.zeros(B, T + 1, dtype=torch.float64)
    log_r = torch.zeros(B, dtype=torch.float64)
    for b, (actions, content) in enumerate(rows):
        L = len(actions)
        for t in range(L + 1):
            state = content[:t]
            prefix[b, t] = log_reward(state)
            if t < L:
                F = flow(state)
                log_flow_db[b, t] = math.log(F)
                log_flow_fl[b, t] = math.log(F) - log_reward(state)  # F = F~ * R(s)
                a = actions[t]
                child = math.exp(log_reward(state)) if a == EOS else flow(state + [a])
                log_pf[b, t] = math.log(child / F)
                mask[b, t] = 1.0
        prefix[b, L:] = log_reward(content)
        log_r[b] = log_reward(content)
    return log_pf, mask, log_r, log_flow_db, log_flow_fl, prefix


def test_policy_is_normalised_and_matches_target():
    log_pf, mask, log_r, *_ = batch()
    p = (log_pf * mask).sum(1).exp()
    assert abs(p.sum().item() - 1.0) < 1e-12
    target = log_r.exp() / log_r.exp().sum()
    assert torch.allclose(p, target, atol=1e-12)


def test_every_residual_is_zero_at_the_optimum():
    log_pf, mask, log_r, log_flow_db, log_flow_fl, prefix = batch()
    log_z = torch.full_like(log_r, math.log(flow([])))
    assert trajectory_balance(log_pf, mask, log_r, log_z).abs().max() < 1e-6
    assert detailed_balance(log_pf, mask, log_flow_db, log_r).abs().max() < 1e-6
    assert forward_looking(log_pf, mask, log_flow_fl, prefix).abs().max() < 1e-6
    assert subtrajectory_balance(log_pf, mask, log_flow_db, log_r, 0.9).abs().max() < 1e-6
    assert (
        subtrajectory_balance(log_pf, mask, log_flow_fl, log_r, 0.9, prefix_log_reward=prefix)
        .abs()
        .max()
        < 1e-6
    )


def test_residuals_are_not_zero_away_from_the_optimum():
    log_pf, mask, log_r, log_flow_db, log_flow_fl, prefix = batch()
    log_pf = log_pf + 0.1 * mask  # a perturbed policy
    log_z = torch.full_like(log_r, math.log(flow([])))
    assert trajectory_balance(log_pf, mask, log_r, log_z).abs().max() > 1e-2
    assert forward_looking(log_pf, mask, log_flow_fl, prefix).abs().max() > 1e-2
