"""FlowHFConfig: every training option, grouped, with help text; YAML + `--set` overrides.

YAML files are nested by group (``model:``, ``target:``, ...). Overrides are
``--set group.key=value`` or ``--set key=value`` (key names are unique across groups).
Unknown groups or keys are errors that name the closest valid key; values are type-checked
(`flowhf.config.fields`, the loading every config shares).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowhf.config import fields
from flowhf.config.fields import (
    AT_LEAST_ONE,
    NON_NEGATIVE,
    POSITIVE,
    PROBABILITY,
    OneOf,
    Overrides,
    Range,
    Source,
    build_dataclass,
    help_field as _f,
    read_with_overrides,
    suggest,
)
from flowhf.config.trl_names import SAME_MEANING, apply_trl_names
from flowhf.errors import ConfigError
from flowhf.objectives import OBJECTIVES, get_objective, logz_modes
from flowhf.target import BetaSchedule


@dataclass
class ModelArgs:
    name: str = _f(
        "smollm2",
        "Policy: 'smollm2' (embedded default), 'tiny-random', a local folder, a .gguf file or a Hub id.",
    )
    dtype: str = _f(
        "float32", "Weight dtype: float32 | bfloat16.", allowed=OneOf(("float32", "bfloat16"))
    )
    autocast_bf16: bool = _f(
        False,
        "Run forward/backward under bf16 autocast (fast on CPUs with avx512_bf16 and on GPUs).",
    )
    lora: bool = _f(
        True,
        "Train LoRA adapters (reference = adapters disabled). False = full fine-tuning with a frozen copy.",
    )
    lora_r: int = _f(16, "LoRA rank.", allowed=AT_LEAST_ONE)
    lora_alpha: int = _f(32, "LoRA alpha.", allowed=POSITIVE)
    lora_dropout: float = _f(0.0, "LoRA dropout.", allowed=Range(0, 1, high_open=True))
    lora_target_modules: list[str] = _f(
        None, "Modules to adapt (default q,k,v,o projections; ['all-linear'] for all)."
    )
    trust_remote_code: bool = _f(
        False, "Allow custom model code from the Hub (off unless you trust the model)."
    )
    cache_dir: str | None = _f(
        None, "Cache for converted models (default $FLOWHF_CACHE_DIR or ~/.cache/flowhf)."
    )
    chat_template: bool = _f(
        True, "Wrap prompts in the tokenizer's chat template (when it has one)."
    )
    gradient_checkpointing: bool = _f(
        False,
        "Recompute activations in the backward pass (less memory for long completions, "
        "about a third more update time); the policy pass then reads each prompt once per row.",
    )

    def __post_init__(self) -> None:
        if self.dtype not in ("float32", "bfloat16"):
            raise ValueError(f"model.dtype={self.dtype!r}: use float32 or bfloat16")


@dataclass
class TargetArgs:
    reward: str = _f(
        "sentiment",
        "Reward spec for flowhf.rewards.build_reward, e.g. sentiment, toxicity, classifier:PATH, '0.5*sentiment+0.5*toxicity'.",
    )
    beta: float = _f(
        1.0,
        "Reward weight beta in log R = beta * r + alpha * log p_ref (the report's FlowHF uses 100).",
        allowed=Range(),
    )
    beta_end: float | None = _f(None, "Final beta of a schedule (None = constant beta).")
    beta_schedule: str = _f(
        "constant", "constant | linear | cosine.", allowed=OneOf(("constant", "linear", "cosine"))
    )
    beta_steps: int = _f(
        0, "Steps over which beta moves from beta to beta_end.", allowed=NON_NEGATIVE
    )
    alpha: float = _f(
        1.0,
        "Weight of log p_ref (1 = KL-regularised target; 0 = the report's target, no LM prior).",
        allowed=Range(),
    )
    reward_floor: float | None = _f(
        None, "Clamp rewards below this value (a log-reward floor for rare, very negative rewards)."
    )
    reward_scale: float = _f(
        1.0,
        "Reward units per unit of beta: log R = beta * max(r, reward_floor) / reward_scale + ... "
        "(`flowhf reproduce` records the reward's std over the training answers, so beta reads as nats per std).",
    )
    nonfinite_reward: str = _f(
        "error",
        "A NaN or ±inf reward: 'error' (stop, naming the reward, prompt and completion) or "
        "'floor' (use target.reward_floor instead; counted as train/nonfinite_rewards).",
        allowed=OneOf(("error", "floor")),
    )
    prefix_stride: int = _f(
        1,
        "FL/SubTB prefix rewards: score every k-th prefix (k > 1 approximates, for slow non-causal rewards).",
        allowed=AT_LEAST_ONE,
    )
    reward_weights: list[float] = _f(
        None,
        "Weight of each reward function (TRL's reward_weights; None = 1 each): r = sum of "
        "w_i r_i over the functions that score a sample (a None return skips one).",
    )

    def __post_init__(self) -> None:
        self.reward_scale = float(self.reward_scale)
        if not self.reward_scale > 0:
            raise ValueError(f"target.reward_scale={self.reward_scale}: must be > 0")
        self.beta_per_reward()  # a bad schedule is a config error, raised before any model loads
        if self.nonfinite_reward == "floor" and self.reward_floor is None:
            raise ValueError(
                "target.nonfinite_reward=floor needs target.reward_floor (the value a NaN/±inf reward becomes)"
            )
        bad = [
            w
            for w in self.reward_weights or []
            if isinstance(w, bool) or not isinstance(w, (int, float))
        ]
        if bad:
            raise ValueError(
                f"target.reward_weights={self.reward_weights!r}: every weight must be a number, got {bad[0]!r}"
            )

    def beta_per_reward(self) -> BetaSchedule:
        """beta per unit of the (floored) reward, by step: the configured beta over reward_scale."""
        end = None if self.beta_end is None else self.beta_end / self.reward_scale
        return BetaSchedule(self.beta / self.reward_scale, end, self.beta_schedule, self.beta_steps)


@dataclass
class ObjectiveArgs:
    objective: str = _f(
        "subtb", " | ".join(f"{name} ({spec.help})" for name, spec in OBJECTIVES.items()) + "."
    )
    logz: str = _f(
        "batch",
        "log Z estimator (TB): "
        + " | ".join(f"{n} ({m.help})" for n, m in logz_modes().items())
        + ".",
    )
    logz_init: float = _f(0.0, "Initial value of a learned log Z.", allowed=Range())
    penalty: str = _f(
        "squared",
        "Regression penalty on residuals: squared | huber.",
        allowed=OneOf(("squared", "huber")),
    )
    huber_delta: float = _f(1.0, "Huber transition point.", allowed=POSITIVE)
    subtb_lambda: float = _f(
        0.9, "SubTB lambda (geometric weight of sub-trajectory length).", allowed=POSITIVE
    )
    subtb_energies: bool = _f(
        True, "SubTB flows parametrised forward-looking (F = F~ R(prefix)); needs prefix rewards."
    )
    pg_kl_coef: float = _f(
        0.0, "pg only: KL-to-reference penalty coefficient.", allowed=NON_NEGATIVE
    )

    def __post_init__(self) -> None:
        spec = get_objective(self.objective)  # an unknown name lists the registered ones
        if self.logz not in logz_modes():
            raise ValueError(f"objective.logz={self.logz!r}: use {', '.join(logz_modes())}")
        spec.logz_mode(self)  # an estimator this objective does not accept
        if self.penalty not in ("squared", "huber"):
            raise ValueError(f"objective.penalty={self.penalty!r}: use squared or huber")


@dataclass
class SamplingArgs:
    max_new_tokens: int = _f(
        32,
        "Completion length limit; a completion without EOS is forced to end here.",
        allowed=AT_LEAST_ONE,
    )
    prompts_per_step: int = _f(2, "Distinct prompts per update.", allowed=AT_LEAST_ONE)
    samples_per_prompt: int = _f(
        4,
        "Completions per prompt per update (k; batch log Z and pg need >= 2).",
        allowed=AT_LEAST_ONE,
    )
    explore_prob: float = _f(
        0.5, "Probability that a batch is sampled at a tempered temperature.", allowed=PROBABILITY
    )
    temperature_low: float = _f(1.0, "Exploration temperature range, low end.", allowed=POSITIVE)
    temperature_high: float = _f(1.5, "Exploration temperature range, high end.", allowed=POSITIVE)
    explore_tokens: int = _f(
        0,
        "Exploration temperature applies to the first this-many tokens of a completion, the rest "
        "are sampled at 1 (0 = every token). Hot later tokens mostly break the ending.",
        allowed=NON_NEGATIVE,
    )
    explore_top_k: int = _f(
        0,
        "Exploration batches draw only among the policy's this-many most likely next tokens, "
        "then temper (0 = the whole vocabulary). At T >= 2 a 49k-token vocabulary puts nearly "
        "all its mass on the tail: states-uniform's answers hold 0.1% of a T 2.5 batch, 8% "
        "with top-32, while rare answers rise 10x (log q is the cut distribution's).",
        allowed=NON_NEGATIVE,
    )
    reference_prob: float = _f(
        0.0,
        "Probability that a batch is drawn by the reference (the starting model) at "
        "temperature 1 instead of by the policy: it keeps proposing answers the policy has "
        "pushed down before finding them (off-policy; valid for every GFlowNet objective).",
        allowed=PROBABILITY,
    )
    sampler: str = _f(
        "fast",
        "plain (the PEFT policy, DynamicCache, a softmax and a multinomial per token) | fast (a merged "
        "LoRA copy, bf16 when model.autocast_bf16 or model.dtype is bf16, a static KV cache, one "
        "log-softmax and an inverse-CDF draw per token; the same distribution).",
        allowed=OneOf(("plain", "fast")),
    )
    sample_dtype: str | None = _f(
        None,
        "fast sampler: the copy's dtype, float32 | bfloat16; null = the policy's compute dtype "
        "(bfloat16 under model.autocast_bf16 or model.dtype bfloat16). bfloat16 reads half the "
        "bytes per token; log q is then the bf16 copy's (exact for what was drawn), a slightly "
        "off-policy batch that GFlowNet objectives accept (pg assumes on-policy samples).",
        allowed=OneOf(("float32", "bfloat16")),
    )
    compile_decode: bool | None = _f(
        None,
        "fast sampler: torch.compile the decoding step (CUDA graphs on GPU): true | false | "
        "null (= on GPU only: on CPU it did not pay, see docs/speed.md).",
    )
    top_p: float = _f(
        1.0,
        "Nucleus sampling for generation (1.0 = off; the loss always uses pi itself).",
        allowed=Range(0, 1, low_open=True),
    )
    max_prompt_length: int | None = _f(
        None,
        "Keep at most this many prompt tokens (the end, as sampling.long_prompts says; "
        "None = as many as the context leaves).",
        allowed=AT_LEAST_ONE,
    )
    long_prompts: str = _f(
        "truncate",
        "A prompt longer than the model's context minus max_new_tokens: 'truncate' (keep its "
        "end; counted as train/truncated_prompts) or 'error'.",
        allowed=OneOf(("truncate", "error")),
    )
    offpolicy_column: str | None = _f(
        None, "Dataset column with reference completions to train on off-policy (e.g. response_j)."
    )
    offpolicy_fraction: float = _f(
        0.0,
        "Fraction of each prompt's k completions taken from offpolicy_column.",
        allowed=PROBABILITY,
    )

    def __post_init__(self) -> None:
        if not 0.0 <= self.offpolicy_fraction <= 1.0:
            raise ValueError("sampling.offpolicy_fraction must be in [0, 1]")
        if self.offpolicy_fraction > 0 and not self.offpolicy_column:
            raise ValueError(
                "sampling.offpolicy_fraction > 0 needs sampling.offpolicy_column (e.g. response_j)"
            )
        if self.temperature_low <= 0 or self.temperature_high < self.temperature_low:
            raise ValueError("need 0 < sampling.temperature_low <= sampling.temperature_high")


@dataclass
class ReplayArgs:
    replay_ratio: float = _f(
        0.0,
        "Fraction of each prompt's k completions drawn from the replay buffer.",
        allowed=Range(0, 1, high_open=True),
    )
    replay_capacity: int = _f(
        64, "Replay items kept per prompt (lowest reward evicted).", allowed=AT_LEAST_ONE
    )
    replay_prioritized: bool = _f(
        True, "Sample replay items with probability ∝ exp(r / replay_temperature)."
    )
    replay_temperature: float = _f(1.0, "Temperature of prioritised replay.", allowed=POSITIVE)
    replay_with_replacement: bool = _f(
        False,
        "Draw a prompt's replay rows i.i.d. (with replacement), so each follows the "
        "priorities exactly: a few high-reward items may repeat instead of "
        "low-priority ones filling the remaining slots.",
    )

    def __post_init__(self) -> None:
        if not 0.0 <= self.replay_ratio < 1.0:
            raise ValueError("replay.replay_ratio must be in [0, 1)")


@dataclass
class OptimArgs:
    learning_rate: float = _f(1e-4, "Policy (LoRA or full) learning rate.", allowed=POSITIVE)
    head_learning_rate: float = _f(
        1e-3, "Flow head / prompt log Z head learning rate.", allowed=POSITIVE
    )
    logz_learning_rate: float = _f(
        1e-2, "Scalar log Z learning rate (its own, as in Malkin et al.).", allowed=POSITIVE
    )
    weight_decay: float = _f(0.0, "AdamW weight decay of the policy.", allowed=NON_NEGATIVE)
    max_grad_norm: float = _f(1.0, "Gradient clipping norm (0 = off).", allowed=NON_NEGATIVE)
    warmup_steps: int = _f(0, "Linear warm-up steps.", allowed=NON_NEGATIVE)
    lr_scheduler: str = _f(
        "constant",
        "constant | linear | cosine (after warm-up, to 0 at max_steps).",
        allowed=OneOf(("constant", "linear", "cosine")),
    )
    max_steps: int = _f(100, "Number of updates.", allowed=AT_LEAST_ONE)
    num_train_epochs: float | None = _f(
        None,
        "Passes over the training prompts; when set it replaces max_steps: "
        "ceil(epochs x rows / (prompts_per_step x processes)) steps.",
        allowed=POSITIVE,
    )
    max_seconds: float | None = _f(
        None,
        "Stop after this much wall-clock training time (checked between steps).",
        allowed=POSITIVE,
    )
    max_completions: int | None = _f(
        None,
        "Stop once this many completions were scored by the reward, all processes "
        "together (replayed rows count: each is a reward call).",
        allowed=AT_LEAST_ONE,
    )
    seed: int = _f(0, "Seed of data order, sampling and initialisation.")
    max_skipped_steps: int = _f(
        5, "Stop after this many consecutive non-finite steps.", allowed=AT_LEAST_ONE
    )

    def __post_init__(self) -> None:
        if self.lr_scheduler not in ("constant", "linear", "cosine"):
            raise ValueError(
                f"optim.lr_scheduler={self.lr_scheduler!r}: use constant, linear or cosine"
            )


@dataclass
class DataArgs:
    dataset: str = _f(
        "sentiment_prompts",
        "Prompt source: shipped name, local .jsonl/.csv/.parquet, or hf:NAME[:CONFIG].",
    )
    split: str | None = _f(None, "Split for `datasets` sources.")
    prompt_column: str = _f(
        "prompt", "Column holding the prompt (e.g. question for StackExchange)."
    )
    reward_columns: list[str] = _f(
        None, "Extra dataset columns passed to the reward as keyword lists (e.g. [reference])."
    )
    limit: int | None = _f(None, "Use only the first N rows.", allowed=AT_LEAST_ONE)


@dataclass
class LoggingArgs:
    output_dir: str = _f("runs/flowhf", "Run directory (metrics, checkpoints, final model).")
    logging_steps: int = _f(1, "Log metrics every N steps.", allowed=AT_LEAST_ONE)
    save_steps: int = _f(
        50, "Checkpoint every N steps (0 = only at the end).", allowed=NON_NEGATIVE
    )
    save_total_limit: int = _f(2, "Keep this many recent checkpoints.", allowed=AT_LEAST_ONE)
    report_to: list[str] = _f(
        None,
        "Sinks: jsonl, csv (always), tensorboard, wandb (when installed).",
        allowed=OneOf(("jsonl", "csv", "tensorboard", "wandb")),
    )
    histogram_every: int = _f(
        0, "Log log-prob / flow histograms every N steps (0 = off).", allowed=NON_NEGATIVE
    )
    progress_bar: bool = _f(True, "Show a progress bar.")


GROUPS = {
    "model": ModelArgs,
    "target": TargetArgs,
    "objective": ObjectiveArgs,
    "sampling": SamplingArgs,
    "replay": ReplayArgs,
    "optim": OptimArgs,
    "data": DataArgs,
    "logging": LoggingArgs,
}


@dataclass(init=False)
class FlowHFConfig:
    """Every training option, by group. The groups are the primary form:

        FlowHFConfig(optim=OptimArgs(learning_rate=1e-5), sampling={"samples_per_prompt": 8})

    TRL's flat `GRPOConfig` names are accepted too, where FlowHF has the same meaning, and
    land in the same group keys (`flowhf.config.trl_names`, docs/coming-from-trl.md's
    table): ``FlowHFConfig(learning_rate=1e-5, num_generations=8)`` saves the same config.yaml.
    They can also be read back (``config.output_dir``), as TrainerCallbacks read ``args``.
    """

    model: ModelArgs
    target: TargetArgs
    objective: ObjectiveArgs
    sampling: SamplingArgs
    replay: ReplayArgs
    optim: OptimArgs
    data: DataArgs
    logging: LoggingArgs

    def __init__(
        self,
        model=None,
        target=None,
        objective=None,
        sampling=None,
        replay=None,
        optim=None,
        data=None,
        logging=None,
        **trl_names: Any,
    ) -> None:
        given = dict(
            zip(GROUPS, (model, target, objective, sampling, replay, optim, data, logging))
        )
        if trl_names:
            given = apply_trl_names(given, trl_names, GROUPS)
        for name, _cls in GROUPS.items():
            setattr(self, name, _group(name, given[name]))
        self.validate()

    def __getattr__(self, name: str) -> Any:
        """TRL's one-to-one flat names, read from their group (``args.output_dir`` in a callback)."""
        if name in SAME_MEANING and "logging" in self.__dict__:
            group, key = SAME_MEANING[name].split(".")
            return getattr(getattr(self, group), key)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def validate(self) -> None:
        """Reject combinations that cannot work, saying how to fix them."""
        o, s = self.objective, self.sampling
        k = get_objective(o.objective).group_size(o)
        if s.samples_per_prompt < k:
            raise ValueError(
                f"objective={o.objective} (logz={o.logz}) needs sampling.samples_per_prompt >= {k} "
                "(several samples of each prompt); raise it or use objective.logz=scalar/prompt"
            )
        n_on = (
            s.samples_per_prompt
            - round(s.offpolicy_fraction * s.samples_per_prompt)
            - round(self.replay.replay_ratio * s.samples_per_prompt)
        )
        if n_on < 1:
            raise ValueError(
                "replay_ratio + offpolicy_fraction leave no on-policy sample per prompt; lower them"
            )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None, source: str | Source = "config") -> FlowHFConfig:
        """A checked config from group -> key -> value; errors are `ConfigError`s naming the
        file and line (or the ``--set``) of the key, the bad value and what is allowed."""
        src = source if isinstance(source, Source) else Source(source)
        data = data or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{src.where()}: expected a mapping of groups ({', '.join(GROUPS)})")
        groups = {}
        for name, value in data.items():
            if name not in GROUPS:
                raise ConfigError(
                    f"{src.where(name)}: unknown group {name!r}{suggest(name, GROUPS)}; "
                    f"groups are {', '.join(GROUPS)}"
                )
            groups[name] = build_dataclass(GROUPS[name], value or {}, name, src, (name,))
        try:
            return cls(**groups)
        except ValueError as err:  # a combination across groups
            raise ConfigError(f"{src.where()}: {err}") from None

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None) -> FlowHFConfig:
        return cls.from_dict(*read_with_overrides(path, overrides or [], GROUPED))


def _group(name: str, value: Any):
    """A group given as its dataclass, a mapping of its keys (checked), or None (defaults)."""
    cls = GROUPS[name]
    if value is None:
        return cls()
    if isinstance(value, dict):
        return build_dataclass(cls, value, f"FlowHFConfig({name}=...)", None, (name,))
    if not isinstance(value, cls):
        raise ConfigError(
            f"FlowHFConfig({name}=...): expected {cls.__name__} or a dict of its keys, "
            f"got {type(value).__name__}"
        )
    return value


def _key_to_group() -> dict[str, str]:
    return {f.name: group for group, cls in GROUPS.items() for f in dataclasses.fields(cls)}


def _group_and_key(key: str) -> tuple[str, str]:
    """(group, key) of a ``group.key`` or bare ``key`` override; unknown ones are errors."""
    flat = _key_to_group()
    if "." in key:
        group, name = key.split(".", 1)
    elif key in flat:
        group, name = flat[key], key
    else:
        raise ConfigError(f"--set {key!r}: unknown key{suggest(key, flat)}")
    if group not in GROUPS:
        raise ConfigError(f"--set {key!r}: unknown group {group!r}{suggest(group, GROUPS)}")
    valid = {f.name for f in dataclasses.fields(GROUPS[group])}
    if name not in valid:
        raise ConfigError(f"--set {key!r}: {group} has no key {name!r}{suggest(name, valid)}")
    return group, name


# a group that is not a mapping yet (absent, or `model:` with nothing under it) becomes one
GROUPED = Overrides(
    "target.beta=10",
    path=_group_and_key,
    child=lambda node, group, _item: node[group] if isinstance(node.get(group), dict) else {},
)


def apply_overrides(data: dict, overrides: list[str]) -> set[str]:
    """Apply ``group.key=value`` / ``key=value`` overrides (values parsed as YAML) in place;
    returns the dotted keys set (errors then name the ``--set``, not the file)."""
    return fields.apply_overrides(data, overrides, GROUPED)


def describe() -> str:
    """Every option with its default and help text (for `flowhf train --help-config`)."""
    lines = []
    for group, cls in GROUPS.items():
        lines.append(f"{group}:")
        for f in dataclasses.fields(cls):
            lines.append(f"  {f.name} = {f.default!r}\n      {f.metadata['help']}")
    return "\n".join(lines)
