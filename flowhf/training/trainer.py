"""FlowHFTrainer: GFlowNet fine-tuning of a causal LM, in the shape of TRL's GRPOTrainer.

    trainer = FlowHFTrainer(model="smollm2", reward_funcs="sentiment", args=config, train_dataset=rows)
    trainer.train()

A TRL GRPO script runs with only the class names changed: TRL's config names
(`flowhf.config.trl_names`), reward functions called TRL's way (`flowhf.rewards.functions`),
text or conversational datasets (`flowhf.training.rows`), ``train(resume_from_checkpoint=)``,
``save_model``, ``state.global_step`` / ``state.log_history`` and TrainerCallbacks
(`flowhf.training.loop`, `flowhf.training.callbacks`).

One step reads top to bottom in `training_step`: sample -> score -> target -> residuals ->
update. It runs under `accelerate` (one process by default; `accelerate launch` or
`torchrun` for more, each process sampling its own prompts).
"""

from __future__ import annotations

import contextlib
import random
import time
from pathlib import Path

import torch
from accelerate import Accelerator

from flowhf.config.training import FlowHFConfig
from flowhf.config.trl_names import refuse_eval_dataset, with_peft_config
from flowhf.models.checkpointing import enable_activation_checkpointing
from flowhf.models.loading import PolicyBundle, load_policy, tokenizer_beside
from flowhf.models.lora import LoraSettings
from flowhf.models.saved_run import save_policy
from flowhf.objectives import get_objective
from flowhf.rewards.functions import RewardBatch, RewardFunctions
from flowhf.run_dir import claim_run_dir
from flowhf.sampling import completion_log_probs, draw_temperature
from flowhf.sampling.generate import Completions, SampleSettings
from flowhf.sampling.prompts import encode_prompts, eos_ids, left_pad, prompt_key
from flowhf.sampling.replay import ReplayBuffer
from flowhf.target import floor_reward, prefix_target_log_reward, target_log_reward
from flowhf.training.batch import (
    TrajectoryBatch,
    completions_from_ids,
    completions_from_texts,
    concat_completions,
    fit_prompts,
    step_prompt_rows,
    steps_for_epochs,
)
from flowhf.training.callbacks import CallbackList
from flowhf.training.heads import build_heads, head_outputs, heads_read_hidden
from flowhf.training.known_set import known_set
from flowhf.training.loop import run_training
from flowhf.training.loss import ObjectiveInputs, objective_loss
from flowhf.training.nonfinite import (
    NonFiniteStep,
    finite_rewards,
    fix_for,
    likely_cause,
    record_skip,
)
from flowhf.training.optim import build_optimizer, build_scheduler
from flowhf.training.rows import reward_columns, training_rows
from flowhf.training.sampler import StepSamplers
from flowhf.training.state import RunState, restore_trainer_state, trainer_state
from flowhf.training.step_metrics import StepRecord, histogram_tensors, step_metrics


class FlowHFTrainer:
    """Train `model` so it samples completions in proportion to exp(beta r + alpha log p_ref).

    Args:
        model: a model spec ('smollm2', folder, .gguf, Hub id), a PreTrainedModel, or a
            ready `PolicyBundle`.
        reward_funcs: one item or a list, each a function called TRL's way, a
            `flowhf.rewards` spec or Reward, or a sequence-classification model (object or
            local folder); see `flowhf.rewards.functions`. Default: ``args.target.reward``.
        args: FlowHFConfig (grouped, or with TRL's flat names).
        train_dataset: a datasets.Dataset, IterableDataset or list of rows; default =
            ``args.data.dataset`` loaded.
        tokenizer / processing_class (TRL's name): needed when `model` is a bare model whose
            folder holds no tokenizer.
        reward_processing_classes: the tokenizer of each model item of reward_funcs.
        callbacks: transformers TrainerCallbacks (`flowhf.training.callbacks`).
        peft_config: TRL's LoRA settings (a peft LoraConfig), as model.lora_* keys.
        eval_dataset: TRL's; an error (FlowHF evaluates saved models with `flowhf eval`).
    """

    def __init__(
        self,
        model=None,
        reward_funcs=None,
        args: FlowHFConfig | None = None,
        train_dataset=None,
        tokenizer=None,
        *,
        processing_class=None,
        reward_processing_classes=None,
        callbacks=None,
        peft_config=None,
        eval_dataset=None,
    ):
        refuse_eval_dataset(eval_dataset)
        self.args = with_peft_config(args or FlowHFConfig(), peft_config)
        cfg = self.args
        self.accelerator = Accelerator(cpu=not torch.cuda.is_available())
        self.device = self.accelerator.device
        self.output_dir = Path(cfg.logging.output_dir)
        # Data and reward first: their errors (a missing column, a bad reward item) are
        # reported before the policy loads, as config errors are.
        self.rows = training_rows(train_dataset, cfg)
        self.columns = reward_columns(self.rows, cfg.data.prompt_column)
        self._row_number = {id(row): i + 1 for i, row in enumerate(self.rows)}
        self.state = self._new_state()
        self.reward_fn = self._load_reward(
            reward_funcs if reward_funcs is not None else cfg.target.reward,
            reward_processing_classes,
        )
        self.bundle = self._load_model(
            model if model is not None else cfg.model.name, _one(tokenizer, processing_class)
        )
        self.tokenizer = self.bundle.tokenizer
        if cfg.model.gradient_checkpointing:
            enable_activation_checkpointing(self.bundle.model)
        self.settings = cfg.objective
        self.beta = cfg.target.beta_per_reward()
        self.heads = build_heads(cfg.objective, self.bundle.model.config.hidden_size)
        self.optimizer = build_optimizer(self.bundle.model, self.heads, cfg.optim)
        self.scheduler = build_scheduler(self.optimizer, cfg.optim, self.state.max_steps)
        self.model, self.optimizer, self.scheduler, *heads = self.accelerator.prepare(
            self.bundle.model, self.optimizer, self.scheduler, *self.heads.values()
        )
        self.heads = dict(zip(self.heads.keys(), heads))
        self.eos_ids = eos_ids(self.bundle.model, self.tokenizer)
        self.pad_id = self.tokenizer.pad_token_id
        self.replay = ReplayBuffer(
            cfg.replay.replay_capacity,
            cfg.replay.replay_prioritized,
            cfg.replay.replay_temperature,
            seed=cfg.optim.seed,
            with_replacement=cfg.replay.replay_with_replacement,
        )
        rank = self.accelerator.process_index  # each process explores with its own stream
        self.rng = random.Random(cfg.optim.seed + 7919 * rank)
        self.generator = torch.Generator(device="cpu").manual_seed(cfg.optim.seed + 7919 * rank)
        self.allowed_tokens = None
        self.callbacks = CallbackList(callbacks)
        self.samplers = StepSamplers(
            self
        )  # sampling.sampler: plain or fast (`flowhf.training.sampler`)

    # ------------------------------------------------------------------ construction

    def _new_state(self) -> RunState:
        """Counters, and TrainerState's fields as TRL fills them (max_steps: the step budget)."""
        cfg, acc, s = self.args, self.accelerator, self.args.sampling
        epochs = cfg.optim.num_train_epochs
        steps = (
            steps_for_epochs(epochs, len(self.rows), s.prompts_per_step, acc.num_processes)
            if epochs
            else cfg.optim.max_steps
        )
        return RunState(
            max_steps=steps,
            logging_steps=cfg.logging.logging_steps,
            save_steps=cfg.logging.save_steps,
            train_batch_size=s.prompts_per_step * s.samples_per_prompt,
            num_train_epochs=epochs or 0,
            is_local_process_zero=acc.is_local_main_process,
            is_world_process_zero=acc.is_main_process,
        )

    def _load_model(self, model, tokenizer) -> PolicyBundle:
        if isinstance(model, PolicyBundle):
            return model
        m = self.args.model
        lora = (
            LoraSettings(
                r=m.lora_r,
                alpha=m.lora_alpha,
                dropout=m.lora_dropout,
                **({"target_modules": m.lora_target_modules} if m.lora_target_modules else {}),
            )
            if m.lora
            else None
        )
        if tokenizer is None and isinstance(
            model, torch.nn.Module
        ):  # as TRL: the tokenizer of the model's folder
            tokenizer = tokenizer_beside(model, m.trust_remote_code)
        torch.manual_seed(self.args.optim.seed)  # LoRA init is random: make it the seed's
        return load_policy(
            model,
            lora=lora,
            dtype=m.dtype,
            trust_remote_code=m.trust_remote_code,
            cache_dir=m.cache_dir,
            tokenizer=tokenizer,
        )

    def _load_reward(self, spec, processing_classes) -> RewardFunctions:
        cfg = self.args
        reward = RewardFunctions.build(
            spec,
            weights=cfg.target.reward_weights,
            columns=cfg.data.reward_columns or [],
            trainer_state=self.state,
            processing_classes=processing_classes,
            trust_remote_code=cfg.model.trust_remote_code,
        )
        self.reward_name = reward.name
        if cfg.target.nonfinite_reward == "floor":
            reward.allow_nonfinite()  # the trainer floors them (and counts them) itself
        reward.set_prefix_stride(cfg.target.prefix_stride)
        self.needs_prefix = get_objective(cfg.objective.objective).needs_prefix_rewards(
            cfg.objective
        )
        return reward

    # ------------------------------------------------------------------ data

    def next_prompt_rows(self) -> list[dict]:
        """This process's rows for the next step (`flowhf.training.batch.step_prompt_rows`)."""
        n, acc = self.args.sampling.prompts_per_step, self.accelerator
        return step_prompt_rows(
            self.rows, n, acc.num_processes, acc.process_index, self.args.optim.seed, self.state
        )

    def build_batch(self, rows: list[dict]) -> tuple[TrajectoryBatch, float]:
        """Prompts x k completions: on-policy (tempered), off-policy column, replay."""
        s, cfg = self.args.sampling, self.args
        k = s.samples_per_prompt
        n_off = round(s.offpolicy_fraction * k)
        prompts = [r[cfg.data.prompt_column] for r in rows]  # texts or chat messages
        keys = [prompt_key(p) for p in prompts]  # the replay buffer's
        # A prompt with nothing in the buffer yet gets on-policy samples in its replay slots.
        n_replay = [
            round(cfg.replay.replay_ratio * k) if self.replay.size(key) else 0 for key in keys
        ]
        context = getattr(self.bundle.model.config, "max_position_embeddings", None)
        encoded, self._truncated = fit_prompts(
            encode_prompts(self.tokenizer, prompts, cfg.model.chat_template),
            keys,
            context,
            s.max_new_tokens,
            s.long_prompts,
            s.max_prompt_length,
        )
        order = [(g, "policy") for g in range(len(rows)) for _ in range(k - n_off - n_replay[g])]
        by_reference = s.reference_prob > 0 and self.rng.random() < s.reference_prob
        temperature = (
            1.0
            if by_reference
            else draw_temperature(s.explore_prob, (s.temperature_low, s.temperature_high), self.rng)
        )
        pids, pmask = left_pad([encoded[g] for g, _ in order], self.pad_id)
        with self.samplers.use(by_reference) as sample:
            sampled = sample(
                pids.to(self.device),
                pmask.to(self.device),
                SampleSettings(
                    s.max_new_tokens,
                    self.eos_ids,
                    self.pad_id,
                    temperature,
                    s.top_p,
                    top_k=s.explore_top_k if temperature != 1.0 else 0,
                    tempered_tokens=s.explore_tokens,
                    allowed_tokens=self.allowed_tokens,
                ),
                self.generator if self.device.type == "cpu" else None,
            )
        parts = [
            Completions(
                sampled.ids.cpu(),
                sampled.mask.cpu(),
                sampled.ended_with_eos.cpu(),
                temperature,
                sampled.log_q.cpu(),
            )
        ]
        if n_off:
            texts = [rows[g][s.offpolicy_column] for g in range(len(rows)) for _ in range(n_off)]
            order += [(g, "offpolicy") for g in range(len(rows)) for _ in range(n_off)]
            parts.append(
                completions_from_texts(
                    self.tokenizer, texts, s.max_new_tokens, self.eos_ids[0], self.pad_id
                )
            )
        if any(n_replay):
            drawn = self.replay.sample(
                [key for key, n in zip(keys, n_replay) if n], [n for n in n_replay if n]
            )
            groups_with_replay = [g for g, n in enumerate(n_replay) if n]
            items = [(g, item) for g, chunk in zip(groups_with_replay, drawn) for item in chunk]
            order += [(g, "replay") for g, _ in items]
            parts.append(
                completions_from_ids(
                    [list(it.token_ids) for _, it in items],
                    [it.ended_with_eos for _, it in items],
                    self.pad_id,
                )
            )
        comp = concat_completions(parts, self.pad_id)
        groups = [g for g, _ in order]
        pids, pmask = left_pad([encoded[g] for g in groups], self.pad_id)
        columns = {c: [rows[g].get(c) for g in groups] for c in self.columns}
        batch = TrajectoryBatch(
            pids,
            pmask,
            comp.ids,
            comp.mask,
            comp.ended_with_eos,
            torch.as_tensor(groups),
            [prompts[g] for g in groups],
            [src for _, src in order],
            columns,
            comp.log_q,
            [self._row_number.get(id(rows[g])) for g in groups],
        )
        return batch, temperature

    # ------------------------------------------------------------------ the step

    def training_step(self) -> dict:
        """sample -> score -> target -> residuals -> update. Returns the step's metrics."""
        cfg, t0 = self.args, time.perf_counter()
        step = self.state.global_step
        # 1. sample
        batch, temperature = self.build_batch(self.next_prompt_rows())
        t_sample = time.perf_counter()
        # 2. score: rewards of the texts (and of every prefix for FL / SubTB energies)
        texts = self.tokenizer.batch_decode(batch.completion_lists(), skip_special_tokens=True)
        scored = RewardBatch(
            batch.prompts, texts, batch.completion_lists(), batch.columns, batch.row_numbers
        )
        raw = self.reward_fn(scored).float().cpu()  # [B]
        self.state.completions_scored += len(texts) * self.accelerator.num_processes
        n_nonfinite = int((~torch.isfinite(raw)).sum())
        reward = floor_reward(self._finite(raw, scored), cfg.target.reward_floor)
        prefix_reward = None
        if self.needs_prefix:
            prefix_reward = (
                self.reward_fn.score_prefixes(scored, self.tokenizer)
                .float()
                .cpu()[:, : batch.ids.shape[1] + 1]
            )
            prefix_reward = floor_reward(
                self._finite(prefix_reward, scored, "prefix "), cfg.target.reward_floor
            )
        t_reward = time.perf_counter()
        # 3. target log R = beta r + alpha log p_ref (reference log-probs also give the KL metric)
        dev = self.device
        ids, mask, pids, pmask = (
            batch.ids.to(dev),
            batch.mask.to(dev),
            batch.prompt_ids.to(dev),
            batch.prompt_mask.to(dev),
        )
        need_hidden = heads_read_hidden(self.heads)
        with self.bundle.reference_mode() as reference, self._autocast():
            ref_log_pf = completion_log_probs(
                reference, pids, pmask, ids, mask, self.allowed_tokens
            ).log_pf.float()
        beta = self.beta(step)
        log_reward = target_log_reward(
            reward.to(dev), beta, cfg.target.alpha, ref_log_pf, mask
        )  # [B]
        prefix_log_reward = None
        if prefix_reward is not None:
            prefix_log_reward = prefix_target_log_reward(
                prefix_reward.to(dev), beta, cfg.target.alpha, ref_log_pf, mask
            )
        # 4. residuals under the current policy (log-probs recomputed with gradient)
        self.model.train()
        with self._autocast():
            scores = completion_log_probs(
                self.model,
                pids,
                pmask,
                ids,
                mask,
                self.allowed_tokens,
                with_hidden=need_hidden,
                with_entropy=True,
            )
        inputs = ObjectiveInputs(
            log_pf=scores.log_pf.float(),
            mask=mask,
            log_reward=log_reward,
            group_ids=batch.group_ids.to(dev),
            prefix_log_reward=prefix_log_reward,
            reward=beta * reward.to(dev),
            ref_log_pf=ref_log_pf,
            log_q=batch.log_q.to(dev),
            **self._known(batch, beta),
            **head_outputs(self.heads, scores, pmask),
        )
        out = objective_loss(self.settings, inputs)
        # 5. update, never with a non-finite loss or gradient
        skipped, grad_norm = self._update(
            out.loss, {"log_reward": log_reward, "log_pf": inputs.log_pf, "log_z": out.log_z}
        )
        t_end = time.perf_counter()
        if (
            skipped is None
        ):  # a skipped step's rows (non-finite values) never enter the replay buffer
            self._remember(batch, reward, log_reward, (ref_log_pf * mask).sum(dim=1))
        metrics = step_metrics(
            StepRecord(
                batch=batch,
                reward=reward,
                log_reward=log_reward,
                scores=scores,
                ref_log_pf=ref_log_pf,
                out=out,
                beta=beta,
                temperature=temperature,
                skipped=skipped,
                grad_norm=grad_norm,
                lr=self.optimizer.param_groups[0]["lr"],
                skipped_total=self.state.skipped_total,
                times=(t0, t_sample, t_reward, t_end),
            )
        )
        metrics.update(self._reward_metrics())
        self._last_hist = histogram_tensors(scores.log_pf, mask, inputs.log_flow)
        if cfg.target.nonfinite_reward == "floor":
            metrics["train/nonfinite_rewards"] = float(n_nonfinite)
        if self._truncated:
            metrics["train/truncated_prompts"] = float(self._truncated)
        return metrics

    def _finite(self, values: torch.Tensor, scored: RewardBatch, what: str = "") -> torch.Tensor:
        """Non-finite rewards: an error, or floored (`flowhf.training.nonfinite.finite_rewards`)."""
        return finite_rewards(
            values, scored, self.args.target, self.reward_name, self.state.global_step + 1, what
        )

    def _reward_metrics(self) -> dict:
        """train/reward/NAME per reward function (several of them) and what they log_metric'ed."""
        means = self.reward_fn.last_means if len(self.reward_fn.items) > 1 else {}
        return {
            **{f"train/reward/{k}": v for k, v in means.items()},
            **{f"train/{k}": v for k, v in self.reward_fn.log.pop().items()},
        }

    def _update(self, loss: torch.Tensor, named: dict) -> tuple[str | None, float]:
        """Backward + clip + step. Returns (name of the non-finite quantity if skipped, grad norm)."""
        self.optimizer.zero_grad(set_to_none=True)
        bad, grad_norm = (None if torch.isfinite(loss) else "train/loss"), float("nan")
        if bad is None:
            self.accelerator.backward(loss)
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            max_norm = self.args.optim.max_grad_norm or float("inf")
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
            if not torch.isfinite(torch.tensor(grad_norm)):
                bad = "train/grad_norm"
        if bad is not None:
            for (
                name,
                value,
            ) in named.items():  # name the culprit upstream of the loss if there is one
                if value is not None and not torch.isfinite(value.detach()).all():
                    bad = f"{bad} (non-finite {name})"
                    break
            self.optimizer.zero_grad(set_to_none=True)
            self.state.skipped_in_a_row += 1
            self.state.skipped_total += 1
            record_skip(
                self.output_dir, self.accelerator.process_index, self.state.global_step + 1, bad
            )
            if self.state.skipped_in_a_row >= self.args.optim.max_skipped_steps:
                raise NonFiniteStep(
                    f"{self.state.skipped_in_a_row} consecutive steps skipped for a non-finite {bad}; "
                    f"likely cause: {likely_cause(bad)}",
                    fix_for(bad),
                )
            return bad, grad_norm
        self.optimizer.step()
        self.scheduler.step()
        self.state.skipped_in_a_row = 0
        return None, grad_norm

    def _known(self, batch: TrajectoryBatch, beta: float) -> dict:
        """The replay buffer's part of Z for the importance log Z (`flowhf.training.known_set`)."""
        mode = get_objective(self.settings.objective).logz_mode(self.settings)
        if not (mode and mode.known_set) or self.args.replay.replay_ratio <= 0:
            return {}
        known_log_z, member = known_set(self.replay, batch, beta, self.args.target.alpha)
        return {"known_log_z": known_log_z.to(self.device), "known_member": member.to(self.device)}

    def _remember(
        self,
        batch: TrajectoryBatch,
        reward: torch.Tensor,
        log_reward: torch.Tensor,
        ref_log_prob: torch.Tensor,
    ) -> None:
        if self.args.replay.replay_ratio <= 0:
            return
        for i, tokens in enumerate(batch.completion_lists()):
            if batch.sources[i] != "replay":
                self.replay.add(
                    prompt_key(batch.prompts[i]),
                    tokens,
                    bool(batch.ended_with_eos[i]),
                    float(reward[i]),
                    float(log_reward[i]),
                    float(ref_log_prob[i]),
                )

    def _autocast(self):
        if self.args.model.autocast_bf16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict:
        """Everything an exact resume needs (`flowhf.training.state.trainer_state`)."""
        return trainer_state(self)

    def load_state_dict(self, state: dict) -> None:
        """Restore a `state_dict` taken from a trainer with the same model and settings."""
        restore_trainer_state(self, state)

    # ------------------------------------------------------------------ loop

    def train(
        self,
        resume_from_checkpoint: bool | str | Path | None = None,
        *,
        resume: bool = False,
        overwrite: bool = False,
    ) -> dict:
        """Train until the step budget (max_steps, or num_train_epochs), max_seconds or a
        callback's stop; returns the last step's metrics (`flowhf.training.loop`).

        One run per folder (`flowhf.run_dir`): an output folder holding another run is refused
        unless resumed or ``overwrite`` (delete it). Resuming, as in TRL:
        ``resume_from_checkpoint=True`` (or ``resume=True``) continues from the output folder's
        newest verified checkpoint (none: from step 0); a PATH continues from that checkpoint
        folder (``checkpoints/step-N``) or run folder. The run's config must match the saved one
        (budget and logging keys aside). The folder is locked while the run lasts."""
        source = (
            "latest"
            if resume or resume_from_checkpoint is True
            else (resume_from_checkpoint or None)
        )
        with claim_run_dir(self.output_dir, source is not None, overwrite, self.args.to_dict()):
            return run_training(self, source)

    def add_callback(self, callback) -> None:
        """Add a transformers TrainerCallback (instance or class), as on TRL's trainers."""
        self.callbacks.add(callback)

    def save_model(self, output_dir: str | Path | None = None) -> Path:
        """Save the policy (adapter or full model), tokenizer and heads as a loadable folder
        (default: the run's output_dir), as TRL's save_model does."""
        heads = {name: self.accelerator.unwrap_model(h) for name, h in self.heads.items()}
        meta = {"objective": self.args.objective.objective, "config": self.args.to_dict()}
        return save_policy(
            self.bundle,
            output_dir if output_dir is not None else self.output_dir,
            heads=heads,
            meta=meta,
        )


def _one(tokenizer, processing_class):
    """``tokenizer`` (FlowHF's name) or ``processing_class`` (TRL's), not two different ones."""
    if tokenizer is not None and processing_class is not None and tokenizer is not processing_class:
        raise ValueError(
            "pass the tokenizer once: as tokenizer= or as processing_class= (TRL's name)"
        )
    return tokenizer if tokenizer is not None else processing_class
