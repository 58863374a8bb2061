"""Layer 1: every objective against an independent float64 reference on hand-built tensors."""

import math

import numpy as np
import pytest
import torch

from flowhf.objectives import (
    batch_log_z,
    detailed_balance,
    forward_looking,
    huber,
    importance_log_z,
    leave_one_out_advantage,
    length_log_z,
    reinforce_loo,
    squared,
    subtrajectory_balance,
    trajectory_balance,
)
from flowhf.target import BetaSchedule, prefix_target_log_reward, target_log_reward

# Two trajectories: lengths 3 and 2 (right-padded to T = 3).
LOG_PF = torch.tensor(
    [[-0.5, -1.0, -0.25], [-2.0, -0.1, 7.0]], dtype=torch.float64
)  # 7.0 is padding junk
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]], dtype=torch.float64)
LOG_R = torch.tensor([1.5, -0.3], dtype=torch.float64)
LOG_FLOW = torch.tensor(
    [[0.2, 0.4, -0.1, 9.0], [1.0, 0.5, 9.0, 9.0]], dtype=torch.float64
)  # terminal values ignored
PREFIX_LOG_R = torch.tensor([[0.0, 0.3, 0.9, 1.5], [0.1, -0.2, -0.3, -0.3]], dtype=torch.float64)
ROWS = [(LOG_PF[0, :3].tolist(), 3), (LOG_PF[1, :2].tolist(), 2)]


def test_tb_matches_reference():
    log_z = torch.tensor([0.7, -0.4], dtype=torch.float64)
    got = trajectory_balance(LOG_PF, MASK, LOG_R, log_z)
    expected = [0.7 + (-0.5 - 1.0 - 0.25) - 1.5, -0.4 + (-2.0 - 0.1) - (-0.3)]
    assert got.dtype == torch.float64
    assert got.tolist() == pytest.approx(expected, abs=1e-12)


def test_tb_accumulates_bf16_inputs_in_float32():
    got = trajectory_balance(
        LOG_PF.bfloat16(), MASK.bfloat16(), LOG_R.bfloat16(), torch.zeros(2, dtype=torch.bfloat16)
    )
    assert got.dtype == torch.float32


def test_batch_log_z_is_detached_group_mean():
    log_pf_sum = torch.tensor([-1.0, -3.0, -2.0, -4.0], requires_grad=True)
    log_r = torch.tensor([0.0, 1.0, 2.0, 2.0])
    groups = torch.tensor([0, 0, 1, 1])
    got = batch_log_z(log_pf_sum, log_r, groups)
    assert got.tolist() == pytest.approx([2.5, 2.5, 5.0, 5.0])
    assert not got.requires_grad
    with pytest.raises(ValueError, match="at least 2 samples"):
        batch_log_z(log_pf_sum[:3], log_r[:3], groups[:3])


def test_importance_log_z_matches_float64_reference():
    log_r = torch.tensor([0.0, 1.0, -80.0, 2.0, 2.0, 5.0], dtype=torch.float64)
    log_q = torch.tensor(
        [-1.0, -2.0, -3.0, -0.5, float("nan"), -1.5], dtype=torch.float64, requires_grad=True
    )
    groups = torch.tensor([0, 0, 0, 1, 1, 1])
    got = importance_log_z(log_r, log_q, groups)
    # group 0: mean of R/q over its 3 sampled rows; group 1: the NaN (replay) row is left out
    g0 = math.log((math.exp(1.0) + math.exp(3.0) + math.exp(-77.0)) / 3)
    g1 = math.log((math.exp(2.5) + math.exp(6.5)) / 2)
    assert got.dtype == torch.float64 and not got.requires_grad
    assert got.tolist() == pytest.approx([g0] * 3 + [g1] * 3, abs=1e-12)


def test_importance_log_z_is_exact_at_the_fixed_point():
    """q proportional to R: every ratio R/q is Z, whatever was sampled."""
    log_z = 3.7
    log_r = torch.tensor([0.0, -2.0, -50.0, 1.0])
    got = importance_log_z(log_r, log_r - log_z, torch.zeros(4, dtype=torch.long))
    assert got.tolist() == pytest.approx([log_z] * 4, abs=1e-5)


def test_importance_log_z_ignores_what_batch_mean_is_dragged_by():
    """Two answers (log R 0) and two far-off samples (log R -80), sampled on-policy.

    The VarGrad mean lands ~40 nats below the answers' log R - log pi, so both answers get a
    large negative residual (the collapse mechanism); the importance estimate leaves them
    near zero."""
    log_r = torch.tensor([0.0, 0.0, -80.0, -80.0])
    log_pi = torch.tensor([-1.0, -2.0, -1.5, -1.5])  # the policy sampled these rows: q = pi
    groups = torch.zeros(4, dtype=torch.long)
    vargrad = batch_log_z(log_pi, log_r, groups)
    weighted = importance_log_z(log_r, log_pi, groups)
    assert (vargrad + log_pi - log_r)[:2].max() < -35
    assert (weighted + log_pi - log_r)[:2].abs().max() < 1.5


def test_importance_log_z_names_the_fix_without_sampled_rows():
    log_q = torch.tensor([-1.0, float("nan")])
    with pytest.raises(ValueError, match="replay_ratio"):
        importance_log_z(torch.zeros(2), log_q, torch.tensor([0, 1]))


def _fl_reference(log_pf, L, flow, prefix_log_r):
    """Pan et al. residuals written out with loops; log F~(s_L) = 0, E = -log R(prefix)."""
    flow = list(flow[: L + 1])
    flow[L] = 0.0
    energy = [-r for r in prefix_log_r[: L + 1]]
    return [
        flow[t - 1] + log_pf[t - 1] - flow[t] + energy[t] - energy[t - 1] for t in range(1, L + 1)
    ]


def test_fl_matches_reference():
    got = forward_looking(LOG_PF, MASK, LOG_FLOW, PREFIX_LOG_R)
    for b, (lp, L) in enumerate(ROWS):
        expected = _fl_reference(lp, L, LOG_FLOW[b].tolist(), PREFIX_LOG_R[b].tolist())
        assert got[b, :L].tolist() == pytest.approx(expected, abs=1e-12)
        assert got[b, L:].abs().sum() == 0


def test_fl_residuals_telescope_to_tb():
    residual = forward_looking(LOG_PF, MASK, LOG_FLOW, PREFIX_LOG_R).sum(dim=1)
    log_z = LOG_FLOW[:, 0] + PREFIX_LOG_R[:, 0]
    terminal_log_r = torch.stack([PREFIX_LOG_R[0, 3], PREFIX_LOG_R[1, 2]])
    assert residual.tolist() == pytest.approx(
        trajectory_balance(LOG_PF, MASK, terminal_log_r, log_z).tolist(), abs=1e-12
    )


def _db_reference(log_pf, L, flow, log_r):
    flow = list(flow[: L + 1])
    flow[L] = log_r
    return [flow[t - 1] + log_pf[t - 1] - flow[t] for t in range(1, L + 1)]


def test_db_matches_reference_and_equals_fl_with_zero_intermediate_energies():
    got = detailed_balance(LOG_PF, MASK, LOG_FLOW, LOG_R)
    zero_energies = torch.zeros_like(PREFIX_LOG_R)
    zero_energies[0, 3], zero_energies[1, 2] = LOG_R[0], LOG_R[1]
    fl = forward_looking(LOG_PF, MASK, LOG_FLOW, zero_energies)
    for b, (lp, L) in enumerate(ROWS):
        expected = _db_reference(lp, L, LOG_FLOW[b].tolist(), LOG_R[b].item())
        assert got[b, :L].tolist() == pytest.approx(expected, abs=1e-12)
    assert torch.allclose(got, fl, atol=1e-12)


def _subtb_reference(log_pf, L, state_flow, lam, penalty):
    total = weight_sum = 0.0
    for i in range(L + 1):
        for j in range(i + 1, L + 1):
            delta = state_flow[i] + sum(log_pf[i:j]) - state_flow[j]
            w = lam ** (j - i)
            total += w * penalty(delta)
            weight_sum += w
    return total / weight_sum


@pytest.mark.parametrize("lam", [1.0, 0.9, 0.5])
@pytest.mark.parametrize("with_energies", [False, True])
def test_subtb_matches_reference(lam, with_energies):
    prefix = PREFIX_LOG_R if with_energies else None
    got = subtrajectory_balance(LOG_PF, MASK, LOG_FLOW, LOG_R, lam, prefix)
    for b, (lp, L) in enumerate(ROWS):
        flows = LOG_FLOW[b, : L + 1].tolist()
        if with_energies:
            flows = [f + r for f, r in zip(flows, PREFIX_LOG_R[b, : L + 1].tolist())]
        flows[L] = LOG_R[b].item()
        assert got[b].item() == pytest.approx(
            _subtb_reference(lp, L, flows, lam, lambda d: d * d), abs=1e-12
        )


def test_subtb_with_huber_penalty():
    got = subtrajectory_balance(LOG_PF, MASK, LOG_FLOW, LOG_R, 0.9, penalty=huber)
    lp, L = ROWS[0]
    flows = LOG_FLOW[0, : L + 1].tolist()
    flows[L] = LOG_R[0].item()
    ref_huber = lambda d: 0.5 * d * d if abs(d) <= 1 else abs(d) - 0.5  # noqa: E731
    assert got[0].item() == pytest.approx(_subtb_reference(lp, L, flows, 0.9, ref_huber), abs=1e-12)


def test_subtb_with_tb_weighting_equals_tb():
    got = subtrajectory_balance(LOG_PF, MASK, LOG_FLOW, LOG_R, weighting="tb")
    tb = trajectory_balance(LOG_PF, MASK, LOG_R, LOG_FLOW[:, 0])
    assert torch.allclose(got, squared(tb), atol=1e-12)
    got_fl = subtrajectory_balance(
        LOG_PF, MASK, LOG_FLOW, LOG_R, prefix_log_reward=PREFIX_LOG_R, weighting="tb"
    )
    tb_fl = trajectory_balance(LOG_PF, MASK, LOG_R, LOG_FLOW[:, 0] + PREFIX_LOG_R[:, 0])
    assert torch.allclose(got_fl, squared(tb_fl), atol=1e-12)


def test_reinforce_leave_one_out():
    reward = torch.tensor([1.0, 3.0, 2.0, 0.0, 4.0], dtype=torch.float64)
    groups = torch.tensor([0, 0, 0, 1, 1])
    adv = leave_one_out_advantage(reward, groups)
    assert adv.tolist() == pytest.approx([1 - 2.5, 3 - 1.5, 2 - 2.0, 0 - 4.0, 4 - 0.0])
    log_pf = torch.tensor(
        [[-1.0], [-2.0], [-0.5], [-1.0], [-3.0]], dtype=torch.float64, requires_grad=True
    )
    loss = reinforce_loo(log_pf, torch.ones(5, 1, dtype=torch.float64), reward, groups)
    assert loss.tolist() == pytest.approx((-adv * log_pf.detach()[:, 0]).tolist())
    loss.sum().backward()
    assert log_pf.grad[:, 0].tolist() == pytest.approx((-adv).tolist())


def test_reinforce_kl_penalty_shapes_reward():
    log_pf = torch.tensor([[-1.0, -1.0], [-0.5, -0.5]], dtype=torch.float64)
    ref = torch.tensor([[-2.0, -2.0], [-0.5, -0.5]], dtype=torch.float64)
    mask = torch.ones(2, 2, dtype=torch.float64)
    loss = reinforce_loo(
        log_pf, mask, torch.zeros(2, dtype=torch.float64), torch.tensor([0, 0]), ref, kl_coef=0.5
    )
    # shaped rewards: -0.5 * (-2 + 4) = -1, -0.5 * 0 = 0 ; advantages -1, +1
    assert loss.tolist() == pytest.approx([1.0 * -2.0, -1.0 * -1.0])


def test_target_and_prefix_target():
    reward = torch.tensor([0.5, -1.0])
    ref = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -0.7, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    assert target_log_reward(reward, 100.0).tolist() == pytest.approx([50.0, -100.0])
    assert target_log_reward(reward, 2.0, 1.0, ref, mask).tolist() == pytest.approx(
        [1.0 - 3.5, -2.0 - 1.0]
    )
    prefix_r = torch.tensor([[0.0, 0.1, 0.2, 0.5], [0.3, 0.2, -1.0, -1.0]])
    got = prefix_target_log_reward(prefix_r, 2.0, 1.0, ref, mask)
    assert got[0].tolist() == pytest.approx([0.0, 0.2 - 1.0, 0.4 - 3.0, 1.0 - 3.5])
    assert got[1].tolist() == pytest.approx([0.6, 0.4 - 0.3, -2.0 - 1.0, -2.0 - 1.0])
    with pytest.raises(ValueError, match="reference"):
        target_log_reward(reward, 1.0, 1.0)


def test_beta_schedules():
    assert BetaSchedule(start=3.0)(1000) == 3.0
    lin = BetaSchedule(start=1.0, end=3.0, kind="linear", steps=10)
    assert [lin(0), lin(5), lin(10), lin(20)] == pytest.approx([1.0, 2.0, 3.0, 3.0])
    cos = BetaSchedule(start=0.0, end=2.0, kind="cosine", steps=4)
    assert [cos(0), cos(2), cos(4)] == pytest.approx([0.0, 1.0, 2.0])
    assert cos(1) == pytest.approx(1.0 - math.cos(math.pi / 4))
    with pytest.raises(ValueError, match="needs `end`"):
        BetaSchedule(kind="linear")


def test_importance_log_z_sums_the_known_set_exactly():
    """Z_hat = sum_S R + mean over sampled rows of 1(y not in S) R/q; members count in n only."""
    log_r = torch.tensor([10.0, 10.0, -80.0, 0.0], dtype=torch.float64)
    log_q = torch.tensor([-0.01, -0.01, -5.0, float("nan")], dtype=torch.float64)
    groups = torch.zeros(4, dtype=torch.long)
    known = torch.full(
        (4,), math.log(10 * math.exp(10.0)), dtype=torch.float64
    )  # ten answers of log R 10 known
    member = torch.tensor([True, True, False, False])
    got = importance_log_z(log_r, log_q, groups, known, member)
    expected = math.log(10 * math.exp(10.0) + math.exp(-75.0) / 3)
    assert got.tolist() == pytest.approx([expected] * 4, abs=1e-9)
    # without the known set, a collapsed batch (the same answer twice) sees only that answer
    alone = importance_log_z(log_r, log_q, groups)
    assert float(alone[0]) == pytest.approx(
        math.log((2 * math.exp(10.01) + math.exp(-75.0)) / 3), abs=1e-9
    )


def test_length_log_z_is_a_float64_least_squares_fit():
    # 3 prompts, lengths vary within two of them; reference: numpy lstsq on [prompt dummies, L].
    groups = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
    lengths = torch.tensor([3, 5, 9, 4, 4, 2, 7, 8])
    log_pf_sum = torch.tensor(
        [-3.0, -6.5, -11.0, -4.2, -3.9, -1.0, -8.0, -9.5], dtype=torch.float64
    )
    log_r = torch.tensor([1.0, 0.5, -2.0, 0.3, 0.8, 2.0, -1.0, 0.0], dtype=torch.float64)
    got = length_log_z(log_pf_sum.requires_grad_(), lengths, log_r, groups)
    design = np.column_stack(
        [(groups.numpy()[:, None] == np.arange(3)).astype(float), lengths.numpy()]
    )
    gap = (log_r - log_pf_sum).detach().numpy()
    coef, *_ = np.linalg.lstsq(design, gap, rcond=None)
    assert not got.requires_grad and got.dtype == torch.float64
    assert got.numpy() == pytest.approx(design @ coef, abs=1e-10)
    residual = got - torch.as_tensor(gap)  # = the TB residual with this log Z
    assert float((residual * lengths).sum()) == pytest.approx(
        0.0, abs=1e-9
    )  # blind to a length trend


def test_length_log_z_without_length_spread_is_the_batch_mean():
    groups = torch.tensor([0, 0, 1, 1])
    lengths = torch.tensor([4, 4, 6, 6])
    log_pf_sum, log_r = torch.tensor([-1.0, -2.0, -3.0, -0.5]), torch.tensor([0.2, 0.1, -0.4, 1.0])
    assert length_log_z(log_pf_sum, lengths, log_r, groups).tolist() == pytest.approx(
        batch_log_z(log_pf_sum, log_r, groups).tolist()
    )
    with pytest.raises(ValueError, match="samples_per_prompt >= 2"):
        length_log_z(log_pf_sum[:3], lengths[:3], log_r[:3], groups[:3])


def test_length_log_z_zero_residual_for_a_length_tilted_target():
    # pi proportional to R exp(-c L) for any c is a fixed point: every residual is zero.
    groups, lengths = torch.tensor([0, 0, 0, 1, 1]), torch.tensor([1, 2, 5, 3, 6])
    log_r = torch.tensor([0.4, -1.0, 2.0, 0.0, 1.5], dtype=torch.float64)
    log_pi = (
        log_r
        - 0.7 * lengths.double()
        - torch.tensor([1.0, 1.0, 1.0, 2.5, 2.5], dtype=torch.float64)
    )
    residual = length_log_z(log_pi, lengths, log_r, groups) + log_pi - log_r
    assert residual.abs().max() < 1e-12
