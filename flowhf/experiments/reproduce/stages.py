"""One function per `flowhf reproduce` stage; each returns the JSON result written to DONE.

A stage reads the results of earlier stages from ``ctx.results`` (the SFT model folder, the
SE reward spec) so every method starts from the same SFT model with the same reward.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowhf.config.preset import METHODS, Preset
from flowhf.experiments import CONFIGS


@dataclass
class Context:
    """What every stage sees: the preset, the output dir, earlier results, the --resume flag."""

    preset: Preset
    out: Path
    results: dict[str, dict] = field(default_factory=dict)
    resume: bool = False

    def stage_dir(self, stage: str) -> Path:
        return self.out / stage

    def model_dir(self, method: str) -> str:
        """Folder of the trained model of ``method`` (evaluated in the eval stage)."""
        return str(self.results[method]["model_dir"])

    def se_reward(self) -> str:
        return str(self.results["reward_model"]["reward"])

    def gold_reward(self) -> str:
        """The evaluation's headline judge (the SE reward itself when the preset has no gold)."""
        return str(self.results["reward_model"].get("gold_reward") or self.se_reward())

    def reward_scale(self) -> float:
        """Std of the SE reward over the training answers (1.0 when the preset gives the reward)."""
        return float(self.results["reward_model"].get("score_std") or 1.0)

    def judge_scales(self) -> dict[str, tuple[float, float]]:
        """{"gold": (mean, std), "proxy": (mean, std)} of each trained reward model's scores over its
        training answers (the z-units of `flowhf.evaluation.gold_proxy`); empty for given rewards."""
        rm = self.results["reward_model"]
        return {
            name: (rm[f"{prefix}score_mean"], rm[f"{prefix}score_std"])
            for name, prefix in (("gold", "gold_"), ("proxy", ""))
            if rm.get(f"{prefix}score_std")
        }


def _lora(p: Preset) -> dict | None:
    return {} if p.lora else None


def method_budget(p: Preset) -> dict:
    """The one budget every compared method gets. A completions budget is also given as the
    step count it equals (every method scores batch_size completions a step: FlowHF's group,
    GRPO's generations, PPO's rollout batch), so TRL knows its horizon and every bar is honest."""
    budget = dict(p.budget)
    if budget.get("completions") and not budget.get("max_steps"):
        budget["max_steps"] = -(-budget["completions"] // p.batch_size)
    return budget


def stage_sft(ctx: Context) -> dict[str, Any]:
    from flowhf.experiments.baselines import run_sft

    p = ctx.preset
    res = run_sft(
        p.policy,
        p.sft_data,
        ctx.stage_dir("sft"),
        budget=p.sft_budget or method_budget(p),
        lora=_lora(p),
        batch_size=p.batch_size,
        limit=p.sft_limit,
    )
    return {"model_dir": str(ctx.stage_dir("sft") / "model"), "result": res}


def stage_reward_model(ctx: Context) -> dict[str, Any]:
    """Train the proxy SE reward model the policies optimise and its gold judge
    (`flowhf.config.reward_model.proxy_and_gold`), or record the preset's given reward specs."""
    p = ctx.preset
    if p.se_reward is not None:
        return {
            "reward": p.se_reward,
            "gold_reward": p.gold_reward or p.se_reward,
            "trained": False,
            "score_std": None,
        }
    from flowhf.config.reward_model import proxy_and_gold
    from flowhf.reward_model.train import FeatureCache, RewardModelConfig, train_reward_model

    proxy, gold = proxy_and_gold(RewardModelConfig(**p.reward_model), ctx.stage_dir("reward_model"))
    features = FeatureCache()  # head_only: the gold's texts include every one of the proxy's
    metrics = train_reward_model(proxy, features)
    result = {
        "reward": f"classifier:{proxy.output_dir}",
        "trained": True,
        "metrics": metrics,
        "score_mean": metrics["train/score_mean"],
        "score_std": metrics["train/score_std"],
    }
    if p.gold_reward is not None:
        return {**result, "gold_reward": p.gold_reward}
    gold_metrics = train_reward_model(gold, features)
    return {
        **result,
        "gold_reward": f"classifier:{gold.output_dir}",
        "gold_metrics": gold_metrics,
        "gold_score_mean": gold_metrics["train/score_mean"],
        "gold_score_std": gold_metrics["train/score_std"],
    }


def train_baseline(
    ctx: Context, method: str, out: Path, extra: dict | None = None
) -> dict[str, Any]:
    """TRL's PPO or GRPO from the SFT model into ``out``: the preset's shared settings, then its
    ``method_options[method]``, then ``extra`` (a sweep point's knob and seed)."""
    from flowhf.experiments.baselines import run_grpo, run_ppo

    p = ctx.preset
    size = {"batch_size": p.batch_size} if method == "ppo" else {"num_generations": p.batch_size}
    options = {
        "budget": method_budget(p),
        "lora": _lora(p),
        "max_completion_length": p.max_new_tokens,
        **size,
        **p.method_options.get(method, {}),
        **(extra or {}),
    }
    runner = run_ppo if method == "ppo" else run_grpo
    res = runner(ctx.model_dir("sft"), p.train_prompts, ctx.se_reward(), out, **options)
    return {"model_dir": str(out / "model"), "run_dir": str(out), "result": res}


def stage_ppo(ctx: Context) -> dict[str, Any]:
    return train_baseline(ctx, "ppo", ctx.stage_dir("ppo"))


def stage_grpo(ctx: Context) -> dict[str, Any]:
    return train_baseline(ctx, "grpo", ctx.stage_dir("grpo"))


def flowhf_overrides(ctx: Context, method: str, out: Path | None = None) -> list[str]:
    """--set overrides turning configs/<method>.yaml into this preset's run (same budget for all),
    then the preset's ``method_options[method]`` (``key: value`` config overrides)."""
    p = ctx.preset
    budget = method_budget(p)
    sets = [
        f"model.name={ctx.model_dir('sft')}",
        f"model.lora={str(p.lora).lower()}",
        f"target.reward={ctx.se_reward()}",
        # beta reads as nats of log R per std of the reward over the TRAINING answers (chosen and
        # rejected), so one config means the same target for VADER (std ~0.5) or a reward
        # model's logit (std ~3); nothing is fitted to the evaluation prompts.
        f"target.reward_scale={ctx.reward_scale()!r}",
        f"data.dataset={p.train_prompts}",
        "data.prompt_column=question",  # StackExchange layout (shipped and lvwerra/stack-exchange-paired)
        f"sampling.max_new_tokens={p.max_new_tokens}",
        "sampling.prompts_per_step=1",
        f"sampling.samples_per_prompt={p.batch_size}",
        f"optim.max_steps={budget.get('max_steps') or 10**9}",
        f"logging.output_dir={out or ctx.stage_dir(method)}",
        "logging.progress_bar=false",
    ]
    if budget.get("seconds"):
        sets.append(f"optim.max_seconds={budget['seconds']}")
    if budget.get("completions"):
        sets.append(f"optim.max_completions={budget['completions']}")
    if p.name == "smoke":
        sets.append("model.autocast_bf16=false")
    return sets + [f"{key}={value}" for key, value in p.method_options.get(method, {}).items()]


def train_flowhf(
    ctx: Context, method: str, out: Path, extra: list[str] = (), resume: bool = False
) -> dict[str, Any]:
    """FlowHFTrainer with configs/<method>.yaml from the SFT model into ``out`` (``extra``: more
    --set overrides, e.g. a sweep point's knob and seed; ``resume``: continue its checkpoints)."""
    from flowhf.config.training import FlowHFConfig
    from flowhf.training.trainer import FlowHFTrainer

    cfg = FlowHFConfig.from_yaml(
        CONFIGS / f"{method}.yaml", flowhf_overrides(ctx, method, out) + list(extra)
    )
    trainer = FlowHFTrainer(args=cfg)
    last = trainer.train(resume=resume)
    return {
        "model_dir": str(out),
        "run_dir": str(out),
        "steps": trainer.state.global_step,
        "last_metrics": {k: float(v) for k, v in last.items() if isinstance(v, (int, float))},
    }


def flowhf_stage(method: str):
    def stage(ctx: Context) -> dict[str, Any]:
        return train_flowhf(ctx, method, ctx.stage_dir(method), resume=ctx.resume)

    stage.__name__ = f"stage_{method}"
    stage.__doc__ = f"FlowHFTrainer with configs/{method}.yaml, started from the SFT model."
    return stage


def stage_eval(ctx: Context) -> dict[str, Any]:
    """Evaluate every method on StackExchange test (gold reward, proxy beside it, per-prompt diversity)
    and on the toxicity probes (toxicity reward)."""
    from flowhf.config.evaluation import EvalArgs, GenerationSettings, PerPromptSettings
    from flowhf.evaluation.embeddings import Embedder
    from flowhf.evaluation.runner import EvalInputs, evaluate_models
    from flowhf.evaluation.tasks import spread, task_inputs
    from flowhf.rewards import build_reward

    p = ctx.preset
    models = {m: ctx.model_dir(m) for m in METHODS}
    run_dirs = {m: ctx.results[m]["run_dir"] for m in METHODS if "run_dir" in ctx.results[m]}
    gen = GenerationSettings(
        max_new_tokens=p.eval_max_new_tokens,
        temperature=p.eval_temperature,
        batch_size=max(1, min(16, p.eval_n)),
    )
    embedder = Embedder()
    # StackExchange: the gold judges (headline), the proxy the policies trained on scores the same text
    gold, proxy = ctx.gold_reward(), ctx.se_reward()
    judges = {"proxy": build_reward(proxy)} if gold != proxy else {}
    per_prompt = PerPromptSettings(**p.per_prompt) if p.per_prompt is not None else None
    out = {}
    for task, source, reward, se in (
        ("stackexchange", p.eval_prompts, gold, True),
        ("toxicity", p.toxicity_prompts, p.toxicity_reward, False),
    ):
        inputs = spread(
            task_inputs(task, prompts_source=source), p.eval_n
        )  # every topic, not the first ones
        directory = ctx.stage_dir("eval") / task
        evaluate_models(
            list(models.items()),
            EvalInputs(
                inputs.prompts,
                build_reward(reward),
                inputs.reference_completions,
                inputs.reward_columns,
                judges=judges if se else {},
                metadata={
                    "reward": reward,
                    "proxy_reward": proxy if se else None,
                    "preset": p.name,
                },
            ),
            EvalArgs(
                directory,
                n=p.eval_n,
                k=p.eval_k,
                seed=0,
                n_boot=p.n_boot,
                task=task,
                baseline="ppo",
                generation=gen,
                per_prompt=per_prompt if se else None,
            ),
            embedder,
        )
        out[task] = str(directory)
    return {"eval_dirs": out, "run_dirs": run_dirs}
