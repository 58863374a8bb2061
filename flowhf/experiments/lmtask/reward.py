"""The task's reward on token ids: r = answers[a] if ids == canonical(a) + EOS, else other_reward.

It declares ``uses_completion_ids``, so every caller (the FlowHF trainer, the TRL GRPO and PPO
adapters) hands it the completion's action ids, EOS included when the completion ended with
one. The text it also receives is ignored: the reward is defined on ids (see `task.py`).
"""

from __future__ import annotations

from typing import Any

import torch

from flowhf.experiments.lmtask.task import LMTask
from flowhf.rewards.base import Reward


class AnswerSetReward(Reward):
    name = "answer_set"
    uses_completion_ids = True

    def __init__(self, task: LMTask, tokenizer, eos_ids: list[int]) -> None:
        super().__init__()
        self.other = task.other_reward
        self.eos_ids = set(int(e) for e in eos_ids)
        self.table: dict[str, dict[tuple[int, ...], float]] = {}
        for item, canonical in zip(task.items, task.canonical_ids(tokenizer)):
            self.table[item.prompt] = {
                tuple(canonical[text]): r for text, r in item.answers.items()
            }

    def lookup(self, prompt: str, ids: list[int]) -> float:
        """Reward of one completion given as action ids (EOS last when it ended with one)."""
        try:
            answers = self.table[prompt]
        except KeyError:
            raise KeyError(
                f"reward {self.name!r}: prompt {prompt[:60]!r} is not one of the task's prompts"
            ) from None
        ids = [int(i) for i in ids]
        if not ids or ids[-1] not in self.eos_ids:
            return self.other
        return answers.get(tuple(ids[:-1]), self.other)

    def score(
        self, prompts: list[str], completions: list[str], completion_ids=None, **_: Any
    ) -> torch.Tensor:
        if completion_ids is None:
            raise ValueError(
                f"reward {self.name!r} is defined on token ids: call it with completion_ids=[...] (action ids, "
                "EOS included when the completion ended with one)"
            )
        return torch.tensor(
            [self.lookup(p, ids) for p, ids in zip(prompts, completion_ids)], dtype=torch.float32
        )

    def score_prefixes(self, prompts, completion_ids, tokenizer, **columns) -> torch.Tensor:
        """[B, T+1]: entry t = reward if the completion stopped (with EOS) after its first t tokens.

        The last entry of a row is its real reward; entries past a row's length repeat it.
        """
        eos = min(self.eos_ids)
        T = max((len(ids) for ids in completion_ids), default=0)
        out = torch.empty(len(prompts), T + 1)
        for b, (prompt, ids) in enumerate(zip(prompts, completion_ids)):
            ids = [int(i) for i in ids]
            final = self.lookup(prompt, ids)
            for t in range(T + 1):
                out[b, t] = final if t >= len(ids) else self.lookup(prompt, ids[:t] + [eos])
        return out
