"""Teacher-forced per-token log-probs and per-state hidden states of completions.

For a prompt of P tokens and completion actions y_1..y_T, the state s_t (prompt plus the
first t actions) is represented by the hidden state at the position of its last token:
position P-1+t of the concatenated sequence. log pi(y_t | s_{t-1}) is read from the logits
at position P-2+t. One forward pass gives all of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import DynamicCache

from flowhf.models.checkpointing import is_checkpointing
from flowhf.sampling.generate import cache_kwarg, distinct_rows, mask_logits, positions_from_mask


@dataclass
class SequenceScores:
    log_pf: torch.Tensor  # [B, T] float32 log pi of each action (0 where padded)
    hidden: torch.Tensor | None  # [B, T+1, H] last-layer hidden state of s_0..s_T
    prompt_hidden: torch.Tensor | None  # [B, P, H] last-layer hidden states of the prompt
    entropy: torch.Tensor | None  # [B, T] per-step policy entropy (no grad)


def completion_log_probs(
    model: torch.nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    allowed_tokens: torch.Tensor | None = None,
    with_hidden: bool = False,
    with_entropy: bool = False,
) -> SequenceScores:
    """Log-probs of the completion actions under `model` (with gradient if enabled).

    Args:
        prompt_ids: [B, P] LEFT-padded prompts; prompt_mask: [B, P].
        completion_ids: [B, T] RIGHT-padded actions; completion_mask: [B, T].

    Rows that share a prompt (k samples of one prompt) read it once: the prompt is run once
    per distinct row and its KV cache indexed out to the rows, so the cost is that of the
    distinct prompts plus B completions, with gradients flowing into the shared prompt pass.
    """
    B, P = prompt_ids.shape
    _, T = completion_ids.shape
    n_distinct, first, inverse = distinct_rows(prompt_ids, prompt_mask)
    if n_distinct < B and T > 0 and not _checkpointing(model):
        logits, hidden, prompt_hidden = _shared_prompt_forward(
            model, prompt_ids, prompt_mask, completion_ids, first, inverse, with_hidden
        )
    else:
        logits, hidden, prompt_hidden = _joint_forward(
            model, prompt_ids, prompt_mask, completion_ids, with_hidden
        )
    logits = mask_logits(logits.float(), allowed_tokens)  # [B, T, V], predicts y_1..y_T
    log_probs = torch.log_softmax(logits, dim=-1)  # [B, T, V]
    token_log_pf = log_probs.gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)  # [B, T]
    # where(), not a product: a padded position may hold a masked-out token with log-prob -inf.
    token_log_pf = torch.where(
        completion_mask > 0, token_log_pf, torch.zeros_like(token_log_pf)
    )  # [B, T]
    entropy = None
    if with_entropy:
        with torch.no_grad():
            p = log_probs.exp()
            entropy = -(p * log_probs.nan_to_num(neginf=0.0)).sum(-1) * completion_mask  # [B, T]
    return SequenceScores(token_log_pf, hidden, prompt_hidden, entropy)


def _checkpointing(model: torch.nn.Module) -> bool:
    """Gradient checkpointing drops the KV cache in a training forward with grad (transformers
    sets cache=None there), so the shared-prompt pass would lose its prompt: read it per row."""
    return model.training and torch.is_grad_enabled() and is_checkpointing(model)


def _forward(model, input_ids, attention, positions, with_hidden: bool, cache=None):
    """One forward pass; with a ``cache`` (DynamicCache) it is read and extended in place."""
    kv = {} if cache is None else {cache_kwarg(model): cache}
    return model(
        input_ids=input_ids,
        attention_mask=attention,
        position_ids=positions,
        output_hidden_states=with_hidden,
        use_cache=cache is not None,
        **kv,
    )


def _joint_forward(model, prompt_ids, prompt_mask, completion_ids, with_hidden):
    """One pass over prompt + completion: logits [B, T, V], hidden [B, T+1, H], prompt hidden [B, P, H]."""
    P, T = prompt_ids.shape[1], completion_ids.shape[1]
    input_ids = torch.cat([prompt_ids, completion_ids], dim=1)  # [B, P+T]
    # Right padding after a completion cannot influence earlier positions of a causal model,
    # so those positions can attend normally; only the prompt's left padding is masked.
    attention = torch.cat([prompt_mask.long(), torch.ones_like(completion_ids)], dim=1)  # [B, P+T]
    out = _forward(model, input_ids, attention, positions_from_mask(attention), with_hidden)
    logits = out.logits[:, P - 1 : P + T - 1, :]
    if not with_hidden:
        return logits, None, None
    last = out.hidden_states[-1]  # [B, P+T, H]
    return logits, last[:, P - 1 : P + T, :], last[:, :P, :]


def _shared_prompt_forward(
    model, prompt_ids, prompt_mask, completion_ids, first, inverse, with_hidden
):
    """The distinct prompts once (KV cache kept, with grad), then every row's completion on it."""
    T = completion_ids.shape[1]
    p_ids, p_mask = prompt_ids[first], prompt_mask[first].long()  # [G, P]
    cache = DynamicCache()
    out_p = _forward(model, p_ids, p_mask, positions_from_mask(p_mask), with_hidden, cache)
    cache.batch_select_indices(inverse)  # [G, ...] -> [B, ...]
    attention = torch.cat([prompt_mask.long(), torch.ones_like(completion_ids)], dim=1)  # [B, P+T]
    start = prompt_mask.long().sum(dim=1, keepdim=True)  # [B, 1]
    positions = start + torch.arange(T, device=start.device)  # [B, T]
    out_c = _forward(model, completion_ids, attention, positions, with_hidden, cache)
    logits = torch.cat(
        [out_p.logits[:, -1:, :][inverse], out_c.logits[:, : T - 1, :]], dim=1
    )  # [B, T, V]
    if not with_hidden:
        return logits, None, None
    prompt_last = out_p.hidden_states[-1][inverse]  # [B, P, H]
    hidden = torch.cat([prompt_last[:, -1:, :], out_c.hidden_states[-1]], dim=1)  # [B, T+1, H]
    return logits, hidden, prompt_last
