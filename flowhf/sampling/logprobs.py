"""Teacher-forced per-token log-probs and per-state hidden states of completions.

For a prompt of P tokens and completion actions y_1..y_T, the state s_t (prompt plus the
first t actions) is represented by the hidden state at the position of its last token:
position P-1+t of the concatenated sequence. log pi(y_t | s_{t-1}) is read from the logits
at position P-2+t. One forward pass gives all of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from flowhf.sampling.generate import mask_logits, positions_from_mask


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
    """
    B, P = prompt_ids.shape
    _, T = completion_ids.shape
    input_ids = torch.cat([prompt_ids, completion_ids], dim=1)  # [B, P+T]
    # Right padding after a completion cannot influence earlier positions of a causal model,
    # so those positions can attend normally; only the prompt's left padding is masked.
    attention = torch.cat([prompt_mask.long(), torch.ones_like(completion_ids)], dim=1)  # [B, P+T]
    out = model(
        input_ids=input_ids,
        attention_mask=attention,
        position_ids=positions_from_mask(attention),
        output_hidden_states=with_hidden,
        use_cache=False,
    )
    logits = out.logits[:, P - 1 : P + T - 1, :].float()  # [B, T, V], predicts y_1..y_T
    logits = mask_logits(logits, allowed_tokens)
    log_probs = torch.log_softmax(logits, dim=-1)  # [B, T, V]
    token_log_pf = log_probs.gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)  # [B, T]
    # where(), not a product: a padded position may hold a masked-out token with log-prob -inf.
    token_log_pf = torch.where(completion_mask > 0, token_log_pf, torch.zeros_like(token_log_pf))  # [B, T]
    hidden = prompt_hidden = entropy = None
    if with_hidden:
        last = out.hidden_states[-1]  # [B, P+T, H]
        hidden = last[:, P - 1 : P + T, :]  # [B, T+1, H]
        prompt_hidden = last[:, :P, :]  # [B, P, H]
    if with_entropy:
        with torch.no_grad():
            p = log_probs.exp()
            entropy = -(p * log_probs.nan_to_num(neginf=0.0)).sum(-1) * completion_mask  # [B, T]
    return SequenceScores(token_log_pf, hidden, prompt_hidden, entropy)
