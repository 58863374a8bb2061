"""Presets of `flowhf reproduce`: which models, data, rewards and budget each run uses (the
`Preset` dataclass and the shipped table; `flowhf.experiments.reproduce.presets.load_preset`
reads a preset file and checks it).

Every method of one preset gets the SAME budget (``Preset.budget``: completions scored by the
reward, optimizer steps, wall-clock seconds; the first reached wins), recorded in ``DIR/plan.json``.
A count (completions, steps) makes a rerun on another machine train the same steps.

- ``smoke``: the tiny random policy ("tiny-random"), 2 steps per method, n=4 eval. The
  StackExchange reward is ``python:flowhf.rewards.toy:letter_share`` (a dense toy reward),
  NOT a trained reward model: a reward model on a random 2-layer backbone measures nothing,
  and skipping its training keeps the whole run well under 3 minutes. The reward_model stage
  then only records the given reward spec.
- ``cpu`` (`make demo`): SmolLM2-135M-Instruct + shipped data on a 2-core CPU, 45 minutes in
  all (budget plan in ``CPU_BUDGET_PLAN``): one seed, gold + proxy, per-prompt diversity.
- ``cpu-full``: ``cpu`` with more budget plus the frontier sweep over 3 seeds (hours;
  resumable with ``--resume``); ``cpu-lr``: the learning-rate grid every method gets.
- ``paper``: LLaMA-7B, the full StackExchange-paired data, the StackLLaMA reward model and
  the RoBERTa hate-speech classifier, on GPUs with the shipped accelerate configs.

Your own preset is a YAML file of `Preset` keys over a shipped one (``base: cpu``; default
smoke), e.g. ``budget: {max_steps: 50, seconds: 600}``; ``--set key=value`` (or
``--set budget.max_steps=50``) changes one key. `load_preset` checks every value (type, range,
unknown keys, budgets key by key) before anything loads, naming the file and line.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, make_dataclass, replace
from typing import Any

from flowhf.config.fields import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, help_field as _f
from flowhf.errors import ConfigError

# The stages of `flowhf reproduce`, in order, and the methods each group of stages trains.
STAGES = (
    "sft",
    "reward_model",
    "ppo",
    "grpo",
    "tb",
    "fl_kl",
    "flowhf",
    "recommended",
    "eval",
    "sweep",
    "report",
)
BASELINE_METHODS = ("ppo", "grpo")
FLOWHF_METHODS = ("tb", "fl_kl", "flowhf", "recommended")
METHODS = ("sft",) + BASELINE_METHODS + FLOWHF_METHODS  # every model that is evaluated
# FlowHF methods that only the sweep trains (configs/<name>.yaml; no stage, so `make demo` keeps its budget)
SWEEP_ONLY_METHODS = ("length_tb",)
SWEEP_METHODS = BASELINE_METHODS + FLOWHF_METHODS + SWEEP_ONLY_METHODS


@dataclass
class Preset:
    """Everything one `flowhf reproduce` preset fixes."""

    name: str = _f("smoke", "Preset name.")
    policy: str = _f(
        "tiny-random", "Starting policy (alias, folder or Hub id) fine-tuned by the SFT stage."
    )
    sft_data: str = _f(
        "stackexchange:train", "Prompt/answer pairs for SFT (question -> preferred answer)."
    )
    train_prompts: str = _f("stackexchange:train", "Prompts the RL / GFlowNet stages train on.")
    eval_prompts: str = _f("stackexchange:test", "StackExchange evaluation prompts (Table 1).")
    toxicity_prompts: str = _f("toxicity_probes", "Toxicity probe prompts (Table 2).")
    se_reward: str | None = _f(
        None, "Given StackExchange reward spec; None trains one in the reward_model stage."
    )
    reward_model: dict = _f(
        {}, "RewardModelConfig overrides for the reward_model stage (when se_reward is None)."
    )
    gold_reward: str | None = _f(
        None,
        "Given gold reward spec, the evaluation's headline judge; None: a gold reward model is trained beside "
        "the proxy (flowhf.config.reward_model.proxy_and_gold) when se_reward is None, else se_reward judges itself (no gold).",
    )
    per_prompt: dict | None = _f(
        {},
        "PerPromptSettings overrides (n_prompts, k, temperature, threshold) of the per-prompt diversity "
        "evaluation on StackExchange; null skips it.",
    )
    toxicity_reward: str = _f("toxicity", "Reward spec of the toxicity evaluation.")
    budget: dict = _f(
        {"max_steps": 2, "seconds": 60}, "The one budget every compared method gets (Budget keys)."
    )
    sft_budget: dict | None = _f(None, "Budget of the SFT stage (None = the same as `budget`).")
    max_new_tokens: int = _f(
        8, "Completion length during training (all methods).", allowed=AT_LEAST_ONE
    )
    batch_size: int = _f(
        4, "Completions per optimizer step for every method.", allowed=AT_LEAST_ONE
    )
    lora: bool = _f(True, "LoRA adapters for every method (SFT included).")
    sft_limit: int | None = _f(
        None, "Use only the first N SFT pairs (None = all).", allowed=AT_LEAST_ONE
    )
    eval_n: int = _f(4, "Completions per evaluation task and model.", allowed=AT_LEAST_ONE)
    eval_k: int = _f(
        2, "Top-K for the diversity / novelty metrics (at most eval_n).", allowed=AT_LEAST_ONE
    )
    eval_max_new_tokens: int = _f(8, "Completion length in evaluation.", allowed=AT_LEAST_ONE)
    eval_temperature: float = _f(
        0.1, "Sampling temperature in evaluation (the report's 0.1).", allowed=POSITIVE
    )
    n_boot: int = _f(200, "Bootstrap resamples for the intervals.", allowed=AT_LEAST_ONE)
    accelerate_config: str | None = _f(None, "Accelerate config for multi-GPU launches (paper).")
    gpu: str = _f("none", "Hardware the preset is sized for.")
    stage_hours: dict = _f({}, "Estimated GPU hours per stage (paper; printed by --dry-run).")
    stage_seconds: dict = _f(
        {}, "Estimated wall-clock seconds per stage (progress bars and the run's ETA)."
    )
    notes: list = _f([], "Free-text notes printed with the plan.")
    method_options: dict = _f(
        {},
        "Per method, settings beyond the shared ones: runner keys of ppo / grpo (flowhf/config/baselines.py, "
        "e.g. {ppo: {num_ppo_epochs: 1}}) or config overrides of a FlowHF method (e.g. {recommended: {target.beta: 8}}).",
    )
    sweep: dict = _f(
        {},
        "The frontier: per method, one knob and its grid, e.g. {ppo: {kl_coef: [0.01, 0.05]}, recommended: "
        "{target.beta: [2, 8]}}; every point trains from the SFT model with the shared budget (stage sweep).",
    )
    sweep_seeds: list = _f([0], "Seeds of every sweep point (mean and 95% interval across them).")

    def __post_init__(self) -> None:
        if self.budget.get("generated_tokens") is not None:
            raise ValueError(
                "budget.generated_tokens: the FlowHF stages do not enforce it; budget a reproduce by "
                "completions (reward calls, the same on every machine), seconds or max_steps"
            )
        if self.eval_k > self.eval_n:
            raise ValueError(
                f"eval_k={self.eval_k} must be <= eval_n={self.eval_n} (top-K of n completions)"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# `make demo` in 45 minutes on 2 CPU cores (SmolLM2-135M, LoRA, 32-token completions). Budgets
# are counts (steps, completions), so a slower machine trains the same steps and reaches the
# same table, only later; the seconds are what one quiet run here measured per stage.
CPU_BUDGET_PLAN = {
    "sft_steps": 16,  # ~12 s a step on the shipped 448 pairs
    "completions": 160,  # per compared method: 20 steps of 8 completions (PPO: 20 updates)
    "eval_n": 64,  # StackExchange prompts, spread over every topic, and toxicity probes
    "per_prompt": {"n_prompts": 16, "k": 8},  # 128 completions per model at temperature 1
}
CPU_STAGE_SECONDS = {
    "sft": 240,
    "reward_model": 360,
    "ppo": 300,
    "grpo": 200,
    "tb": 200,
    "fl_kl": 220,
    "flowhf": 200,
    "recommended": 220,
    "eval": 1000,
    "sweep": 0,
    "report": 20,
}

_CPU = Preset(
    name="cpu",
    policy="smollm2",
    reward_model={"model": "smollm2", "mode": "head_only"},
    per_prompt=CPU_BUDGET_PLAN["per_prompt"],
    budget={"completions": CPU_BUDGET_PLAN["completions"]},
    sft_budget={"max_steps": CPU_BUDGET_PLAN["sft_steps"]},
    method_options={
        "ppo": {"num_ppo_epochs": 1}
    },  # TRL's 4 epochs per rollout: 4x the cost of an update
    max_new_tokens=32,
    batch_size=8,
    eval_n=CPU_BUDGET_PLAN["eval_n"],
    eval_k=6,  # K ~ n / 10 as in the paper
    eval_max_new_tokens=32,
    n_boot=1000,
    gpu="2 CPU cores",
    stage_seconds=CPU_STAGE_SECONDS,
    notes=[
        f"budget plan: {CPU_BUDGET_PLAN}; every compared method scores the same number of completions "
        "(reward calls); SFT has its own step budget."
    ],
)
# The comparison a reviewer can accept (issue 11): every method's knob on a grid, 3 seeds each, a
# longer budget; several hours on 2 cores, resumable point by point (--resume).
# Each method's learning rate: the best mean gold of the cpu-lr grid (one seed, 160 completions;
# benchmarks/results/reproduce_cpu_lr/report.md). The gold intervals of those points overlap (+-0.6).
CPU_FULL_LR = {"recommended": 3e-4, "length_tb": 1e-3, "fl_kl": 1e-4, "ppo": 3e-4, "grpo": 1e-4}
_CPU_FULL = replace(
    _CPU,
    name="cpu-full",
    budget={"completions": 256},
    method_options={
        **{
            m: {"optim.learning_rate": CPU_FULL_LR[m]}
            for m in ("recommended", "length_tb", "fl_kl")
        },
        "ppo": {**_CPU.method_options["ppo"], "lr": CPU_FULL_LR["ppo"]},
        "grpo": {"lr": CPU_FULL_LR["grpo"]},
    },
    per_prompt={"n_prompts": 32, "k": 8},
    sweep={
        "recommended": {"target.beta": [2.0, 8.0, 32.0]},
        "length_tb": {"target.beta": [2.0, 8.0, 32.0]},
        "fl_kl": {"target.beta": [2.5, 10.0, 40.0]},
        "ppo": {"kl_coef": [0.0125, 0.05, 0.2]},
        "grpo": {"beta": [0.01, 0.04, 0.16]},
    },
    sweep_seeds=[0, 1, 2],
    stage_seconds={
        **CPU_STAGE_SECONDS,
        **{
            m: 2 * v for m, v in CPU_STAGE_SECONDS.items() if m in BASELINE_METHODS + FLOWHF_METHODS
        },
        "sweep": 3 * 15 * 450,
    },
    notes=[
        "sweep: each method's regularisation knob x4 around its default (recommended / length_tb / fl_kl: "
        "target.beta, the config's beta x1/4, x1, x4; ppo: kl_coef; grpo: beta), seeds 0-2, 256 completions per point; "
        "every point judged on 32 prompts x 8 answers by the gold and the proxy"
    ],
)

# The learning-rate grid every compared method gets (the same three values), one seed, the cpu
# budget: run it first and give each method its best rate in cpu-full's method_options.
LR_GRID = [1e-4, 3e-4, 1e-3]
_CPU_LR = replace(
    _CPU,
    name="cpu-lr",
    sweep={
        "recommended": {"optim.learning_rate": LR_GRID},
        "length_tb": {"optim.learning_rate": LR_GRID},
        "fl_kl": {"optim.learning_rate": LR_GRID},
        "ppo": {"lr": LR_GRID},
        "grpo": {"lr": LR_GRID},
    },
    sweep_seeds=[0],
    stage_seconds={**CPU_STAGE_SECONDS, "sweep": 15 * 400},
    notes=[
        f"learning-rate grid {LR_GRID} for every compared method (the defaults: FlowHF configs 5e-4, "
        "TRL baselines 1e-4), one seed; the frontier table ranks each method's settings by gold reward"
    ],
)

PRESETS: dict[str, Preset] = {
    "smoke": Preset(
        name="smoke",
        se_reward="python:flowhf.rewards.toy:letter_share",
        gold_reward="python:flowhf.rewards.toy:distinct_word_share",
        per_prompt={"n_prompts": 2, "k": 2},
        sweep={
            "recommended": {"target.beta": [1.0, 4.0]},
            "length_tb": {"target.beta": [4.0]},
            "grpo": {"beta": [0.04]},
        },  # the plumbing of a frontier (a sweep-only method too)
        budget={"max_steps": 2, "seconds": 60},
        sft_limit=16,
        eval_temperature=1.0,  # a random 2-layer policy at 0.1 emits EOS first: empty completions test nothing
        stage_seconds={**{s: 8 for s in STAGES}, "eval": 30},
        notes=[
            "SE reward is the toy letter_share reward (no reward model is trained: a random "
            "2-layer backbone would give a meaningless one); numbers test the plumbing only."
        ],
    ),
    "cpu": _CPU,
    "cpu-full": _CPU_FULL,
    "cpu-lr": _CPU_LR,
    "paper": Preset(
        name="paper",
        policy="huggyllama/llama-7b",
        sft_data="hf:lvwerra/stack-exchange-paired",
        train_prompts="hf:lvwerra/stack-exchange-paired",
        eval_prompts="hf:lvwerra/stack-exchange-paired",
        se_reward="classifier:trl-lib/llama-7b-se-rm-peft",
        toxicity_reward="classifier:facebook/roberta-hate-speech-dynabench-r4-target",
        budget={"max_steps": 2000, "seconds": 8 * 3600},
        max_new_tokens=128,
        batch_size=64,
        eval_n=1000,
        eval_k=100,
        eval_max_new_tokens=128,
        n_boot=1000,
        accelerate_config="configs/accelerate/deepspeed_zero2.yaml",
        gpu="8x A100 80GB",
        stage_hours={
            "sft": 8 * 4,
            "reward_model": 0,
            "ppo": 8 * 8,
            "grpo": 8 * 8,
            "tb": 8 * 8,
            "fl_kl": 8 * 8,
            "flowhf": 8 * 8,
            "recommended": 8 * 8,
            "eval": 8 * 3,
            "report": 0,
        },
        stage_seconds={
            "sft": 4 * 3600,
            **{m: 8 * 3600 for m in BASELINE_METHODS + FLOWHF_METHODS},
            "eval": 3 * 3600,
            "report": 60,
        },
        notes=[
            "reward model is the published StackLLaMA PEFT adapter (not retrained)",
            "FSDP alternative: configs/accelerate/fsdp.yaml",
            "measured (benchmarks/gpu_scale.py, one H200, LLaMA-7B shape with random bf16 weights, LoRA, "
            "64 completions x 128 tokens): FlowHF SubTB 9.3 s/step, TB 7.7 s/step, peak 83 GiB; 2000 steps "
            "~5.2 h per FlowHF stage on one H200. The PPO/GRPO/SFT/eval hours are estimates, not measured.",
        ],
    ),
}


def get_preset(name: str) -> Preset:
    """The shipped preset called ``name``; an unknown name lists the known ones."""
    if name not in PRESETS:
        raise ConfigError(
            f"unknown preset {name!r}; choose one of {', '.join(sorted(PRESETS))}, or give a preset YAML file",
            "e.g. --preset smoke, or --preset my_preset.yaml holding `base: smoke` and the keys to change",
        )
    return PRESETS[name]


StageTable = make_dataclass(
    "StageTable",
    [(s, float | None, _f(None, f"Estimate for stage {s}.", allowed=NON_NEGATIVE)) for s in STAGES],
)
