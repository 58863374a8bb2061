"""The rollout: a step's prompts, its completions (on-policy, off-policy, replayed) and the
replay buffer they go back to.

It reads the sampling and replay groups only (`SamplingArgs`, `ReplayArgs`), and owns the
state an exact resume needs of it: the replay buffer and the exploration streams (a Python
RNG for temperatures, a torch generator for CPU sampling). The data position lives in the
run's counters (`flowhf.training.state.RunState`), which every part reads.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from flowhf.config.training import ReplayArgs, SamplingArgs
from flowhf.sampling import draw_temperature
from flowhf.sampling.generate import Completions, SampleSettings
from flowhf.sampling.prompts import encode_prompts, left_pad, prompt_key
from flowhf.sampling.replay import ReplayBuffer
from flowhf.training.batch import (
    TrajectoryBatch,
    completions_from_ids,
    completions_from_texts,
    concat_completions,
    fit_prompts,
    step_prompt_rows,
)
from flowhf.training.known_set import known_set
from flowhf.training.policy import Policy
from flowhf.training.sampler import StepSamplers
from flowhf.training.scorer import Target

RANK_SEED = 7919  # process R explores with seed + 7919 R: its own stream


@dataclass
class PromptRows:
    """The training rows a rollout draws its prompts from."""

    rows: list[dict]
    prompt_column: str  # data.prompt_column: texts or chat messages
    columns: list[str]  # the other columns every completion carries to the reward
    seed: int  # optim.seed: the data order, the replay draws and the exploration streams


@dataclass
class Drawn:
    """One step's batch as the rollout drew it."""

    batch: TrajectoryBatch
    temperature: float  # of the on-policy rows (1.0 for a batch drawn by the reference)
    truncated: int  # prompts cut to fit the model's context


class Rollout:
    """Prompts x k completions per step: on-policy (tempered), an off-policy column, replay."""

    def __init__(
        self, sampling: SamplingArgs, replay: ReplayArgs, policy: Policy, data: PromptRows
    ):
        self.sampling, self.replay_args, self.policy, self.data = sampling, replay, policy, data
        self._row_number = {id(row): i + 1 for i, row in enumerate(data.rows)}
        self.replay = ReplayBuffer(
            replay.replay_capacity,
            replay.replay_prioritized,
            replay.replay_temperature,
            seed=data.seed,
            with_replacement=replay.replay_with_replacement,
        )
        seed = data.seed + RANK_SEED * policy.accelerator.process_index
        self.rng = random.Random(seed)
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        self.samplers = StepSamplers(policy, sampling)

    def next_prompt_rows(self, state) -> list[dict]:
        """This process's rows for the next step; advances ``state``'s data cursor
        (`flowhf.training.batch.step_prompt_rows`)."""
        acc = self.policy.accelerator
        return step_prompt_rows(
            self.data.rows,
            self.sampling.prompts_per_step,
            acc.num_processes,
            acc.process_index,
            self.data.seed,
            state,
        )

    def draw(self, rows: list[dict]) -> Drawn:
        """k completions of each row's prompt: replay slots first filled from the buffer (a prompt
        with nothing stored yet gets on-policy samples there), off-policy from the dataset column."""
        s = self.sampling
        k, n_off = s.samples_per_prompt, round(s.offpolicy_fraction * s.samples_per_prompt)
        prompts = [r[self.data.prompt_column] for r in rows]  # texts or chat messages
        keys = [prompt_key(p) for p in prompts]  # the replay buffer's
        n_replay = [
            round(self.replay_args.replay_ratio * k) if self.replay.size(key) else 0 for key in keys
        ]
        encoded, truncated = self._encode(prompts, keys)
        order = [(g, "policy") for g in range(len(rows)) for _ in range(k - n_off - n_replay[g])]
        sampled, temperature = self._sample([encoded[g] for g, _ in order])
        parts = [sampled]
        if n_off:
            texts = [rows[g][s.offpolicy_column] for g in range(len(rows)) for _ in range(n_off)]
            order += [(g, "offpolicy") for g in range(len(rows)) for _ in range(n_off)]
            parts.append(
                completions_from_texts(
                    self.policy.tokenizer,
                    texts,
                    s.max_new_tokens,
                    self.policy.eos_ids[0],
                    self.policy.pad_id,
                )
            )
        if any(n_replay):
            groups, replayed = self._replayed(keys, n_replay)
            order += [(g, "replay") for g in groups]
            parts.append(replayed)
        batch = self._assemble(rows, prompts, encoded, order, parts)
        return Drawn(batch, temperature, truncated)

    def _encode(self, prompts: list, keys: list[str]) -> tuple[list[list[int]], int]:
        """Token ids of each prompt, fitted to the context (`flowhf.training.batch.fit_prompts`)."""
        s, p = self.sampling, self.policy
        return fit_prompts(
            encode_prompts(p.tokenizer, prompts, p.chat_template),
            keys,
            getattr(p.bundle.model.config, "max_position_embeddings", None),
            s.max_new_tokens,
            s.long_prompts,
            s.max_prompt_length,
        )

    def _sample(self, encoded: list[list[int]]) -> tuple[Completions, float]:
        """The on-policy rows, at this step's temperature (or drawn by the reference)."""
        s, p = self.sampling, self.policy
        by_reference = s.reference_prob > 0 and self.rng.random() < s.reference_prob
        temperature = (
            1.0
            if by_reference
            else draw_temperature(s.explore_prob, (s.temperature_low, s.temperature_high), self.rng)
        )
        pids, pmask = left_pad(encoded, p.pad_id)
        with self.samplers.use(by_reference) as sample:
            sampled = sample(
                pids.to(p.device),
                pmask.to(p.device),
                SampleSettings(
                    s.max_new_tokens,
                    p.eos_ids,
                    p.pad_id,
                    temperature,
                    s.top_p,
                    top_k=s.explore_top_k if temperature != 1.0 else 0,
                    tempered_tokens=s.explore_tokens,
                    allowed_tokens=p.allowed_tokens,
                ),
                self.generator if p.device.type == "cpu" else None,
            )
        completions = Completions(
            sampled.ids.cpu(),
            sampled.mask.cpu(),
            sampled.ended_with_eos.cpu(),
            temperature,
            sampled.log_q.cpu(),
        )
        return completions, temperature

    def _replayed(self, keys: list[str], n_replay: list[int]) -> tuple[list[int], Completions]:
        """Each prompt's replay draws from the buffer, and the group of every row drawn."""
        drawn = self.replay.sample(
            [key for key, n in zip(keys, n_replay) if n], [n for n in n_replay if n]
        )
        groups_with_replay = [g for g, n in enumerate(n_replay) if n]
        items = [(g, item) for g, chunk in zip(groups_with_replay, drawn) for item in chunk]
        completions = completions_from_ids(
            [list(it.token_ids) for _, it in items],
            [it.ended_with_eos for _, it in items],
            self.policy.pad_id,
        )
        return [g for g, _ in items], completions

    def _assemble(self, rows, prompts, encoded, order, parts) -> TrajectoryBatch:
        """The batch in ``order`` ((group, source) per row): prompts re-padded, columns carried."""
        pad = self.policy.pad_id
        comp = concat_completions(parts, pad)
        groups = [g for g, _ in order]
        pids, pmask = left_pad([encoded[g] for g in groups], pad)
        return TrajectoryBatch(
            pids,
            pmask,
            comp.ids,
            comp.mask,
            comp.ended_with_eos,
            torch.as_tensor(groups),
            [prompts[g] for g in groups],
            [src for _, src in order],
            {c: [rows[g].get(c) for g in groups] for c in self.data.columns},
            comp.log_q,
            [self._row_number.get(id(rows[g])) for g in groups],
        )

    # ------------------------------------------------------------------ the replay buffer

    def known_set(
        self, batch: TrajectoryBatch, beta: float, alpha: float
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The buffer's part of Z for the importance log Z (`flowhf.training.known_set`), or
        None without replay."""
        if self.replay_args.replay_ratio <= 0:
            return None
        return known_set(self.replay, batch, beta, alpha)

    def remember(self, batch: TrajectoryBatch, target: Target) -> None:
        """Store the batch's new (not replayed) rows with their reward and target log R."""
        if self.replay_args.replay_ratio <= 0:
            return
        ref_log_prob = (target.ref_log_pf * batch.mask.to(target.ref_log_pf.device)).sum(dim=1)
        for i, tokens in enumerate(batch.completion_lists()):
            if batch.sources[i] != "replay":
                self.replay.add(
                    prompt_key(batch.prompts[i]),
                    tokens,
                    bool(batch.ended_with_eos[i]),
                    float(target.reward[i]),
                    float(target.log_reward[i]),
                    float(ref_log_prob[i]),
                )

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict:
        """The replay buffer and both exploration streams (plain values and a CPU tensor)."""
        version, internal, gauss = self.rng.getstate()
        return {
            "replay": self.replay.state_dict(),
            "python_rng": [version, list(internal), gauss],
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        version, internal, gauss = state["python_rng"]
        self.rng.setstate((version, tuple(internal), gauss))
        self.generator.set_state(state["generator"])
        self.replay.load_state_dict(state["replay"])
