"""Assemble one training batch: prompts x k completions from policy, dataset and replay.

Each prompt gets k = samples_per_prompt completions: on-policy samples (tempered
exploration), off-policy ones from a dataset column (the report trained FlowHF off-policy
on StackExchange answers) and replayed ones. GFlowNet objectives accept all three: the loss
always uses log-probs recomputed under the current policy. Prompts are encoded and padded
by `flowhf.sampling.prompts`, the path every method shares.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import torch

from flowhf.data.loading import DataError
from flowhf.sampling.generate import Completions
from flowhf.sampling.prompts import encode_completion


@dataclass
class TrajectoryBatch:
    prompt_ids: torch.Tensor  # [B, P] left-padded
    prompt_mask: torch.Tensor  # [B, P]
    ids: torch.Tensor  # [B, T] right-padded completion actions
    mask: torch.Tensor  # [B, T]
    ended_with_eos: torch.Tensor  # [B] bool
    group_ids: torch.Tensor  # [B] prompt index within the step
    prompts: list  # [B] prompts as given (texts or chat messages), before the chat template
    sources: list[str]  # [B] "policy" | "offpolicy" | "replay"
    columns: dict[str, list] = field(default_factory=dict)  # the other dataset columns, [B] each
    log_q: torch.Tensor | None = (
        None  # [B] sampler's log-prob of each row; NaN unless sampled this step
    )
    row_numbers: list[int | None] = field(
        default_factory=list
    )  # [B] 1-based dataset row (errors; None: other rows)

    @property
    def lengths(self) -> torch.Tensor:
        return self.mask.sum(dim=1).long()

    def completion_lists(self) -> list[list[int]]:
        return [row[: int(n)].tolist() for row, n in zip(self.ids, self.lengths)]


def completions_from_texts(
    tokenizer, texts: list[str], max_new_tokens: int, eos_id: int, pad_id: int
) -> Completions:
    """Off-policy trajectories from text: tokens + EOS, or forced-terminated at max_new_tokens.

    A text longer than max_new_tokens is cut; it then ends without EOS exactly like a
    sampled completion forced to terminate, so the objectives treat both the same way.
    """
    encoded = [encode_completion(tokenizer, text, eos_id, max_new_tokens) for text in texts]
    return completions_from_ids([ids for ids, _ in encoded], [eos for _, eos in encoded], pad_id)


def completions_from_ids(
    rows: list[list[int]], ended_with_eos: list[bool], pad_id: int
) -> Completions:
    T = max(1, max((len(r) for r in rows), default=1))
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), T)
    for i, r in enumerate(rows):
        if r:
            ids[i, : len(r)] = torch.as_tensor(r)
            mask[i, : len(r)] = 1.0
    return Completions(ids, mask, torch.as_tensor(ended_with_eos, dtype=torch.bool), 1.0)


def concat_completions(parts: list[Completions], pad_id: int) -> Completions:
    """Stack completion batches of different lengths (right padding)."""
    parts = [p for p in parts if p.ids.shape[0] > 0]
    T = max(max(p.ids.shape[1] for p in parts), 1)
    ids, masks = [], []
    for p in parts:
        extra = T - p.ids.shape[1]
        ids.append(torch.nn.functional.pad(p.ids, (0, extra), value=pad_id))
        masks.append(torch.nn.functional.pad(p.mask, (0, extra), value=0.0))
    log_q = torch.cat(
        [
            p.log_q if p.log_q is not None else torch.full((p.ids.shape[0],), float("nan"))
            for p in parts
        ]
    )
    return Completions(
        torch.cat(ids),
        torch.cat(masks),
        torch.cat([p.ended_with_eos for p in parts]),
        parts[0].temperature,
        log_q,
    )


def step_prompt_rows(
    rows: list[dict], per_process: int, world: int, rank: int, seed: int, state
) -> list[dict]:
    """This process's next ``per_process`` rows of a seeded per-epoch shuffle.

    Every process walks the same order; each step consumes per_process rows per process and
    process ``rank`` takes the rank-th slice, so processes never train on the same prompt in
    a step. The cursor (``state.data_cursor``, ``state.data_epoch`` of a
    `flowhf.training.state.RunState`) advances in place and is checkpointed by the trainer.
    """
    taken = []
    while len(taken) < per_process * world:
        order = list(range(len(rows)))
        random.Random(seed * 100_003 + state.data_epoch).shuffle(order)
        take = order[state.data_cursor : state.data_cursor + per_process * world - len(taken)]
        taken.extend(rows[i] for i in take)
        state.data_cursor += len(take)
        if state.data_cursor >= len(rows):
            state.data_epoch += 1
            state.data_cursor = 0
    state.set_epoch(len(rows))
    return taken[rank * per_process : (rank + 1) * per_process]


def steps_for_epochs(epochs: float, rows: int, per_process: int, world: int) -> int:
    """Updates that take ``epochs`` passes over ``rows`` prompts (optim.num_train_epochs)."""
    return max(1, math.ceil(epochs * rows / (per_process * world)))


def fit_prompts(
    encoded: list[list[int]],
    prompts: list[str],
    context: int | None,
    max_new_tokens: int,
    long_prompts: str,
    max_prompt_length: int | None = None,
) -> tuple[list[list[int]], int]:
    """Prompts that leave room for max_new_tokens in the model's context (and are at most
    ``max_prompt_length`` tokens, sampling.max_prompt_length), and how many were cut.

    A longer prompt is cut from the left (``long_prompts="truncate"``) or is an error naming
    it and the fix (``"error"``; also when no room is left at all).
    """
    if not context and not max_prompt_length:
        return encoded, 0
    room = min(
        context - max_new_tokens if context else max_prompt_length, max_prompt_length or context
    )
    long = [i for i, ids in enumerate(encoded) if len(ids) > room]
    if long and (room < 1 or long_prompts == "error"):
        limit = (
            f"sampling.max_prompt_length={max_prompt_length}"
            if room == max_prompt_length
            else f"the model reads {context} and sampling.max_new_tokens={max_new_tokens} leaves {max(room, 0)} for the prompt"
        )
        raise DataError(
            f"prompt {prompts[long[0]][:60]!r}... has {len(encoded[long[0]])} tokens; {limit}",
            "shorten the prompts, lower sampling.max_new_tokens, raise sampling.max_prompt_length, "
            "or set sampling.long_prompts=truncate",
        )
    return [ids[-room:] if len(ids) > room else ids for ids in encoded], len(long)
