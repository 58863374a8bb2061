"""Prefix routes of `ClassifierReward`: one-pass (causal RMs) and per-prefix token ids.

One-pass, why it is exact. A causal sequence classifier (LlamaForSequenceClassification and the
other `*ForSequenceClassification` classes built as backbone + `score` head) computes
``score(h[i])`` where h = backbone hidden states and i = the rightmost token that is not the pad
id. With causal attention, h at position p depends only on tokens 0..p, so running the FULL
sequence once gives, at p = (context length + t - 1), the hidden state the model would compute for
the prefix of t completion tokens run on its own. Applying the head at every position therefore
yields every prefix reward from one forward, instead of T + 1 forwards over growing inputs.
We also replay the model's read rule ("rightmost non-pad token", which matters when the pad id
equals EOS and a completion ends with EOS) with a running maximum over positions.

Token ids vs text. Both token routes feed the RM the POLICY's token ids (context ids + the first t
completion ids). That is what "the reward of this prefix" means for the objective, but it is not
always what the RM would see if it re-tokenised the decoded prefix text: BPE may merge the last
tokens differently at the cut (and at the prompt | completion boundary). `ClassifierReward.
score_token_ids` is the per-prefix reference the one-pass route equals exactly; `__call__` is the
text route. Both need the RM tokenizer to have the policy tokenizer's vocabulary.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch

from flowhf.rewards.base import hold_values, pad_prefix_rows, prefix_positions

if TYPE_CHECKING:
    from flowhf.rewards.classifier import ClassifierReward

logger = logging.getLogger(__name__)

_PROBE = "hello world"


def collate(
    features: list[dict[str, list[int]]], pad_id: int, max_length: int, device: Any
) -> dict:
    """Right-pad token-id features into model inputs.

    Sequences are right-truncated to `max_length`; an empty sequence is fed as one pad token
    (a model cannot run on zero tokens), the same in every route.
    """
    seqs = [list(f["input_ids"][:max_length]) or [pad_id] for f in features]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    batch = {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
    if "token_type_ids" in features[0]:
        types = torch.zeros_like(ids)
        for i, f in enumerate(features):
            tt = list(f["token_type_ids"][:max_length])
            types[i, : len(tt)] = torch.tensor(tt, dtype=torch.long)
        batch["token_type_ids"] = types.to(device)
    return batch


def special_affixes(tokenizer: Any) -> tuple[list[int], list[int]] | None:
    """(leading, trailing) special-token ids the tokenizer adds around a text, or None if unclear."""
    with_special = list(tokenizer(_PROBE, add_special_tokens=True)["input_ids"])
    plain = list(tokenizer(_PROBE, add_special_tokens=False)["input_ids"])
    for start in range(len(with_special) - len(plain) + 1):
        if with_special[start : start + len(plain)] == plain:
            return with_special[:start], with_special[start + len(plain) :]
    return None


def same_vocab(reward: ClassifierReward, policy_tokenizer: Any) -> bool:
    """True when the policy's token ids mean the same strings to the RM tokenizer (cached)."""
    key = id(policy_tokenizer)
    if key not in reward._vocab_match:
        reward._vocab_match[key] = (
            policy_tokenizer is reward.tokenizer
            or policy_tokenizer.get_vocab() == reward.tokenizer.get_vocab()
        )
    return reward._vocab_match[key]


def token_route_blocker(reward: ClassifierReward, policy_tokenizer: Any) -> str | None:
    """Why the RM cannot be fed the policy's token ids, or None when it can."""
    if policy_tokenizer is None:
        return "no policy tokenizer was given"
    if reward.input_format == "pair":
        return "input_format='pair' puts separator tokens between prompt and completion"
    if special_affixes(reward.tokenizer) is None:
        return "cannot tell which special tokens the RM tokenizer adds around a text"
    if not same_vocab(reward, policy_tokenizer):
        return "the RM tokenizer's vocabulary differs from the policy tokenizer's"
    return None


def one_pass_blocker(reward: ClassifierReward) -> str | None:
    """Why the one-pass route does not apply (beyond the token-route checks), or None."""
    model = reward.model
    backbone = getattr(model, getattr(model, "base_model_prefix", ""), None)
    if (
        not isinstance(getattr(model, "score", None), torch.nn.Module)
        or backbone is None
        or backbone is model
    ):
        return f"{type(model).__name__} is not a backbone + `score` head (causal reward model)"
    if getattr(model.config, "is_encoder_decoder", False):
        return f"{type(model).__name__} is an encoder-decoder model"
    _, suffix = special_affixes(reward.tokenizer)
    if suffix:
        return f"the RM tokenizer appends special tokens {suffix} after the text, so prefixes are not prefixes of the input"
    return reward._one_pass_problem


def position_values(reward: ClassifierReward, batch: dict) -> torch.Tensor:
    """The reward read at EVERY position: select(score(backbone hidden states)), [N, S]."""
    model = reward.model
    backbone = getattr(model, model.base_model_prefix)
    out = backbone(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
    )
    return reward.select(model.score(out[0]))


def one_pass_prefix_scores(
    reward: ClassifierReward, contexts: list[list[int]], completion_ids: list[list[int]]
) -> torch.Tensor:
    """Prefix rewards [B, T+1] of context + completion, one forward per batch of rows."""
    rows: list[torch.Tensor | None] = [None] * len(contexts)
    order = sorted(range(len(contexts)), key=lambda b: len(contexts[b]) + len(completion_ids[b]))
    empty_value: torch.Tensor | None = None
    for start in range(0, len(order), reward.batch_size):
        idx = order[start : start + reward.batch_size]
        feats = [
            {"input_ids": list(contexts[b]) + [int(i) for i in completion_ids[b]]} for b in idx
        ]
        batch = collate(feats, reward.pad_id, reward.max_length, reward.device)
        with torch.inference_mode():
            values = position_values(reward, batch)
        ids = batch["input_ids"]
        positions = torch.arange(ids.shape[1], device=ids.device)
        # The model reads the rightmost non-pad token of its input (index 0 if there is none).
        read = (positions * (ids != reward.pad_id)).cummax(dim=1).values
        per_pos = values.gather(1, read).float().cpu()
        seq_lens = batch["attention_mask"].sum(1).cpu()
        for j, b in enumerate(idx):
            n_ctx, length = len(contexts[b]), len(completion_ids[b])
            # Prefix t ends at position n_ctx + t - 1; past max_length the input is truncated.
            ends = (n_ctx - 1 + torch.arange(length + 1)).clamp(max=int(seq_lens[j]) - 1)
            row = per_pos[j, ends.clamp_min(0)]
            if n_ctx == 0:  # empty context and empty completion: score the empty input as such
                if empty_value is None:
                    empty_value = reward.score_token_ids([[]])[0]
                row[0] = empty_value
            rows[b] = row
    return pad_prefix_rows(rows)


def per_prefix_token_scores(
    reward: ClassifierReward, contexts: list[list[int]], completion_ids: list[list[int]]
) -> torch.Tensor:
    """Prefix rewards [B, T+1] with one model input per scored prefix (honours prefix_stride)."""
    _, suffix = special_affixes(reward.tokenizer)
    plans, seqs = [], []
    for ctx, comp in zip(contexts, completion_ids):
        comp = [int(i) for i in comp]
        positions = prefix_positions(len(comp), reward.prefix_stride)
        plans.append(positions)
        seqs.extend(list(ctx) + comp[:t] + list(suffix) for t in positions)
    values = reward.score_token_ids(seqs)
    rows, offset = [], 0
    for positions, comp in zip(plans, completion_ids):
        rows.append(
            hold_values(len(comp), positions, values[offset : offset + len(positions)].tolist())
        )
        offset += len(positions)
    return pad_prefix_rows(rows)


def verify_one_pass(
    reward: ClassifierReward,
    contexts: list[list[int]],
    completion_ids: list[list[int]],
    values: torch.Tensor,
) -> str | None:
    """Compare one-pass final values with the model's own forward; a message if they differ.

    Guards against a model whose forward does more than score(backbone(x)) at the last token.
    """
    full = reward.score_token_ids(
        [list(c) + [int(i) for i in y] for c, y in zip(contexts, completion_ids)]
    )
    diff = float((full - values[:, -1]).abs().max()) if len(full) else 0.0
    tol = 1e-3 if next(reward.model.parameters()).dtype == torch.float32 else 5e-2
    tol *= max(1.0, float(full.abs().max()) if len(full) else 1.0)
    if diff > tol:
        return f"one-pass rewards differ from the model's own forward by {diff:.3g} (> {tol:.3g})"
    return None
