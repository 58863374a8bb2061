"""Trajectory Balance (Malkin et al. 2022, "Trajectory balance: improved credit assignment in GFlowNets").

For a prompt x and a completion y = (y_1..y_L) the TB residual is

    delta(y) = log Z(x) + sum_t log pi(y_t | x, y_<t) - log R(y | x)

and the loss is a penalty of delta (squared by default). On the token tree every state has
a single parent, so the backward policy P_B is 1 and drops out.

Termination: an EOS-terminated trajectory includes log pi(EOS | x, y) as its last action;
a trajectory forced to stop at ``max_new_tokens`` has no EOS action and no EOS term (it
stopped with probability 1). That is exactly the distribution the sampler draws from.

log Z(x) comes from one of five estimators (``LOGZ_MODES`` below), chosen by ``objective.logz``:
- ``scalar``: one learned parameter (the report's form, independent of x);
- ``prompt``: a small learned head on the policy's pooled prompt hidden states
  (``flowhf.models.heads.PromptLogZHead``);
- ``batch``: `batch_log_z` below, the per-prompt mean of log R - log pi over k >= 2
  samples of the same prompt, detached (VarGrad, Richter et al. 2020; TBA);
- ``importance``: `importance_log_z` below: the sum of R over the replay buffer's
  completions of the prompt, plus the importance-weighted mean of R / q over this step's
  other samples, detached. The one to use when rewards span many nats (alpha = 0 with a
  harsh reward for everything else) and when a few answers hold all the reward.
- ``length``: `length_log_z` below, a length-aware batch estimate log Z(x, L) = a(x) + c * L,
  detached: the policy then matches R among completions of equal length and is not pushed
  to shorten or lengthen them (see there).

Why alpha = 0 with a scalar log Z diverges on long sequences: with no LM prior in the
target, log R(y|x) = beta * r(x, y) is O(beta) for every y, while the untrained policy
gives a typical completion log pi ~ -T * ln|V| (near uniform over a vocabulary of |V|
tokens). Balancing requires log Z ~ beta * r - log pi >= T * ln|V| - O(beta): hundreds to
thousands of nats for T = 256, |V| = 50k, and different for every prompt. A single scalar
chasing that moving, prompt-dependent target with a large learning rate is what the
report saw grow to ~1e200. With alpha = 1 the target already contains log p_ref(y|x), so
log Z starts near beta * E[r] and stays O(beta).
"""

from __future__ import annotations

from flowhf._torch import torch
from flowhf.objectives._shapes import accumulation_dtype
from flowhf.objectives.regression import Penalty
from flowhf.objectives.spec import LogZMode, LossOutput, ObjectiveInputs, ObjectiveSpec


def trajectory_balance(
    log_pf: torch.Tensor,
    mask: torch.Tensor,
    log_reward: torch.Tensor,
    log_z: torch.Tensor,
) -> torch.Tensor:
    """TB residual per trajectory.

    Args:
        log_pf: [B, T] log pi(y_t | x, y_<t) of the actions taken (any value where padded).
        mask: [B, T] 1 for real actions, 0 for padding.
        log_reward: [B] target log R(y | x).
        log_z: [B] (or scalar) log Z(x).

    Returns:
        [B] residual log Z + sum_t log pi - log R, in float32 (float64 if any input is).
    """
    B, T = log_pf.shape
    dtype = accumulation_dtype(log_pf, log_reward, log_z)
    log_pf_sum = (log_pf.to(dtype) * mask.to(dtype)).sum(dim=1)  # [B]
    return log_z.to(dtype) + log_pf_sum - log_reward.to(dtype)  # [B]


def batch_log_z(
    log_pf_sum: torch.Tensor,
    log_reward: torch.Tensor,
    group_ids: torch.Tensor,
) -> torch.Tensor:
    """Per-prompt log Z estimate from k samples of the same prompt, detached (VarGrad).

    log Z_hat(x) = mean_{i in group(x)} (log R(y_i|x) - log pi(y_i|x)). Plugged into TB the
    loss becomes the within-prompt variance of log R - log pi, whose minimum is the same
    fixed point as TB's without learning any log Z parameter.

    Args:
        log_pf_sum: [B] sum of log pi over each trajectory.
        log_reward: [B] target log R.
        group_ids: [B] integer id of each row's prompt; every group needs >= 2 rows.

    Returns:
        [B] the group's estimate broadcast to its rows, no gradient.
    """
    dtype = accumulation_dtype(log_pf_sum, log_reward)
    gap = (log_reward.to(dtype) - log_pf_sum.to(dtype)).detach()  # [B]
    return _group_mean(gap, group_ids)


def _group_mean(values: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """[B] mean of ``values`` over each row's prompt group, broadcast back to the rows."""
    _, inverse, counts = torch.unique(group_ids, return_inverse=True, return_counts=True)
    if bool((counts < 2).any()):
        raise ValueError(
            "a batch log Z (logz=batch/length) needs at least 2 samples of every prompt in a batch; "
            "set sampling.samples_per_prompt >= 2 or use objective.logz=scalar/prompt"
        )
    sums = torch.zeros(counts.shape[0], dtype=values.dtype, device=values.device).index_add_(
        0, inverse, values
    )
    return (sums / counts.to(values.dtype))[inverse]  # [B]


def importance_log_z(
    log_reward: torch.Tensor,
    log_q: torch.Tensor,
    group_ids: torch.Tensor,
    known_log_z: torch.Tensor | None = None,
    known_member: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-prompt importance-sampling estimate of log Z from this step's samples, detached.

    Z(x) = sum_y R(y|x) = E_{y ~ q}[R(y|x) / q(y|x)], so

        log Z_hat(x) = logsumexp_{i in group(x), sampled} (log R_i - log q_i) - log n_x

    where q is the distribution each row was drawn from (tempered, nucleus: the sampler's
    own log-prob, `flowhf.sampling.generate.Completions.log_q`) and n_x the number of rows of
    x sampled this step. Rows not drawn from a known q (replay, off-policy text; NaN
    ``log_q``) take their group's estimate but do not enter it.

    Why not `batch_log_z` (the mean of log R - log pi): at alpha = 0 a completion outside
    the rewarded set sits ~beta * (r_answer - r_other) nats below every answer. The mean
    averages those in, lands tens of nats under the answers' log R - log pi, and gives
    every sampled answer the same large negative residual: the loss then pushes up
    whatever is sampled most, and the policy collapses onto a few answers (measured on
    SmolLM2, `benchmarks/lm_target.py`). The log-mean-exp weighs each row by R / q, so
    those rows count for ~nothing and the estimate tracks the answers. It is consistent
    (exact as n_x grows), biased low for small n_x (Jensen), and has the same fixed point:
    when pi = q is proportional to R every term equals log Z.

    Known part (``known_log_z``, `flowhf.training.known_set`): a batch alone cannot see the
    answers it did not sample, so once the policy has collapsed onto one answer the batch
    estimate is that answer's R / pi and its residual is zero. Given a set S fixed before
    sampling (the replay buffer's distinct completions) with exact log sum_S R,

        Z_hat(x) = sum_{y in S} R(y) + (1/n_x) sum_i 1(y_i not in S) R_i / q_i

    is still unbiased, and exact once S holds every high-reward completion.

    Args:
        log_reward: [B] target log R.
        log_q: [B] log-prob of each row under its sampling distribution; NaN if not sampled.
        group_ids: [B] integer id of each row's prompt; every group needs a sampled row.
        known_log_z: [B] log sum_S R of the row's prompt (-inf: nothing known); optional.
        known_member: [B] bool, the row's completion is in S (counted in n_x, not summed).

    Returns:
        [B] the group's estimate broadcast to its rows, no gradient.
    """
    dtype = accumulation_dtype(log_reward, log_q)
    weight = (log_reward.to(dtype) - log_q.to(dtype)).detach()  # [B] log R/q
    sampled = torch.isfinite(log_q)  # [B]
    _, inverse = torch.unique(group_ids, return_inverse=True)  # [B]
    G = int(inverse.max()) + 1 if inverse.numel() else 0
    n = torch.zeros(G, dtype=dtype, device=weight.device).index_add_(
        0, inverse, sampled.to(dtype)
    )  # [G]
    if bool((n < 1).any()):
        raise ValueError(
            "importance log Z needs at least one freshly sampled row of every prompt in a batch; "
            "lower replay.replay_ratio / sampling.offpolicy_fraction, or use objective.logz=batch"
        )
    summed = sampled if known_member is None else sampled & ~known_member.to(sampled.device)  # [B]
    masked = torch.where(summed, weight, torch.full_like(weight, float("-inf")))  # [B]
    peak = torch.full((G,), float("-inf"), dtype=dtype, device=weight.device).scatter_reduce(
        0, inverse, masked, "amax"
    )
    peak = torch.where(
        torch.isfinite(peak), peak, torch.zeros_like(peak)
    )  # a group with nothing to sum: exp(-inf) = 0
    total = torch.zeros(G, dtype=dtype, device=weight.device).index_add_(
        0, inverse, (masked - peak[inverse]).exp()
    )
    estimate = (peak + total.log() - n.log())[inverse]  # [B]; -inf where nothing was summed
    if known_log_z is not None:
        estimate = torch.logaddexp(estimate, known_log_z.to(estimate))
    return estimate.detach()


def length_log_z(
    log_pf_sum: torch.Tensor,
    lengths: torch.Tensor,
    log_reward: torch.Tensor,
    group_ids: torch.Tensor,
) -> torch.Tensor:
    """Length-aware batch log Z: log Z_hat(x, L) = a(x) + c * L, fitted to log R - log pi, detached.

    Why: the TB residual of a completion carries its length twice: log pi(y|x) falls about
    linearly with the number of actions L, and a reward model that rates early endings
    highly (the proxy of `flowhf reproduce` does) adds a length trend to log R. Plain TB
    moves the policy's mass along that trend, so answers shorten during training (PowerFlow,
    Chen et al. 2026, arXiv 2603.18363, measure this "length collapse" for trajectory-level
    targets; their fix is a length-aware TB, this is our own form of the idea). Here the
    log-partition may depend on L through one slope c shared by the batch, and a(x) per
    prompt: a pooled within-prompt least-squares fit of gap = log R - log pi on L,

        c = sum_i (L_i - mean_x L)(gap_i - mean_x gap) / sum_i (L_i - mean_x L)^2
        a(x) = mean_x gap - c * mean_x L

    (c = 0 when no prompt has two lengths, which is `batch_log_z`). The residual
    a(x) + c L + log pi - log R is then the least-squares residual of that fit: the loss is
    blind to any linear trend in length.

    Fixed points: every pi(y|x) proportional to R(y|x) exp(-c L(y)), for any c: within each
    length the policy matches the target exactly, while its length distribution is left
    where training found it (the start's, e.g. the SFT model's) instead of being moved by the
    target. That is the departure from TB, deliberately: the learned distribution is the
    target conditioned on length, not the target. Use ``batch`` for the exact target.

    Args:
        log_pf_sum: [B] sum of log pi over each trajectory.
        lengths: [B] number of actions of each trajectory (EOS included).
        log_reward: [B] target log R.
        group_ids: [B] integer id of each row's prompt; every group needs >= 2 rows.

    Returns:
        [B] a(x) + c * L of each row, no gradient.
    """
    dtype = accumulation_dtype(log_pf_sum, log_reward)
    gap = (log_reward.to(dtype) - log_pf_sum.to(dtype)).detach()  # [B]
    length = lengths.to(dtype)  # [B]
    mean_gap = _group_mean(gap, group_ids)  # [B]
    spread = length - _group_mean(length, group_ids)  # [B] L minus its prompt's mean
    denominator = (spread * spread).sum()
    slope = (
        (spread * (gap - mean_gap)).sum() / denominator
        if float(denominator) > 0
        else gap.new_zeros(())
    )
    return (mean_gap + slope * spread).detach()  # [B]


def _log_pf_sum(x: ObjectiveInputs) -> torch.Tensor:
    return (x.log_pf.float() * x.mask).sum(dim=1)  # [B]


def _batch_estimate(x: ObjectiveInputs) -> torch.Tensor:
    return batch_log_z(_log_pf_sum(x), x.log_reward, x.group_ids)


def _length_estimate(x: ObjectiveInputs) -> torch.Tensor:
    return length_log_z(_log_pf_sum(x), x.mask.sum(dim=1), x.log_reward, x.group_ids)


def _importance_estimate(x: ObjectiveInputs) -> torch.Tensor:
    if x.log_q is None:
        raise ValueError(
            "objective.logz=importance needs the sampler's log-probs (ObjectiveInputs.log_q)"
        )
    return importance_log_z(x.log_reward, x.log_q, x.group_ids, x.known_log_z, x.known_member)


def _learned_estimate(x: ObjectiveInputs) -> torch.Tensor:
    if x.log_z is None:
        raise ValueError(
            "a learned log Z (logz=scalar/prompt) needs the head's output in ObjectiveInputs.log_z"
        )
    return x.log_z


LOGZ_MODES = {
    "batch": LogZMode(
        "batch",
        _batch_estimate,
        min_group_size=2,
        help="VarGrad: per-prompt mean of log R - log pi, detached",
    ),
    "importance": LogZMode(
        "importance",
        _importance_estimate,
        min_group_size=2,
        known_set=True,
        help="replay buffer's completions summed exactly + importance-weighted R/q of the rest, detached",
    ),
    "length": LogZMode(
        "length",
        _length_estimate,
        min_group_size=2,
        help="per-prompt mean plus one slope in length (least squares), detached: matches R within each length",
    ),
    "scalar": LogZMode(
        "scalar", _learned_estimate, head="log_z", help="one learned parameter (the report's)"
    ),
    "prompt": LogZMode(
        "prompt",
        _learned_estimate,
        head="log_z_head",
        help="learned head on the prompt's hidden states",
    ),
}


def tb_loss(settings, x: ObjectiveInputs, penalty: Penalty) -> LossOutput:
    """Mean penalty of the TB residuals, log Z from the estimator ``settings.logz`` names."""
    log_z = LOGZ_MODES[settings.logz].estimate(x)  # [B]
    residual = trajectory_balance(x.log_pf, x.mask, x.log_reward, log_z)  # [B]
    return LossOutput(penalty(residual).mean(), residual.detach(), log_z.detach())


SPEC = ObjectiveSpec("tb", tb_loss, logz_modes=LOGZ_MODES, help="Trajectory Balance")
