"""FlowHFTrainer: GFlowNet fine-tuning of a causal LM, in the shape of a TRL trainer.

    trainer = FlowHFTrainer(model="smollm2", reward_funcs="sentiment", args=config, train_dataset=rows)
    trainer.train()

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

from flowhf.data.loading import load_rows
from flowhf.errors import RewardError
from flowhf.models.saved_run import save_policy
from flowhf.models.loading import PolicyBundle, load_policy
from flowhf.models.lora import LoraSettings
from flowhf.objectives import get_objective
from flowhf.rewards import build_reward
from flowhf.run_dir import claim_run_dir
from flowhf.sampling import completion_log_probs, draw_temperature, sample_completions
from flowhf.sampling.generate import Completions
from flowhf.sampling.prompts import eos_ids, encode_prompts, left_pad
from flowhf.sampling.replay import ReplayBuffer
from flowhf.target import floor_reward, prefix_target_log_reward, target_log_reward
from flowhf.training import checkpoint
from flowhf.training.batch import (
    TrajectoryBatch,
    completions_from_ids,
    completions_from_texts,
    concat_completions,
    fit_prompts,
    step_prompt_rows,
)
from flowhf.training.config import FlowHFConfig
from flowhf.training.log_files import cut_logs_back
from flowhf.training.logging import MetricsLogger, ProgressBar
from flowhf.training.nonfinite import NonFiniteStep, fix_for, likely_cause, record_skip
from flowhf.training.heads import build_heads, head_outputs, heads_read_hidden
from flowhf.training.known_set import known_set
from flowhf.training.loss import ObjectiveInputs, objective_loss
from flowhf.training.optim import build_optimizer, build_scheduler
from flowhf.training.state import restore_trainer_state, trainer_state
from flowhf.training.step_metrics import StepRecord, histogram_tensors, step_metrics


class FlowHFTrainer:
    """Train `model` so it samples completions in proportion to exp(beta r + alpha log p_ref).

    Args:
        model: a model spec ('smollm2', folder, .gguf, Hub id), a PreTrainedModel, or a
            ready `PolicyBundle`.
        reward_funcs: a reward spec string/dict/list (see `flowhf.rewards.build_reward`) or
            a callable `reward(prompts, completions, **columns) -> Tensor[B]`.
        args: FlowHFConfig.
        train_dataset: list of row dicts; default = `args.data.dataset` loaded.
        tokenizer: needed when `model` is a bare PreTrainedModel.
    """

    def __init__(self, model=None, reward_funcs=None, args: FlowHFConfig | None = None, train_dataset=None, tokenizer=None):
        self.args = args or FlowHFConfig()
        cfg = self.args
        self.accelerator = Accelerator(cpu=not torch.cuda.is_available())
        self.device = self.accelerator.device
        self.output_dir = Path(cfg.logging.output_dir)
        # Data and reward first: their errors (a missing column, a reward without prefix scores
        # for FL) are reported before the policy loads, as config errors are.
        self.rows = list(train_dataset) if train_dataset is not None else load_rows(
            cfg.data.dataset, required=[cfg.data.prompt_column], split=cfg.data.split, limit=cfg.data.limit
        )
        self._check_rows()
        self.reward_fn = self._load_reward(reward_funcs if reward_funcs is not None else cfg.target.reward)
        self.bundle = self._load_model(model if model is not None else cfg.model.name, tokenizer)
        self.tokenizer = self.bundle.tokenizer
        self.settings = cfg.objective
        self.beta = cfg.target.beta_per_reward()
        self.heads = build_heads(cfg.objective, self.bundle.model.config.hidden_size)
        self.optimizer = build_optimizer(self.bundle.model, self.heads, cfg.optim)
        self.scheduler = build_scheduler(self.optimizer, cfg.optim)
        self.model, self.optimizer, self.scheduler, *heads = self.accelerator.prepare(
            self.bundle.model, self.optimizer, self.scheduler, *self.heads.values()
        )
        self.heads = dict(zip(self.heads.keys(), heads))
        self.eos_ids = eos_ids(self.bundle.model, self.tokenizer)
        self.pad_id = self.tokenizer.pad_token_id
        self.replay = ReplayBuffer(
            cfg.replay.replay_capacity, cfg.replay.replay_prioritized, cfg.replay.replay_temperature, seed=cfg.optim.seed
        )
        self.state = {"step": 0, "data_cursor": 0, "epoch": 0, "skipped_in_a_row": 0, "skipped_total": 0, "train_seconds": 0.0}
        rank = self.accelerator.process_index  # each process explores with its own stream
        self.rng = random.Random(cfg.optim.seed + 7919 * rank)
        self.generator = torch.Generator(device="cpu").manual_seed(cfg.optim.seed + 7919 * rank)
        self.allowed_tokens = None

    # ------------------------------------------------------------------ construction

    def _load_model(self, model, tokenizer) -> PolicyBundle:
        if isinstance(model, PolicyBundle):
            return model
        m = self.args.model
        lora = LoraSettings(
            r=m.lora_r, alpha=m.lora_alpha, dropout=m.lora_dropout,
            **({"target_modules": m.lora_target_modules} if m.lora_target_modules else {}),
        ) if m.lora else None
        torch.manual_seed(self.args.optim.seed)  # LoRA init is random: make it the seed's
        return load_policy(model, lora=lora, dtype=m.dtype, trust_remote_code=m.trust_remote_code,
                           cache_dir=m.cache_dir, tokenizer=tokenizer)

    def _load_reward(self, spec):
        reward = spec if callable(spec) and not isinstance(spec, (str, dict, list)) else build_reward(spec)
        self.reward_name = spec if isinstance(spec, str) else getattr(spec, "__name__", type(spec).__name__)
        if self.args.target.nonfinite_reward == "floor" and hasattr(reward, "allow_nonfinite"):
            reward.allow_nonfinite = True  # the trainer floors them (and counts them) itself
        if self.args.target.prefix_stride > 1 and hasattr(reward, "set_prefix_stride"):
            reward.set_prefix_stride(self.args.target.prefix_stride)
        needs_prefix = get_objective(self.args.objective.objective).needs_prefix_rewards(self.args.objective)
        if needs_prefix and not hasattr(reward, "score_prefixes"):
            raise ValueError(
                f"objective {self.args.objective.objective} needs prefix rewards but this reward has no score_prefixes; "
                "wrap it with flowhf.rewards (any Reward subclass has one) or set objective.subtb_energies=false / use tb"
            )
        self.needs_prefix = needs_prefix
        return reward

    def _check_rows(self) -> None:
        col = self.args.data.prompt_column
        if not self.rows:
            raise ValueError(f"dataset {self.args.data.dataset!r} has no rows")
        for i, row in enumerate(self.rows):
            if not isinstance(row.get(col), str) or not row[col].strip():
                raise ValueError(f"dataset row {i + 1}: missing or empty prompt column {col!r}; set data.prompt_column")
            off = self.args.sampling.offpolicy_column
            if self.args.sampling.offpolicy_fraction > 0 and not row.get(off):
                raise ValueError(f"dataset row {i + 1}: missing off-policy column {off!r} (sampling.offpolicy_column)")

    # ------------------------------------------------------------------ data

    def next_prompt_rows(self) -> list[dict]:
        """This process's rows for the next step (`flowhf.training.batch.step_prompt_rows`)."""
        n, acc = self.args.sampling.prompts_per_step, self.accelerator
        return step_prompt_rows(self.rows, n, acc.num_processes, acc.process_index, self.args.optim.seed, self.state)

    def build_batch(self, rows: list[dict]) -> tuple[TrajectoryBatch, float]:
        """Prompts x k completions: on-policy (tempered), off-policy column, replay."""
        s, cfg = self.args.sampling, self.args
        k = s.samples_per_prompt
        n_off = round(s.offpolicy_fraction * k)
        prompts = [r[cfg.data.prompt_column] for r in rows]
        # A prompt with nothing in the buffer yet gets on-policy samples in its replay slots.
        n_replay = [round(cfg.replay.replay_ratio * k) if self.replay.size(p) else 0 for p in prompts]
        context = getattr(self.bundle.model.config, "max_position_embeddings", None)
        encoded, self._truncated = fit_prompts(encode_prompts(self.tokenizer, prompts, cfg.model.chat_template), prompts,
                                               context, s.max_new_tokens, s.long_prompts)
        order = [(g, "policy") for g in range(len(rows)) for _ in range(k - n_off - n_replay[g])]
        temperature = draw_temperature(s.explore_prob, (s.temperature_low, s.temperature_high), self.rng)
        pids, pmask = left_pad([encoded[g] for g, _ in order], self.pad_id)
        policy = self.accelerator.unwrap_model(self.model)
        with self._autocast():
            sampled = sample_completions(policy, pids.to(self.device), pmask.to(self.device), s.max_new_tokens,
                                         self.eos_ids, self.pad_id, temperature, s.top_p, self.allowed_tokens,
                                         self.generator if self.device.type == "cpu" else None)
        parts = [Completions(sampled.ids.cpu(), sampled.mask.cpu(), sampled.ended_with_eos.cpu(), temperature, sampled.log_q.cpu())]
        if n_off:
            texts = [rows[g][s.offpolicy_column] for g in range(len(rows)) for _ in range(n_off)]
            order += [(g, "offpolicy") for g in range(len(rows)) for _ in range(n_off)]
            parts.append(completions_from_texts(self.tokenizer, texts, s.max_new_tokens, self.eos_ids[0], self.pad_id))
        if any(n_replay):
            drawn = self.replay.sample([p for p, n in zip(prompts, n_replay) if n], [n for n in n_replay if n])
            groups_with_replay = [g for g, n in enumerate(n_replay) if n]
            items = [(g, item) for g, chunk in zip(groups_with_replay, drawn) for item in chunk]
            order += [(g, "replay") for g, _ in items]
            parts.append(completions_from_ids([list(it.token_ids) for _, it in items],
                                              [it.ended_with_eos for _, it in items], self.pad_id))
        comp = concat_completions(parts, self.pad_id)
        groups = [g for g, _ in order]
        pids, pmask = left_pad([encoded[g] for g in groups], self.pad_id)
        columns = {c: [rows[g].get(c) for g in groups] for c in (cfg.data.reward_columns or [])}
        batch = TrajectoryBatch(pids, pmask, comp.ids, comp.mask, comp.ended_with_eos, torch.as_tensor(groups),
                                [prompts[g] for g in groups], [src for _, src in order], columns, comp.log_q)
        return batch, temperature

    # ------------------------------------------------------------------ the step

    def training_step(self) -> dict:
        """sample -> score -> target -> residuals -> update. Returns the step's metrics."""
        cfg, t0 = self.args, time.perf_counter()
        step = self.state["step"]
        # 1. sample
        batch, temperature = self.build_batch(self.next_prompt_rows())
        t_sample = time.perf_counter()
        # 2. score: rewards of the texts (and of every prefix for FL / SubTB energies)
        texts = self.tokenizer.batch_decode(batch.completion_lists(), skip_special_tokens=True)
        columns = dict(batch.columns)
        if getattr(self.reward_fn, "uses_completion_ids", False):  # rewards defined on token ids
            columns["completion_ids"] = batch.completion_lists()
        raw = self.reward_fn(batch.prompts, texts, **columns).float().cpu()  # [B]
        n_nonfinite = int((~torch.isfinite(raw)).sum())
        reward = floor_reward(self._finite(raw, batch, texts), cfg.target.reward_floor)
        prefix_reward = None
        if self.needs_prefix:
            prefix_reward = self.reward_fn.score_prefixes(batch.prompts, batch.completion_lists(), self.tokenizer, **batch.columns)
            prefix_reward = self._finite(prefix_reward.float().cpu()[:, : batch.ids.shape[1] + 1], batch, texts, "prefix ")
            prefix_reward = floor_reward(prefix_reward, cfg.target.reward_floor)
        t_reward = time.perf_counter()
        # 3. target log R = beta r + alpha log p_ref (reference log-probs also give the KL metric)
        dev = self.device
        ids, mask, pids, pmask = batch.ids.to(dev), batch.mask.to(dev), batch.prompt_ids.to(dev), batch.prompt_mask.to(dev)
        need_hidden = heads_read_hidden(self.heads)
        with self.bundle.reference_mode() as reference, self._autocast():
            ref_log_pf = completion_log_probs(reference, pids, pmask, ids, mask, self.allowed_tokens).log_pf.float()
        beta = self.beta(step)
        log_reward = target_log_reward(reward.to(dev), beta, cfg.target.alpha, ref_log_pf, mask)  # [B]
        prefix_log_reward = None
        if prefix_reward is not None:
            prefix_log_reward = prefix_target_log_reward(prefix_reward.to(dev), beta, cfg.target.alpha, ref_log_pf, mask)
        # 4. residuals under the current policy (log-probs recomputed with gradient)
        self.model.train()
        with self._autocast():
            scores = completion_log_probs(self.model, pids, pmask, ids, mask, self.allowed_tokens,
                                          with_hidden=need_hidden, with_entropy=True)
        inputs = ObjectiveInputs(log_pf=scores.log_pf.float(), mask=mask, log_reward=log_reward,
                                 group_ids=batch.group_ids.to(dev), prefix_log_reward=prefix_log_reward,
                                 reward=beta * reward.to(dev), ref_log_pf=ref_log_pf, log_q=batch.log_q.to(dev),
                                 **self._known(batch, beta), **head_outputs(self.heads, scores, pmask))
        out = objective_loss(self.settings, inputs)
        # 5. update, never with a non-finite loss or gradient
        skipped, grad_norm = self._update(out.loss, {"log_reward": log_reward, "log_pf": inputs.log_pf, "log_z": out.log_z})
        t_end = time.perf_counter()
        if skipped is None:  # a skipped step's rows (non-finite values) never enter the replay buffer
            self._remember(batch, reward, log_reward, (ref_log_pf * mask).sum(dim=1))
        metrics = step_metrics(StepRecord(
            batch=batch, reward=reward, log_reward=log_reward, scores=scores, ref_log_pf=ref_log_pf, out=out, beta=beta,
            temperature=temperature, skipped=skipped, grad_norm=grad_norm, lr=self.optimizer.param_groups[0]["lr"],
            skipped_total=self.state["skipped_total"], times=(t0, t_sample, t_reward, t_end),
        ))
        self._last_hist = histogram_tensors(scores.log_pf, mask, inputs.log_flow)
        if cfg.target.nonfinite_reward == "floor":
            metrics["train/nonfinite_rewards"] = float(n_nonfinite)
        if self._truncated:
            metrics["train/truncated_prompts"] = float(self._truncated)
        return metrics

    def _finite(self, values: torch.Tensor, batch: TrajectoryBatch, texts: list[str], what: str = "") -> torch.Tensor:
        """``values`` when all finite. Otherwise, by target.nonfinite_reward: an error naming the
        reward, the prompt and the completion, or the reward floor in their place."""
        bad = ~torch.isfinite(values)
        if not bad.any():
            return values
        if self.args.target.nonfinite_reward == "floor":
            return torch.where(bad, torch.full_like(values, self.args.target.reward_floor), values)
        row = int(bad.reshape(len(values), -1).any(1).nonzero()[0])
        value = values.reshape(len(values), -1)[row][bad.reshape(len(values), -1)[row]][0].item()
        raise RewardError(
            f"reward {self.reward_name!r} gave a {what}value of {value} at step {self.state['step'] + 1} for prompt "
            f"{batch.prompts[row][:80]!r} and completion {texts[row][:80]!r}; NaN and ±inf rewards are errors by default")

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
            for name, value in named.items():  # name the culprit upstream of the loss if there is one
                if value is not None and not torch.isfinite(value.detach()).all():
                    bad = f"{bad} (non-finite {name})"
                    break
            self.optimizer.zero_grad(set_to_none=True)
            self.state["skipped_in_a_row"] += 1
            self.state["skipped_total"] += 1
            record_skip(self.output_dir, self.accelerator.process_index, self.state["step"] + 1, bad)
            if self.state["skipped_in_a_row"] >= self.args.optim.max_skipped_steps:
                raise NonFiniteStep(
                    f"{self.state['skipped_in_a_row']} consecutive steps skipped for a non-finite {bad}; "
                    f"likely cause: {likely_cause(bad)}", fix_for(bad))
            return bad, grad_norm
        self.optimizer.step()
        self.scheduler.step()
        self.state["skipped_in_a_row"] = 0
        return None, grad_norm

    def _known(self, batch: TrajectoryBatch, beta: float) -> dict:
        """The replay buffer's part of Z for the importance log Z (`flowhf.training.known_set`)."""
        mode = get_objective(self.settings.objective).logz_mode(self.settings)
        if not (mode and mode.known_set) or self.args.replay.replay_ratio <= 0:
            return {}
        known_log_z, member = known_set(self.replay, batch, beta, self.args.target.alpha)
        return {"known_log_z": known_log_z.to(self.device), "known_member": member.to(self.device)}

    def _remember(self, batch: TrajectoryBatch, reward: torch.Tensor, log_reward: torch.Tensor, ref_log_prob: torch.Tensor) -> None:
        if self.args.replay.replay_ratio <= 0:
            return
        for i, tokens in enumerate(batch.completion_lists()):
            if batch.sources[i] != "replay":
                self.replay.add(batch.prompts[i], tokens, bool(batch.ended_with_eos[i]), float(reward[i]),
                                float(log_reward[i]), float(ref_log_prob[i]))

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

    def train(self, resume: bool = False, overwrite: bool = False) -> dict:
        """Train until max_steps / max_seconds; returns the last step's metrics.

        One run per folder (`flowhf.run_dir`): an output folder holding another run is refused
        unless ``resume`` (continue it; its config must match) or ``overwrite`` (delete it).
        The folder is locked while the run lasts."""
        with claim_run_dir(self.output_dir, resume, overwrite, self.args.to_dict()):
            return self._train(resume)

    def _train(self, resume: bool) -> dict:
        cfg = self.args
        self.output_dir.mkdir(parents=True, exist_ok=True)
        main = self.accelerator.is_main_process  # one process writes logs and the model
        if resume:
            checkpoint.resume_latest(self)
            if main:  # rows logged after the checkpoint are logged again below: drop them first
                dropped = cut_logs_back(self.output_dir, self.state["step"])
                if dropped:
                    print(f"[flowhf] logs cut back to step {self.state['step']}: {dropped}")
        checkpoint.write_config(self)
        logger = MetricsLogger(self.output_dir, report_to=cfg.logging.report_to or ["jsonl", "csv"],
                               histogram_every=cfg.logging.histogram_every,
                               purge_step=self.state["step"] + 1 if resume else None) if main else None
        bar = ProgressBar(cfg.optim.max_steps, initial=self.state["step"], disable=not (cfg.logging.progress_bar and main))
        last = {}
        try:
            while self.state["step"] < cfg.optim.max_steps:
                if self._out_of_time():
                    break
                metrics = self.training_step()
                self.state["step"] += 1
                self.state["train_seconds"] += metrics["train/step_time"]
                metrics["train/elapsed_seconds"] = self.state["train_seconds"]  # budget clock, as the baselines log
                step = self.state["step"]
                last = metrics
                if logger and (step % cfg.logging.logging_steps == 0 or step == cfg.optim.max_steps):
                    logger.log(step, metrics)
                if logger:
                    logger.log_histograms(step, self._last_hist)
                bar.update(step, metrics)
                if cfg.logging.save_steps and step % cfg.logging.save_steps == 0:
                    checkpoint.save_checkpoint(self)
        finally:
            bar.close()
            if logger:
                logger.close()
        if self.state["step"] > 0 and self.state["skipped_total"] >= self.state["step"]:
            raise NonFiniteStep(f"no update was applied: all {self.state['step']} steps were skipped for non-finite values "
                                f"(see {self.output_dir / 'skipped_steps.jsonl'})", "fix the quantity named there")
        if not (cfg.logging.save_steps and self.state["step"] % cfg.logging.save_steps == 0 and last):
            checkpoint.save_checkpoint(self)  # (unless the loop's last step just saved it)
        self.accelerator.wait_for_everyone()
        if main:
            self.save_model(self.output_dir)
        return last

    def _out_of_time(self) -> bool:
        """max_seconds reached; with several processes, all stop together (the slowest decides)."""
        from flowhf.distributed import all_max

        limit = self.args.optim.max_seconds
        return limit is not None and all_max(int(self.state["train_seconds"] >= limit)) > 0

    def save_model(self, directory: str | Path) -> Path:
        """Save the policy (adapter or full model), tokenizer and heads as a loadable folder."""
        heads = {name: self.accelerator.unwrap_model(h) for name, h in self.heads.items()}
        meta = {"objective": self.args.objective.objective, "config": self.args.to_dict()}
        return save_policy(self.bundle, directory, heads=heads, meta=meta)
