"""The replay buffer as the exactly summed part of Z(x) (the ``importance`` log Z of TB).

For any set S of completions fixed before this step's sampling,

    Z(x) = sum_{y in S} R(y|x) + E_{y ~ q}[ 1(y not in S) R(y|x) / q(y|x) ]

so summing the known part exactly and importance-weighting only the rest is still unbiased,
and the variance left is that of the unknown remainder. S is each prompt's distinct
sequences in the replay buffer before this step adds to it: the best completions found so
far. On a task whose rewarded answers have all been found once, log Z is then exact whatever
the policy samples now, including when it has collapsed onto one answer; a batch-only
estimate cannot see the answers the batch missed.
"""

from __future__ import annotations

import torch

from flowhf.sampling.prompts import prompt_key
from flowhf.sampling.replay import ReplayBuffer
from flowhf.target import target_log_reward
from flowhf.training.batch import TrajectoryBatch


def known_set(
    buffer: ReplayBuffer, batch: TrajectoryBatch, beta: float, alpha: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: log sum of R over its prompt's stored sequences, and whether the row is one of them.

    log R is recomputed from each item's reward and reference log-prob under today's beta
    (a beta schedule changes it); an item without a recorded reference log-prob is left
    out of S when alpha != 0.

    Returns:
        known_log_z: [B] float64, -inf where the prompt has nothing stored.
        member: [B] bool.
    """
    keys = [prompt_key(p) for p in batch.prompts]  # the buffer's key of each row's prompt
    per_prompt: dict[str, tuple[float, set]] = {}
    for prompt in dict.fromkeys(keys):
        items = [it for it in buffer.items(prompt) if alpha == 0.0 or it.ref_log_prob is not None]
        if not items:
            per_prompt[prompt] = (float("-inf"), set())
            continue
        reward = torch.tensor([it.reward for it in items], dtype=torch.float64)  # [N]
        ref = torch.tensor(
            [[it.ref_log_prob or 0.0] for it in items], dtype=torch.float64
        )  # [N, 1]
        log_r = target_log_reward(reward, beta, alpha, ref, torch.ones_like(ref))  # [N]
        per_prompt[prompt] = (float(torch.logsumexp(log_r, 0)), {it.token_ids for it in items})
    rows = batch.completion_lists()
    known_log_z = torch.tensor([per_prompt[k][0] for k in keys], dtype=torch.float64)  # [B]
    member = torch.tensor(
        [tuple(r) in per_prompt[k][1] for k, r in zip(keys, rows)], dtype=torch.bool
    )  # [B]
    return known_log_z, member
