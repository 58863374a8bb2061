"""PEFT LoRA wrapping of the policy.

Under LoRA the reference policy p_ref is the *same* network with its adapters switched off
(``PeftModel.disable_adapter()``), so the target's ``alpha * log p_ref(y|x)`` term costs no
second copy of the model. ``flowhf.models.loading.PolicyBundle.reference_mode`` does the
switching.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import torch.nn as nn
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import PreTrainedModel

DEFAULT_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")


@dataclass
class LoraSettings:
    """Low-rank adapter settings (a small, validated subset of ``peft.LoraConfig``)."""

    r: int = field(default=16, metadata={"help": "LoRA rank: width of the low-rank update (> 0)."})
    alpha: float = field(
        default=32,
        metadata={"help": "LoRA scaling numerator; the update is scaled by alpha / r (> 0)."},
    )
    dropout: float = field(
        default=0.05,
        metadata={"help": "Dropout on the adapter input during training, in [0, 1)."},
    )
    target_modules: list[str] | str = field(
        default_factory=lambda: list(DEFAULT_TARGET_MODULES),
        metadata={
            "help": "Module names (suffixes) that get adapters, e.g. the attention "
            "projections of LLaMA-style models; or the PEFT shortcut string 'all-linear'."
        },
    )

    def __post_init__(self) -> None:
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r <= 0:
            raise ValueError(f"LoraSettings.r must be a positive integer, got {self.r!r}.")
        if not isinstance(self.alpha, (int, float)) or self.alpha <= 0:
            raise ValueError(f"LoraSettings.alpha must be a positive number, got {self.alpha!r}.")
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoraSettings.dropout must be in [0, 1), got {self.dropout!r}.")
        self.target_modules = _check_targets(self.target_modules)


def lora_shape(model_args) -> dict:
    """`LoraSettings` keywords from a config's model group (``lora_r``, ``lora_alpha``,
    ``lora_dropout``, ``lora_target_modules``): one mapping for the trainer and for the
    baselines that must get the same adapters."""
    m = model_args
    shape = {"r": m.lora_r, "alpha": m.lora_alpha, "dropout": m.lora_dropout}
    return {**shape, "target_modules": m.lora_target_modules} if m.lora_target_modules else shape


def _check_targets(targets: list[str] | tuple[str, ...] | str) -> list[str] | str:
    """Accept 'all-linear' or a non-empty list of module-name strings; tuples become lists
    so the settings round-trip through YAML/JSON unchanged."""
    if isinstance(targets, str):
        if targets != "all-linear":
            raise ValueError(
                f"LoraSettings.target_modules: got the string {targets!r}; give a list of module "
                "names such as ['q_proj', 'v_proj'] or the shortcut 'all-linear'."
            )
        return targets
    targets = list(targets)
    if targets == [
        "all-linear"
    ]:  # the shortcut as a one-item list (model.lora_target_modules is a list)
        return "all-linear"
    if not targets or not all(isinstance(t, str) and t for t in targets):
        raise ValueError(
            "LoraSettings.target_modules must be a non-empty list of module names "
            f"(e.g. ['q_proj', 'v_proj']), got {targets!r}."
        )
    return targets


def build_lora_config(
    settings: LoraSettings, task_type: str | None = "CAUSAL_LM", **extra: Any
) -> LoraConfig:
    """peft's ``LoraConfig`` of ``settings``, the one place FlowHF builds one (the policy's
    adapters, TRL's ``peft_config``, PPO's value model, reward-model training). ``task_type``
    None leaves peft's model type unset (adapters injected into a bare backbone); ``extra``
    passes other LoraConfig fields (e.g. ``layers_to_transform``)."""
    return LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.target_modules,
        bias="none",
        task_type=task_type,
        **extra,
    )


def apply_lora(model: PreTrainedModel, settings: LoraSettings) -> PeftModel:
    """Wrap ``model`` with fresh LoRA adapters; only adapter weights stay trainable.

    The wrapping modifies ``model`` in place (PEFT injects the adapter layers into it), so
    do not keep using the bare ``model`` as an untouched copy afterwards.
    """
    if isinstance(model, PeftModel):
        raise ValueError(
            "apply_lora: the model already carries PEFT adapters; pass the bare base model, "
            "or keep training the existing PeftModel without new adapters (lora=None)."
        )
    config = build_lora_config(settings)
    try:
        with (
            warnings.catch_warnings()
        ):  # PEFT reads transformers' deprecated is_gradient_checkpointing
            warnings.filterwarnings(
                "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
            )
            return get_peft_model(model, config)
    except ValueError as err:
        # PEFT's message lists the targets but not what the model actually has.
        if "not found" not in str(err):
            raise
        linear_names = sorted(
            {name.rsplit(".", 1)[-1] for name, mod in model.named_modules() if _is_linear(mod)}
        )
        raise ValueError(
            f"LoRA target_modules {settings.target_modules!r} match no layer of "
            f"{type(model).__name__}. Its linear layers are named: {linear_names}. "
            "Set lora target_modules to some of these (or 'all-linear')."
        ) from err


def _is_linear(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear)
