"""FlowHFTrainer: GFlowNet fine-tuning of a causal LM, in the shape of TRL's GRPOTrainer.

    trainer = FlowHFTrainer(model="smollm2", reward_funcs="sentiment", args=config, train_dataset=rows)
    trainer.train()

A TRL GRPO script runs with only the class names changed: TRL's config names
(`flowhf.config.trl_names`), reward functions called TRL's way (`flowhf.rewards.functions`),
text or conversational datasets (`flowhf.training.rows`), ``train(resume_from_checkpoint=)``,
``save_model``, ``state.global_step`` / ``state.log_history`` and TrainerCallbacks
(`flowhf.training.loop`, `flowhf.training.callbacks`).

The trainer is composed of three parts, each given only its own config group(s), and a
policy they share (`flowhf.training.policy`):

- the rollout (`flowhf.training.rollout`; sampling, replay): prompts, samplers, replay buffer;
- the scorer (`flowhf.training.scorer`; target): rewards and the target log R;
- the update (`flowhf.training.update`; objective, optim): objective inputs, loss, step.

One step reads top to bottom in `training_step`: sample -> score -> target -> update. Each
part keeps its own state (`state_dict`), which checkpoints save and restore. It runs under
`accelerate` (one process by default; `accelerate launch` or `torchrun` for more, each
process sampling its own prompts).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from accelerate import Accelerator

from flowhf.config.training import FlowHFConfig
from flowhf.config.trl_names import refuse_eval_dataset, with_peft_config
from flowhf.models.card import RunSummary
from flowhf.models.checkpointing import enable_activation_checkpointing
from flowhf.models.loading import PolicyBundle, load_policy, tokenizer_beside
from flowhf.models.lora import LoraSettings, lora_shape
from flowhf.models.saved_run import save_policy
from flowhf.run_dir import claim_run_dir
from flowhf.training.batch import TrajectoryBatch, steps_for_epochs
from flowhf.training.callbacks import CallbackList
from flowhf.training.checkpoint import RunCheckpoints
from flowhf.training.log_files import read_metrics
from flowhf.training.loop import run_training
from flowhf.training.nonfinite import NonFiniteStep  # noqa: F401  (importable here, as before)
from flowhf.training.policy import Policy, Trajectories
from flowhf.training.rollout import PromptRows, Rollout
from flowhf.training.rows import reward_columns, training_rows
from flowhf.training.sampler import sampling_dtype
from flowhf.training.scorer import Scorer, build_reward_functions
from flowhf.training.state import RunState
from flowhf.training.step_metrics import StepRecord, histogram_tensors, step_metrics
from flowhf.training.update import Update


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
        rows = training_rows(train_dataset, cfg)
        prompts = PromptRows(
            rows,
            cfg.data.prompt_column,
            reward_columns(rows, cfg.data.prompt_column),
            cfg.optim.seed,
        )
        self.state = self._new_state(len(rows))
        reward = build_reward_functions(
            reward_funcs if reward_funcs is not None else cfg.target.reward,
            cfg.target,
            columns=cfg.data.reward_columns or [],
            trainer_state=self.state,
            processing_classes=reward_processing_classes,
            trust_remote_code=cfg.model.trust_remote_code,
        )
        self.bundle = self._load_model(
            model if model is not None else cfg.model.name, _one(tokenizer, processing_class)
        )
        self.tokenizer = self.bundle.tokenizer
        if cfg.model.gradient_checkpointing:
            enable_activation_checkpointing(self.bundle.model)
        self.policy = Policy(
            self.bundle,
            self.accelerator,
            autocast_bf16=cfg.model.autocast_bf16,
            chat_template=cfg.model.chat_template,
            sample_dtype=sampling_dtype(cfg),
        )
        self.update = Update(
            cfg.objective, cfg.optim, self.policy, self.state.max_steps, self.output_dir
        )
        self.model = self.policy.model  # as accelerate prepared it (with the optimiser and heads)
        self.rollout = Rollout(cfg.sampling, cfg.replay, self.policy, prompts)
        self.scorer = Scorer(cfg.target, reward, self.policy, self.update.needs_prefix_rewards)
        self.callbacks = CallbackList(callbacks)
        self.last_histograms: dict = {}  # the last step's (the loop logs them)

    # ------------------------------------------------------------------ the parts' objects

    rows = property(lambda self: self.rollout.data.rows, doc="the training rows")
    columns = property(lambda self: self.rollout.data.columns, doc="the reward columns")
    replay = property(lambda self: self.rollout.replay, doc="the rollout's replay buffer")
    samplers = property(lambda self: self.rollout.samplers, doc="the rollout's samplers")
    heads = property(lambda self: self.update.heads, doc="the update's heads, by name")
    optimizer = property(lambda self: self.update.optimizer)
    scheduler = property(lambda self: self.update.scheduler)
    eos_ids = property(lambda self: self.policy.eos_ids, doc="every id that ends a completion")

    # ------------------------------------------------------------------ construction

    def _new_state(self, rows: int) -> RunState:
        """Counters, and TrainerState's fields as TRL fills them (max_steps: the step budget)."""
        cfg, acc, s = self.args, self.accelerator, self.args.sampling
        epochs = cfg.optim.num_train_epochs
        steps = (
            steps_for_epochs(epochs, rows, s.prompts_per_step, acc.num_processes)
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
        lora = LoraSettings(**lora_shape(m)) if m.lora else None
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

    # ------------------------------------------------------------------ the step

    def next_prompt_rows(self) -> list[dict]:
        """This process's rows for the next step (`flowhf.training.batch.step_prompt_rows`)."""
        return self.rollout.next_prompt_rows(self.state)

    def build_batch(self, rows: list[dict]) -> tuple[TrajectoryBatch, float]:
        """Prompts x k completions and the on-policy temperature (`Rollout.draw`)."""
        drawn = self.rollout.draw(rows)
        return drawn.batch, drawn.temperature

    def training_step(self) -> dict:
        """sample -> score -> target -> update. Returns the step's metrics."""
        t0, step = time.perf_counter(), self.state.global_step
        drawn = self.rollout.draw(self.next_prompt_rows())  # 1. sample
        batch = drawn.batch
        t_sample = time.perf_counter()
        # 2. score: rewards of the texts (and of every prefix for FL / SubTB energies)
        rewards = self.scorer.rewards(batch, step + 1)
        self.state.completions_scored += len(batch.prompts) * self.accelerator.num_processes
        t_reward = time.perf_counter()
        # 3. target log R = beta r + alpha log p_ref (reference log-probs also give the KL metric)
        x = Trajectories.of(batch, self.device)
        target = self.scorer.target(x, rewards, step)
        known = (
            self.rollout.known_set(batch, target.beta, self.args.target.alpha)
            if self.update.reads_known_set
            else None
        )
        # 4. update under the current policy, never with a non-finite loss or gradient
        done = self.update.step(x, target, known, self.state)
        t_end = time.perf_counter()
        if done.skipped is None:  # a skipped step's rows (non-finite values) never enter replay
            self.rollout.remember(batch, target)
        metrics = step_metrics(
            StepRecord(
                batch=batch,
                reward=target.reward,
                log_reward=target.log_reward,
                scores=done.scores,
                ref_log_pf=target.ref_log_pf,
                out=done.out,
                beta=target.beta,
                temperature=drawn.temperature,
                skipped=done.skipped,
                grad_norm=done.grad_norm,
                lr=done.lr,
                skipped_total=self.state.skipped_total,
                times=(t0, t_sample, t_reward, t_end),
            )
        )
        metrics.update(self.scorer.metrics(rewards))
        self.last_histograms = histogram_tensors(done.scores.log_pf, x.mask, done.inputs.log_flow)
        if drawn.truncated:
            metrics["train/truncated_prompts"] = float(drawn.truncated)
        return metrics

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict:
        """Everything an exact resume needs: the run's counters and the torch RNG, and each
        part's own state (`flowhf.training.checkpoint` lays them out on disk)."""
        return {
            "run": {"counters": self.state.counters(), "torch_rng": torch.get_rng_state()},
            "rollout": self.rollout.state_dict(),
            "update": self.update.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a `state_dict` taken from a trainer with the same model and settings."""
        self.update.load_state_dict(state["update"])  # first: a model mismatch changes nothing
        torch.set_rng_state(state["run"]["torch_rng"])
        self.rollout.load_state_dict(state["rollout"])
        self.state.load_counters(state["run"]["counters"], len(self.rows))

    @property
    def checkpoints(self) -> RunCheckpoints:
        """This process's view of the run folder's checkpoints (`flowhf.training.checkpoint`)."""
        acc = self.accelerator
        return RunCheckpoints(
            self.output_dir,
            acc.process_index,
            acc.num_processes,
            self.args.logging.save_total_limit,
            acc.wait_for_everyone,
        )

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
        (default: the run's output_dir), as TRL's save_model does; its README.md is the model
        card (`flowhf.models.card`), with the last logged metrics."""
        heads = {name: self.accelerator.unwrap_model(h) for name, h in self.heads.items()}
        meta = {"objective": self.args.objective.objective, "config": self.args.to_dict()}
        return save_policy(
            self.bundle,
            output_dir if output_dir is not None else self.output_dir,
            heads=heads,
            meta=meta,
            summary=RunSummary(self._last_metrics(), getattr(self.scorer.reward, "name", None)),
        )

    def _last_metrics(self) -> dict:
        """The last row of the run's metrics.jsonl (else of state.log_history; none: {})."""
        path = self.output_dir / "metrics.jsonl"
        rows = read_metrics(path) if path.is_file() else self.state.log_history
        return dict(rows[-1]) if rows else {}


def _one(tokenizer, processing_class):
    """``tokenizer`` (FlowHF's name) or ``processing_class`` (TRL's), not two different ones."""
    if tokenizer is not None and processing_class is not None and tokenizer is not processing_class:
        raise ValueError(
            "pass the tokenizer once: as tokenizer= or as processing_class= (TRL's name)"
        )
    return tokenizer if tokenizer is not None else processing_class
