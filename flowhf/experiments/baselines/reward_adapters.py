"""FlowHF rewards in the two shapes TRL's trainers want.

GRPO calls ``f(prompts, completions, completion_ids=..., trainer_state=..., **dataset_columns)``
and wants a list of floats. `grpo_reward_function` turns a FlowHF reward
``reward(prompts, completions, **columns) -> Tensor[B]`` into that: conversational prompts /
completions (lists of chat messages) become the raw user text / assistant text, TRL's own
keyword arguments are removed, the dataset columns are passed on, and the completion lengths
are counted for the budget.

PPO (`trl.experimental.ppo`) calls ``trl.experimental.utils.get_reward(model, query_responses,
pad_token_id, context_length)``, which only needs ``getattr(model, model.base_model_prefix)`` (a
backbone returning ``hidden_states``) and ``model.score``; the reward is read at the last
non-pad token. `PPOTextReward` is such a module whose backbone decodes each row, scores it with
the FlowHF reward and returns the score broadcast over every position (``score`` is the
identity). So PPO works with ANY FlowHF reward (VADER sentiment, toxicity, classifiers with their
own tokenizer, ...) and sees exactly the numbers GRPO and FlowHF see. `PPOCountingRM` wraps a
native sequence-classification RM (one that reads the policy's token ids) only to count tokens.

Both PPO modules split a row into prompt and completion with a `PromptIndex` (the token ids of
every training prompt): TRL passes left-padded prompts + response, masked by the attention mask,
but never the prompt boundary, which is recovered as the one column where every row's prompt ends.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from flowhf.experiments.baselines.budget import TokenCounter
from flowhf.sampling.prompts import message_text  # noqa: F401  (the one place; importable here too)

# Keyword arguments GRPOTrainer adds for reward functions; not dataset columns.
TRL_REWARD_KWARGS = ("completion_ids", "trainer_state", "log_extra", "log_metric", "environments")


def grpo_reward_function(
    reward: Callable[..., torch.Tensor],
    counter: TokenCounter | None = None,
    name: str | None = None,
) -> Callable[..., list[float]]:
    """A TRL reward function (GRPO) that calls the FlowHF ``reward`` (see the module docstring)."""

    def reward_function(
        prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any
    ) -> list[float]:
        completion_ids = kwargs.get("completion_ids")
        if counter is not None and completion_ids is not None:
            counter.add([len(ids) for ids in completion_ids])
        columns = {k: v for k, v in kwargs.items() if k not in TRL_REWARD_KWARGS}
        if getattr(reward, "uses_completion_ids", False):
            columns["completion_ids"] = completion_ids
        texts_p = [message_text(p, "user") for p in prompts]
        texts_c = [message_text(c, "assistant") for c in completions]
        scores = reward(texts_p, texts_c, **columns)
        return [float(x) for x in torch.as_tensor(scores, dtype=torch.float32).reshape(-1)]

    # TRL names the logged metric rewards/<__name__>/mean
    reward_function.__name__ = name or str(getattr(reward, "name", None) or "reward").replace(
        "/", "_"
    )
    return reward_function


class PromptIndex:
    """Finds each row's training prompt in a PPO batch (TRL passes no prompt boundary).

    TRL left-pads the prompts of a batch to one width C, so every prompt ends at column C. A
    row alone can be ambiguous when one prompt's ids are a prefix of another's (plain-text
    prompts; chat-templated prompts end with the generation prompt and never are), so C is
    taken as the one column every row of the batch agrees on; no agreement is an error.
    """

    def __init__(self, prompt_ids: Sequence[Sequence[int]]) -> None:
        self.rows: dict[tuple[int, ...], int] = {}
        for i, ids in enumerate(prompt_ids):
            self.rows.setdefault(
                tuple(int(t) for t in ids), i
            )  # duplicates: the first row's columns
        self.lengths = sorted({len(k) for k in self.rows})

    def candidates(self, ids: Sequence[int]) -> dict[int, int]:
        """{prompt length: prompt row} for every known prompt that ``ids`` starts with."""
        return {
            n: self.rows[tuple(ids[:n])]
            for n in self.lengths
            if n <= len(ids) and tuple(ids[:n]) in self.rows
        }

    def split_batch(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> list[tuple[int, list[int]]]:
        """(prompt row, completion ids) for every row of a left-padded prompt+completion batch."""
        parsed = []
        for ids, mask in zip(input_ids.tolist(), attention_mask.bool().tolist()):
            lead = mask.index(True) if True in mask else len(mask)  # left padding before the prompt
            real = [int(t) for t, keep in zip(ids, mask) if keep]
            found = self.candidates(real)
            if not found:
                raise ValueError(
                    f"a PPO rollout starts with no known training prompt (first ids {real[:12]}); the reward "
                    "wrapper must be built from the same tokenized prompts as the PPO dataset"
                )
            parsed.append((real, {lead + n: (row, n) for n, row in found.items()}))
        ends = set.intersection(*(set(by_end) for _, by_end in parsed))
        if len(ends) != 1:
            raise ValueError(
                f"cannot tell where the prompts end in this PPO batch (consistent prompt ends: {sorted(ends)}): some "
                "training prompts are token prefixes of others; deduplicate them or use a chat template"
            )
        end = ends.pop()
        return [(by_end[end][0], real[by_end[end][1] :]) for real, by_end in parsed]


class _TextRewardBackbone(nn.Module):
    """Backbone of `PPOTextReward`: decode rows, score them, broadcast the score as a hidden state."""

    def __init__(self, owner: PPOTextReward) -> None:
        super().__init__()
        self._owner = [owner]  # a list, so the owner is not registered as a child module (no cycle)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: Any
    ) -> SimpleNamespace:
        scores = self._owner[0].score_rows(input_ids, attention_mask)
        hidden = scores.to(input_ids.device)[:, None, None].expand(-1, input_ids.shape[1], 1)
        return SimpleNamespace(hidden_states=(hidden,))


class PPOTextReward(nn.Module):
    """Any FlowHF reward as the ``reward_model`` of TRL's PPOTrainer (see the module docstring).

    Args:
        reward: FlowHF reward callable.
        tokenizer: the policy tokenizer (completions are decoded with ``skip_special_tokens``).
        prompts: raw prompt texts of the PPO dataset rows (what the reward sees as prompts).
        prompt_ids: their token ids exactly as in the PPO dataset.
        columns: extra dataset columns (lists aligned with ``prompts``) passed to the reward.
    """

    base_model_prefix = "backbone"

    def __init__(
        self,
        reward: Callable[..., torch.Tensor],
        tokenizer: Any,
        prompts: Sequence[str],
        prompt_ids: Sequence[Sequence[int]],
        columns: dict[str, Sequence[Any]] | None = None,
        counter: TokenCounter | None = None,
    ) -> None:
        super().__init__()
        if len(prompts) != len(prompt_ids):
            raise ValueError(f"{len(prompts)} prompts but {len(prompt_ids)} tokenized prompts")
        self.reward = reward
        self.tokenizer = tokenizer
        self.prompts = list(prompts)
        self.columns = {k: list(v) for k, v in (columns or {}).items()}
        self.index = PromptIndex(prompt_ids)
        self.counter = counter
        self.backbone = _TextRewardBackbone(self)
        self.score = nn.Identity()
        self.last_scores: torch.Tensor | None = None

    def score_rows(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """FlowHF reward of every row of a padded prompt+completion batch, [B] float32."""
        splits = self.index.split_batch(input_ids, attention_mask)
        rows = [row for row, _ in splits]
        completions = [self.tokenizer.decode(ids, skip_special_tokens=True) for _, ids in splits]
        if self.counter is not None:
            self.counter.add([len(ids) for _, ids in splits])
        columns = {k: [v[r] for r in rows] for k, v in self.columns.items()}
        if getattr(self.reward, "uses_completion_ids", False):
            columns["completion_ids"] = [
                ids.tolist() if hasattr(ids, "tolist") else list(ids) for _, ids in splits
            ]
        scores = self.reward([self.prompts[r] for r in rows], completions, **columns)
        self.last_scores = torch.as_tensor(scores, dtype=torch.float32).reshape(-1)
        return self.last_scores


class _CountingBackbone(nn.Module):
    def __init__(self, inner: nn.Module, index: PromptIndex, counter: TokenCounter) -> None:
        super().__init__()
        self.inner = inner
        self.index = index
        self.counter = counter

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs: Any):
        self.counter.add([len(ids) for _, ids in self.index.split_batch(input_ids, attention_mask)])
        return self.inner(input_ids=input_ids, attention_mask=attention_mask, **kwargs)


class PPOCountingRM(nn.Module):
    """A native sequence-classification RM (reads the policy's token ids) plus token counting.

    The RM must share the policy's vocabulary: TRL feeds it the policy's token ids unchanged.
    """

    base_model_prefix = "backbone"

    def __init__(
        self, model: nn.Module, prompt_ids: Sequence[Sequence[int]], counter: TokenCounter
    ) -> None:
        super().__init__()
        prefix = getattr(model, "base_model_prefix", None)
        if not prefix or not hasattr(model, prefix) or not hasattr(model, "score"):
            raise TypeError(
                f"PPO's reward model must have a backbone (base_model_prefix) and a .score head, like an "
                f"AutoModelForSequenceClassification; {type(model).__name__} has not. Pass a FlowHF reward "
                "spec instead (e.g. 'classifier:PATH') to score decoded text."
            )
        self.model = model
        self.backbone = _CountingBackbone(getattr(model, prefix), PromptIndex(prompt_ids), counter)
        self.score = model.score
