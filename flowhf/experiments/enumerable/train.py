"""Train a tiny LM on an enumerable target with any objective and measure it exactly.

Token layout of the tiny model: symbols 0..V-1, EOS = V, prompt tokens V+1..V+n_prompts.
Each prompt is one token; the action space is symbols + EOS (prompt tokens masked out in
sampling, in the loss and in the exact evaluation alike).

The training step is the trainer's: sample (tempered exploration) -> recompute log-probs
-> target log R (+ prefix log R, `flowhf.training.scorer.step_target`) -> the objective's
inputs (`flowhf.training.update.step_inputs`, with the reward) ->
`flowhf.training.loss.objective_loss` -> update, with heads, optimiser groups and
learning-rate decay built by the trainer's own functions (`flowhf.training.heads`,
`flowhf.training.optim`).
"""

from __future__ import annotations

import copy
import random
import time
from dataclasses import asdict, dataclass
from functools import partial

import numpy as np
import torch

from flowhf.config.fields import AT_LEAST_ONE, POSITIVE, PROBABILITY, OneOf, help_field as _f
from flowhf.config.training import ObjectiveArgs, OptimArgs
from flowhf.experiments.enumerable.exact import compare, exact_log_probs
from flowhf.experiments.enumerable.targets import EnumerableTarget
from flowhf.models.tiny import tiny_llama
from flowhf.objectives import get_objective
from flowhf.sampling import (
    SampleSettings,
    completion_log_probs,
    draw_temperature,
    sample_completions,
)
from flowhf.sampling.fast import FastSampler
from flowhf.training.heads import build_heads, heads_read_hidden
from flowhf.training.loss import objective_loss
from flowhf.training.optim import build_optimizer, decay_factor, set_lr_factor
from flowhf.training.policy import Trajectories
from flowhf.training.scorer import step_target
from flowhf.training.update import step_inputs


@dataclass
class ToyConfig:
    """One exact-target run (flags of `flowhf exact`; ranges checked by `flowhf.config.fields.build_dataclass`)."""

    objective: str = _f("tb", "a registered objective (flowhf.objectives.OBJECTIVES).")
    logz: str = _f(
        "batch",
        "log Z estimator of objectives that take one (TB): scalar | prompt | batch | importance.",
    )
    alpha: float = _f(0.0, "weight of log p_ref (the initial model) in the target.")
    beta: float = _f(1.0, "weight of the target file's log_reward.")
    steps: int | None = _f(None, "number of updates (or use seconds).", allowed=AT_LEAST_ONE)
    seconds: float | None = _f(None, "wall-clock training budget.", allowed=POSITIVE)
    seed: int = _f(0, "seed of model init, sampling and exploration.")
    samples_per_prompt: int = _f(128, "k samples of each prompt per batch.", allowed=AT_LEAST_ONE)
    lr: float = _f(2e-3, "policy learning rate (Adam).", allowed=POSITIVE)
    head_lr: float = _f(1e-2, "flow head / prompt log Z head learning rate.", allowed=POSITIVE)
    logz_lr: float = _f(5e-2, "scalar log Z learning rate.", allowed=POSITIVE)
    lr_decay: str = _f(
        "cosine",
        "constant | linear | cosine: anneal all learning rates to 0 over the budget (steps or seconds).",
        allowed=OneOf(("constant", "linear", "cosine")),
    )
    explore_prob: float = _f(0.5, "probability of a tempered batch.", allowed=PROBABILITY)
    temperature_low: float = _f(1.0, "tempered sampling range, low.", allowed=POSITIVE)
    temperature_high: float = _f(2.0, "tempered sampling range, high.", allowed=POSITIVE)
    subtb_lambda: float = _f(0.9, "SubTB lambda.", allowed=POSITIVE)
    penalty: str = _f("squared", "squared | huber.", allowed=OneOf(("squared", "huber")))
    hidden_size: int = _f(64, "tiny model width.", allowed=AT_LEAST_ONE)
    num_layers: int = _f(3, "tiny model depth.", allowed=AT_LEAST_ONE)
    eval_every_seconds: float = _f(30.0, "exact TV checkpoints for the curve.", allowed=POSITIVE)
    threads: int = _f(1, "torch CPU threads.", allowed=AT_LEAST_ONE)
    sampler: str = _f(
        "plain",
        "plain | fast: the trainer's sampling.sampler (fast: static KV cache, one log-softmax "
        "and an inverse-CDF draw per token; here float32, no LoRA).",
        allowed=OneOf(("plain", "fast")),
    )

    def __post_init__(self) -> None:
        if (self.steps is None) == (self.seconds is None):
            raise ValueError("give exactly one of steps or seconds")
        k = get_objective(self.objective).group_size(self.objective_args())
        if self.samples_per_prompt < k:
            raise ValueError(
                f"objective {self.objective} (logz={self.logz}) needs samples_per_prompt >= {k}"
            )

    def objective_args(self) -> ObjectiveArgs:
        """The trainer's objective settings for this run (SubTB always forward-looking here)."""
        return ObjectiveArgs(
            objective=self.objective,
            logz=self.logz,
            penalty=self.penalty,
            subtb_lambda=self.subtb_lambda,
        )

    def optim_args(self) -> OptimArgs:
        """The trainer's optimiser settings: Adam (no weight decay), the toy's learning rates."""
        return OptimArgs(
            learning_rate=self.lr,
            head_learning_rate=self.head_lr,
            logz_learning_rate=self.logz_lr,
            weight_decay=0.0,
        )


@dataclass
class ToyResult:
    config: dict
    target: str
    completions_per_prompt: int
    steps: int
    seconds: float
    tv: float
    kl_target_model: float
    jsd: float
    modes_found: int
    modes_total: int
    log_z_final: float
    log_z_true: float
    per_prompt: list[dict]
    curve: list[dict]
    log_z_curve: list[dict]
    diverged: bool


class ToyExperiment:
    """A tiny LM, its frozen reference copy, heads and the target's lookup tables."""

    def __init__(self, target: EnumerableTarget, config: ToyConfig):
        self.target, self.config = target, config
        torch.manual_seed(config.seed)
        self.rng = random.Random(config.seed)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.space = target.space
        V, n_prompts = target.vocab_size, target.n_prompts
        self.eos_id, self.vocab = V, V + 1 + n_prompts
        self.allowed = torch.zeros(self.vocab, dtype=torch.bool)
        self.allowed[: V + 1] = True
        self.model = tiny_llama(
            self.vocab,
            seed=config.seed,
            hidden_size=config.hidden_size,
            num_layers=config.num_layers,
        )
        self.reference = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.table = torch.as_tensor(target.log_reward_table())  # [n_prompts, N] float64
        self.settings = config.objective_args()
        self.heads = build_heads(self.settings, config.hidden_size)
        self.optimizer = build_optimizer(self.model, self.heads, config.optim_args())
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]
        self.ref_table = None  # exact log p_ref per prompt, computed on demand when alpha != 0
        self.last_log_z = torch.zeros(n_prompts)
        self.reports_log_z = get_objective(config.objective).logz_label(self.settings) != "none"
        # the fast sampler's float32 copy of an adapter-free model shares every weight with it
        self.sample = (
            FastSampler(self.model).sample
            if config.sampler == "fast"
            else partial(sample_completions, self.model)
        )

    def set_lr_factor(self, factor: float) -> None:
        set_lr_factor(self.optimizer, self.base_lrs, factor)

    def prompt_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        k, n = self.config.samples_per_prompt, self.target.n_prompts
        group_ids = torch.arange(n).repeat_interleave(k)  # [B]
        return (self.target.vocab_size + 1 + group_ids).unsqueeze(1), group_ids  # [B, 1], [B]

    def step(self) -> dict:
        cfg = self.config
        prompt_ids, group_ids = self.prompt_batch()
        prompt_mask = torch.ones_like(prompt_ids)
        temperature = draw_temperature(
            cfg.explore_prob, (cfg.temperature_low, cfg.temperature_high), self.rng
        )
        draw = SampleSettings(
            self.space.max_len, self.eos_id, self.eos_id, temperature, allowed_tokens=self.allowed
        )
        comp = self.sample(prompt_ids, prompt_mask, draw, self.generator)
        scores = completion_log_probs(
            self.model,
            prompt_ids,
            prompt_mask,
            comp.ids,
            comp.mask,
            self.allowed,
            with_hidden=heads_read_hidden(self.heads),
        )
        with torch.no_grad():
            ref_log_pf = completion_log_probs(
                self.reference, prompt_ids, prompt_mask, comp.ids, comp.mask, self.allowed
            ).log_pf
        content_len = (comp.lengths - comp.ended_with_eos.long()).numpy()  # [B]
        symbols = comp.ids.clamp(
            max=self.target.vocab_size - 1
        ).numpy()  # EOS/pad never read: cut by length
        prefix_idx = torch.as_tensor(self.space.prefix_indices(symbols, content_len))  # [B, T+1]
        prefix_r = self.table[group_ids.unsqueeze(1), prefix_idx]  # [B, T+1]
        final_r = prefix_r[:, -1]  # [B] (prefix past the end repeats the full string)
        # the trainer's target and inputs (no replay here, so no known set)
        target = step_target(final_r, prefix_r, cfg.beta, cfg.alpha, ref_log_pf, comp.mask)
        x = Trajectories(prompt_ids, prompt_mask, comp.ids, comp.mask, group_ids, comp.log_q)
        out = objective_loss(self.settings, step_inputs(x, target, scores, self.heads))
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        self.optimizer.step()
        per_prompt = torch.zeros(self.target.n_prompts, dtype=torch.float64).index_add_(
            0, group_ids, out.log_z.double()
        )
        self.last_log_z = per_prompt / cfg.samples_per_prompt
        return {
            "loss": float(out.loss.detach()),
            "log_z": float(self.last_log_z.mean()),
            "temperature": temperature,
        }

    def exact_target_log_reward(self, prompt: int) -> np.ndarray:
        table = self.table[prompt].numpy() * self.config.beta
        if self.config.alpha != 0.0:
            table = table + self.config.alpha * exact_log_probs(
                self.reference,
                [self.target.vocab_size + 1 + prompt],
                self.space,
                self.eos_id,
                self.allowed,
            )
        return table

    def evaluate(self) -> list[dict]:
        rows = []
        for p in range(self.target.n_prompts):
            model_lp = exact_log_probs(
                self.model, [self.target.vocab_size + 1 + p], self.space, self.eos_id, self.allowed
            )
            c = compare(self.space, self.exact_target_log_reward(p), model_lp)
            rows.append({"prompt": p, **asdict(c), "log_z_final": float(self.last_log_z[p])})
        return rows


def _over_budget(config: ToyConfig, step: int, elapsed: float) -> bool:
    """The run's budget (steps or seconds) is spent."""
    if config.steps is not None:
        return step >= config.steps
    return elapsed >= config.seconds


def _tv_point(step: int, seconds: float, rows: list[dict]) -> dict:
    """A point of the TV curve from `ToyExperiment.evaluate`'s rows."""
    return {
        "step": step,
        "seconds": round(seconds, 2),
        "tv": float(np.mean([r["tv"] for r in rows])),
    }


def run_toy(target: EnumerableTarget, config: ToyConfig, progress=None) -> ToyResult:
    """Train with `config` on `target` and compare the model with the target exactly."""
    torch.set_num_threads(config.threads)
    exp = ToyExperiment(target, config)
    curve, log_z_curve = [], []
    start = last_eval = time.perf_counter()
    step, diverged = 0, False
    while True:
        elapsed = time.perf_counter() - start
        if _over_budget(config, step, elapsed):
            break
        if config.lr_decay != "constant":
            fraction = step / config.steps if config.steps is not None else elapsed / config.seconds
            exp.set_lr_factor(decay_factor(config.lr_decay, fraction))
        info = exp.step()
        step += 1
        if not np.isfinite(info["loss"]) or not np.isfinite(info["log_z"]) and exp.reports_log_z:
            diverged = True
            break
        if step % 50 == 0:
            log_z_curve.append(
                {
                    "step": step,
                    "seconds": round(elapsed, 2),
                    "log_z": info["log_z"],
                    "loss": info["loss"],
                }
            )
        if time.perf_counter() - last_eval >= config.eval_every_seconds:
            eval_start = time.perf_counter()
            curve.append(_tv_point(step, elapsed, exp.evaluate()))
            start += time.perf_counter() - eval_start  # evaluation time is not training time
            last_eval = time.perf_counter()
            if progress:
                progress(step, elapsed, curve[-1]["tv"], info)
    seconds = time.perf_counter() - start
    rows = exp.evaluate()
    mean = lambda key: float(np.mean([r[key] for r in rows]))  # noqa: E731
    curve.append(_tv_point(step, seconds, rows))
    return ToyResult(
        config=asdict(config),
        target=target.name,
        completions_per_prompt=target.space.size,
        steps=step,
        seconds=round(seconds, 2),
        tv=mean("tv"),
        kl_target_model=mean("kl_target_model"),
        jsd=mean("jsd"),
        modes_found=int(sum(r["modes_found"] for r in rows)),
        modes_total=int(sum(r["modes_total"] for r in rows)),
        log_z_final=mean("log_z_final"),
        log_z_true=mean("log_z_true"),
        per_prompt=rows,
        curve=curve,
        log_z_curve=log_z_curve,
        diverged=diverged,
    )
