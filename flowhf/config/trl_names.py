"""TRL's flat `GRPOConfig` names on `FlowHFConfig`: where each lands among our groups.

A TRL script keeps its config call (``GRPOConfig(output_dir=..., num_generations=8, ...)``)
and gets the FlowHF config the grouped form gives (the same config.yaml): the grouped form
stays the primary one, so each flat name is turned into group keys here, once, and then
checked by the same loader as YAML files (`flowhf.config.fields.build_dataclass`).

Three kinds of names (docs/coming-from-trl.md's table lists each one, and a test applies
every row of that table):
- `SAME_MEANING`: one FlowHF key means exactly what the TRL name means.
- `CONVERTED`: the meaning is the same but the unit differs (TRL's batch size counts
  completions, its temperature is one fixed value, ...): a function gives the keys.
- `INSTEAD`: FlowHF has no such option, or the name means something else here (TRL's `beta`
  is a KL coefficient): an error that says what to use instead. Any other GRPOConfig /
  TrainingArguments name is an error too; nothing is dropped silently.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from typing import Any

from flowhf.config.fields import build_dataclass, suggest
from flowhf.errors import ConfigError

Lookup = Callable[[str], Any]  # "group.key" -> its value so far (given, or the default)
# a converter: (the TRL value, every TRL name given, the current values) -> FlowHF group keys
Converter = Callable[[Any, dict, Lookup], dict]

# TRL name -> the FlowHF key with the same meaning.
SAME_MEANING = {
    "output_dir": "logging.output_dir",
    "learning_rate": "optim.learning_rate",
    "seed": "optim.seed",
    "logging_steps": "logging.logging_steps",
    "save_steps": "logging.save_steps",
    "save_total_limit": "logging.save_total_limit",
    "bf16": "model.autocast_bf16",
    "max_grad_norm": "optim.max_grad_norm",
    "num_generations": "sampling.samples_per_prompt",
    "max_completion_length": "sampling.max_new_tokens",
    "max_prompt_length": "sampling.max_prompt_length",
    "reward_weights": "target.reward_weights",
    "trust_remote_code": "model.trust_remote_code",
    "top_p": "sampling.top_p",
    "weight_decay": "optim.weight_decay",
    "warmup_steps": "optim.warmup_steps",
    "gradient_checkpointing": "model.gradient_checkpointing",
}
TRL_DEFAULT_EPOCHS = 3.0  # what TRL trains for when max_steps is not positive
REPORT_SINKS = ("tensorboard", "wandb")  # TRL integrations FlowHF also writes to
ALWAYS_WRITTEN = [
    "jsonl",
    "csv",
]  # FlowHF's own files (resume cuts them back): kept whatever report_to says


def _max_steps(value: Any, names: dict, current: Lookup) -> dict:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value > 0:
        return {"optim.max_steps": value}  # (a bad type is reported by the loader)
    return {
        "optim.num_train_epochs": names.get("num_train_epochs", TRL_DEFAULT_EPOCHS)
    }  # TRL: -1 = by epochs


def _num_train_epochs(value: Any, names: dict, current: Lookup) -> dict:
    steps = names.get("max_steps")
    if isinstance(steps, (int, float)) and steps > 0:
        warnings.warn(
            f"num_train_epochs={value} is overridden by max_steps={steps}, as in TRL", stacklevel=4
        )
        return {}
    return {"optim.num_train_epochs": value}


def _temperature(value: Any, names: dict, current: Lookup) -> dict:
    """TRL samples every batch at one temperature: FlowHF's exploration range, always, at that value."""
    return {
        "sampling.explore_prob": 1.0,
        "sampling.temperature_low": value,
        "sampling.temperature_high": value,
    }


def _per_device_train_batch_size(value: Any, names: dict, current: Lookup) -> dict:
    """TRL counts completions per device; FlowHF counts prompts (each with samples_per_prompt)."""
    k = current("sampling.samples_per_prompt")
    if not isinstance(value, int) or isinstance(value, bool) or value < 1 or value % k:
        raise ConfigError(
            f"FlowHFConfig(per_device_train_batch_size={value!r}): it counts completions, as in TRL, and "
            f"must be a positive multiple of num_generations={k} (sampling.samples_per_prompt): every "
            f"prompt's {k} completions are in one batch",
            f"use per_device_train_batch_size={k * max(1, round(value / k) if isinstance(value, int) else 1)}, "
            "or set sampling.prompts_per_step (prompts per update) instead",
        )
    return {"sampling.prompts_per_step": value // k}


def _report_to(value: Any, names: dict, current: Lookup) -> dict:
    sinks = [value] if isinstance(value, str) else list(value or [])
    if sinks in (["none"], []):
        return {"logging.report_to": None}
    unknown = [s for s in sinks if s not in REPORT_SINKS]
    if unknown:
        raise ConfigError(
            f"FlowHFConfig(report_to={value!r}): FlowHF writes metrics.jsonl and metrics.csv, and reports "
            f"to {' and '.join(REPORT_SINKS)}; not to {unknown[0]!r}",
            "list the ones you want, e.g. report_to=['tensorboard'], or report_to='none'",
        )
    return {"logging.report_to": ALWAYS_WRITTEN + sinks}


def _only(name: str, default: Any, instead: str) -> Converter:
    """A TRL name FlowHF accepts only at the value that is FlowHF's own behaviour."""

    def convert(value: Any, names: dict, current: Lookup) -> dict:
        if value != default:
            raise ConfigError(
                f"FlowHFConfig({name}={value!r}): {instead}",
                f"remove {name} (or set it to {default!r})",
            )
        return {}

    return convert


def _lr_scheduler_type(value: Any, names: dict, current: Lookup) -> dict:
    """FlowHF's schedules all warm up over optim.warmup_steps: TRL's constant_with_warmup is our constant."""
    return {"optim.lr_scheduler": "constant" if value == "constant_with_warmup" else value}


def _kl_beta(value: Any, names: dict, current: Lookup) -> dict:
    """TRL's beta weighs a KL penalty; FlowHF's target.beta weighs the reward (a different meaning)."""
    if isinstance(value, (int, float)) and value > 0:
        equivalent = f"`target.alpha=1, target.beta={1 / value:g}`"
    else:
        equivalent = "`target.alpha=0` with a large `target.beta` (no KL: reward maximisation), or `objective.objective=pg`"
    raise ConfigError(
        f"FlowHFConfig(beta={value!r}): TRL's beta is a KL coefficient; FlowHF's target.beta weighs the "
        f"reward. The same optimum, p(y|x) ∝ p_ref(y|x) exp(r / beta), is {equivalent}",
        "pass target=TargetArgs(alpha=..., beta=...) (or target={'alpha': ..., 'beta': ...}) and drop beta",
    )


CONVERTED: dict[str, Converter] = {
    "max_steps": _max_steps,
    "num_train_epochs": _num_train_epochs,
    "temperature": _temperature,
    "per_device_train_batch_size": _per_device_train_batch_size,
    "report_to": _report_to,
    "beta": _kl_beta,
    "lr_scheduler_type": _lr_scheduler_type,
    "gradient_accumulation_steps": _only(
        "gradient_accumulation_steps",
        1,
        "FlowHF updates once per sampled batch; for N times the completions per "
        "update, multiply per_device_train_batch_size by N",
    ),
    "use_vllm": _only("use_vllm", False, "FlowHF samples with its own KV-cached sampler (no vLLM)"),
    "remove_unused_columns": _only(
        "remove_unused_columns",
        False,
        "FlowHF passes every dataset column to reward functions, as TRL's GRPO does",
    ),
}
# TRL names FlowHF has no option for (or a different one): what to use instead.
INSTEAD = {
    "loss_type": "FlowHF's losses are GFlowNet objectives: set objective.objective (tb, subtb, fl, db, pg)",
    "scale_rewards": "FlowHF does not normalise rewards per group; target.reward_scale sets the reward's unit",
    "num_iterations": "FlowHF takes one update per sampled batch; replay.replay_ratio re-trains on earlier samples",
    "epsilon": "FlowHF's objectives have no clipped ratio; optim.max_grad_norm clips the gradient",
    "fp16": "FlowHF trains in float32 or under bf16 autocast: use bf16=True",
    "eval_strategy": "FlowHFTrainer does not evaluate during training: run `flowhf eval` on the saved model",
    "log_completions": "FlowHF logs metrics, not completion tables: sample the saved model with `flowhf eval`",
    "push_to_hub": "FlowHF saves to output_dir: push that folder with huggingface_hub",
}
TRL_NAMES = sorted({*SAME_MEANING, *CONVERTED, *INSTEAD})


def apply_trl_names(
    groups: dict[str, Any], names: dict[str, Any], classes: dict[str, type]
) -> dict[str, Any]:
    """``groups`` (group name -> dataclass, dict or None) with the TRL ``names`` applied, each
    group rebuilt as its dataclass in ``classes`` and checked; a name FlowHF cannot honour is
    a ConfigError saying why."""
    for name in names:
        _check_known(name, classes)
    data = {g: _as_dict(v) for g, v in groups.items()}

    def current(dotted: str) -> Any:
        group, key = dotted.split(".")
        return data[group].get(key, getattr(classes[group], key))

    for name in sorted(names, key=_order):
        value = names[name]
        keys = (
            {SAME_MEANING[name]: value}
            if name in SAME_MEANING
            else CONVERTED[name](value, names, current)
        )
        for dotted, v in keys.items():
            group, key = dotted.split(".")
            data[group][key] = v
    where = "FlowHFConfig(" + ", ".join(f"{n}=..." for n in names) + ")"
    return {g: build_dataclass(cls, data[g], where, None, (g,)) for g, cls in classes.items()}


def _order(name: str) -> int:
    """num_generations before the batch size that is counted in its units."""
    return 1 if name == "per_device_train_batch_size" else 0


def _as_dict(value: Any) -> dict:
    if value is None:
        return {}
    if isinstance(value, dict):
        return dict(value)
    return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}


def _check_known(name: str, groups: dict[str, type]) -> None:
    if name in SAME_MEANING or name in CONVERTED:
        return
    if name in INSTEAD:
        raise ConfigError(f"FlowHFConfig({name}=...): {INSTEAD[name]}", f"remove {name}")
    if name in _trl_fields():
        raise ConfigError(
            f"FlowHFConfig({name}=...): TRL's {name} has no FlowHF equivalent",
            "remove it; the table in docs/coming-from-trl.md lists the TRL names FlowHF takes",
        )
    raise ConfigError(
        f"FlowHFConfig got an unknown keyword {name!r}{suggest(name, [*TRL_NAMES, *groups])}",
        f"use a group ({', '.join(groups)}) or one of TRL's names: {', '.join(TRL_NAMES)}",
    )


def _trl_fields() -> set[str]:
    """Every GRPOConfig (and TrainingArguments) field name, to tell TRL's names from typos."""
    try:
        from trl import GRPOConfig
    except ImportError:  # without TRL every unknown name is just unknown
        return set()
    return {f.name for f in dataclasses.fields(GRPOConfig)}


def with_peft_config(config, peft_config: Any):
    """``config`` with TRL's ``peft_config`` (a peft LoraConfig) as its model.lora_* keys.

    FlowHF trains LoRA adapters by default (model.lora); TRL trains the full model unless given
    a peft_config. A LoRA option FlowHF does not have, or another PEFT method, is an error."""
    if peft_config is None:
        return config
    from peft import LoraConfig

    if not isinstance(peft_config, LoraConfig):
        raise ConfigError(
            f"peft_config={type(peft_config).__name__}: FlowHF trains LoRA adapters only",
            "pass a peft.LoraConfig, or set model.lora=false for full fine-tuning",
        )
    unsupported = {
        name: getattr(peft_config, name)
        for name, default in _LORA_DEFAULTS.items()
        if getattr(peft_config, name, default) != default
    }
    if unsupported:
        name, value = next(iter(unsupported.items()))
        raise ConfigError(
            f"peft_config.{name}={value!r}: FlowHF's LoRA takes r, lora_alpha, lora_dropout and "
            "target_modules only",
            f"leave {name} at {_LORA_DEFAULTS[name]!r}",
        )
    modules = peft_config.target_modules
    keys = {
        "lora": True,
        "lora_r": peft_config.r,
        "lora_alpha": peft_config.lora_alpha,
        "lora_dropout": peft_config.lora_dropout,
        "lora_target_modules": [modules]
        if isinstance(modules, str)
        else sorted(modules)
        if modules
        else None,
    }
    model = build_dataclass(
        type(config.model), {**_as_dict(config.model), **keys}, "peft_config", None, ("model",)
    )
    return dataclasses.replace(config, model=model)


_LORA_DEFAULTS = {"bias": "none", "use_rslora": False, "use_dora": False, "modules_to_save": None}


def refuse_eval_dataset(eval_dataset: Any) -> None:
    """TRL's eval_dataset: FlowHFTrainer does not evaluate during training, so it is an error."""
    if eval_dataset is not None:
        raise ConfigError(
            "eval_dataset: FlowHFTrainer does not evaluate during training",
            "drop eval_dataset and evaluate the saved model with `flowhf eval`",
        )
