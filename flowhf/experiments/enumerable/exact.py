"""Exact distribution of a causal LM over an enumerable completion space, and distances.

Every completion's probability is computed by batched teacher forcing. A causal model's
log-probs at position t depend only on the prefix, so a forward pass over the V^max_len
full-length strings yields the log-prob of every shorter string too: a string of length L
is read off the full string that extends it with symbol 0.

p(y) = prod_{t<=L} pi(y_t | y_<t) * pi(EOS | y)   for L < max_len
p(y) = prod_{t<=L} pi(y_t | y_<t)                 for L = max_len (forced termination)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import logsumexp

from flowhf.experiments.enumerable.space import CompletionSpace
from flowhf.models.modes import eval_mode
from flowhf.sampling.generate import mask_logits


@torch.no_grad()
def exact_log_probs(
    model: torch.nn.Module,
    prompt_ids: list[int],
    space: CompletionSpace,
    eos_id: int,
    allowed_tokens: torch.Tensor | None = None,
    batch_size: int = 4096,
) -> np.ndarray:
    """[N] log p(y | prompt) of every completion in `space` (float64)."""
    V, M = space.vocab_size, space.max_len
    full_rows = np.arange(space.offsets[M], space.offsets[M + 1])  # strings of length max_len
    full_symbols = torch.as_tensor(space.padded[full_rows])  # [F, M]
    F = full_symbols.shape[0]
    token_lp = np.zeros((F, M))  # log pi(s_{t+1} | s_<=t)
    eos_lp = np.zeros((F, M + 1))  # log pi(EOS | s_<=t)
    prompt = torch.as_tensor(prompt_ids, dtype=torch.long)
    with eval_mode(model):
        for start in range(0, F, batch_size):
            chunk = full_symbols[start : start + batch_size]  # [b, M]
            b = chunk.shape[0]
            ids = torch.cat([prompt.expand(b, -1), chunk], dim=1)  # [b, P+M]
            logits = (
                model(input_ids=ids, use_cache=False).logits[:, len(prompt_ids) - 1 :, :].float()
            )  # [b, M+1, V']
            lp = torch.log_softmax(mask_logits(logits, allowed_tokens), dim=-1).double()
            token_lp[start : start + b] = (
                lp[:, :M, :].gather(-1, chunk.unsqueeze(-1)).squeeze(-1).numpy()
            )
            eos_lp[start : start + b] = lp[:, :, eos_id].numpy()
    cum = np.concatenate([np.zeros((F, 1)), np.cumsum(token_lp, axis=1)], axis=1)  # [F, M+1]
    L = space.lengths
    representative = space.values * V ** (M - L)  # index among full strings
    out = cum[representative, L]
    short = L < M
    out[short] += eos_lp[representative[short], L[short]]
    return out


@dataclass
class Comparison:
    tv: float
    kl_target_model: float
    jsd: float
    modes_found: int
    modes_total: int
    log_z_true: float


def find_modes(
    space: CompletionSpace, target_log_prob: np.ndarray, max_modes: int = 10, min_mass: float = 1e-3
) -> np.ndarray:
    """Indices of the target's modes: strict local maxima under one edit, mass >= min_mass, top max_modes."""
    local = np.where(target_log_prob > space.neighbour_max(target_log_prob))[0]
    local = local[np.exp(target_log_prob[local]) >= min_mass]
    return local[np.argsort(-target_log_prob[local])][:max_modes]


def compare(
    space: CompletionSpace, target_log_reward: np.ndarray, model_log_prob: np.ndarray
) -> Comparison:
    """Distances between the normalised target and the model's exact distribution."""
    log_z = float(logsumexp(target_log_reward))
    log_p = target_log_reward - log_z  # target
    log_q = model_log_prob - logsumexp(model_log_prob)  # renormalise away float error
    p, q = np.exp(log_p), np.exp(log_q)
    tv = 0.5 * float(np.abs(p - q).sum())
    support = p > 0
    kl = float(np.sum(p[support] * (log_p[support] - log_q[support])))
    m = 0.5 * (p + q)
    jsd = 0.5 * float(np.sum(p[support] * np.log(p[support] / m[support]))) + 0.5 * float(
        np.sum(q[q > 0] * np.log(q[q > 0] / m[q > 0]))
    )
    modes = find_modes(space, log_p)
    found = int(np.sum(q[modes] >= 0.5 * p[modes]))
    return Comparison(tv, kl, jsd, found, int(len(modes)), log_z)
