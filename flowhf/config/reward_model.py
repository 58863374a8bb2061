"""Reward-model config and the scoring contract saved beside a trained model.

Light on purpose (no torch / transformers import): the classifier reward reads the contract
(``flowhf_reward.json``: template, max_length, truncation side) of any FlowHF-trained model,
and `flowhf reward train --help` lists the config without loading a model.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

from flowhf.config.fields import (
    AT_LEAST_ONE,
    FLAT,
    NON_NEGATIVE,
    POSITIVE,
    OneOf,
    build_dataclass,
    help_field as _f,
    read_with_overrides,
)

REWARD_TEMPLATE = "Question: {prompt}\n\nAnswer: {completion}"
REWARD_META_FILE = "flowhf_reward.json"
DEFAULT_RM_FOLDER = "rm-stackexchange-smollm2"
MODES = ("lora", "head_only", "full")
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def format_for_reward(prompt: str, completion: str, template: str = REWARD_TEMPLATE) -> str:
    """The text a reward model sees; training and scoring must both use this."""
    return template.format(prompt=prompt, completion=completion)


@dataclass
class RewardModelConfig:
    """Everything `train_reward_model` needs; loadable from YAML (`load_reward_config`)."""

    model: str = _f(
        "smollm2", "Backbone: 'smollm2' (shipped default), Hub id, local folder or GGUF file."
    )
    train_data: str = _f(
        "stackexchange:train",
        "Training pairs: shipped name, local file or 'hf:NAME' (see flowhf.data).",
    )
    test_data: str | None = _f(
        "stackexchange:test", "Held-out pairs for pairwise accuracy; null to skip evaluation."
    )
    extra_train_data: str | None = _f(
        None,
        "More training pairs appended to train_data, e.g. 'stackexchange_gold_extra:train' (the gold "
        "reward model's extra rejected kinds, flowhf/reward_model/gold_pairs.py).",
    )
    extra_test_data: str | None = _f(
        None,
        "More held-out pairs appended to test_data, e.g. 'stackexchange_gold_extra:test'; accuracy is "
        "also reported per rejected kind.",
    )
    train_split: str | None = _f(
        None, "Split of train_data when it is a `datasets` spec (default train)."
    )
    test_split: str | None = _f(None, "Split of test_data when it is a `datasets` spec, e.g. test.")
    columns: dict[str, str] | None = _f(
        None, "Map our names prompt/chosen/rejected to your columns, e.g. {prompt: question}."
    )
    max_train_pairs: int | None = _f(
        None, "Use only the first N training pairs (null = all).", allowed=AT_LEAST_ONE
    )
    mode: str = _f(
        "head_only",
        "What trains: 'head_only' (frozen backbone run once, linear head fit on its features), "
        "'lora' (LoRA adapters + head), 'full' (every weight).",
        allowed=OneOf(MODES),
    )
    head_epochs: int = _f(
        20, "head_only: passes over the cached features (milliseconds each).", allowed=AT_LEAST_ONE
    )
    head_learning_rate: float = _f(
        1e-3, "head_only: AdamW learning rate of the linear head.", allowed=POSITIVE
    )
    epochs: int = _f(
        1,
        "lora/full: passes over the training pairs (each costs ~3 backbone passes on CPU).",
        allowed=AT_LEAST_ONE,
    )
    learning_rate: float = _f(
        2e-4,
        "lora/full: AdamW learning rate (linear warm-up over 10% of steps, then linear decay).",
        allowed=POSITIVE,
    )
    lora_r: int = _f(16, "lora: adapter rank.", allowed=AT_LEAST_ONE)
    lora_alpha: float = _f(
        32.0, "lora: scale numerator; updates are scaled by alpha / r.", allowed=POSITIVE
    )
    lora_layers: int | None = _f(
        None,
        "lora: adapt only the top N decoder layers (backward stops there: cheaper); null = all.",
        allowed=AT_LEAST_ONE,
    )
    weight_decay: float = _f(0.0, "AdamW weight decay (all modes).", allowed=NON_NEGATIVE)
    batch_size: int = _f(
        8,
        "Pairs per optimisation step; scoring runs 2x this many texts per forward.",
        allowed=AT_LEAST_ONE,
    )
    max_length: int = _f(
        256,
        "Token limit per formatted text; longer texts lose their START (the answer end is kept).",
        allowed=AT_LEAST_ONE,
    )
    bf16: bool = _f(
        True,
        "bfloat16 autocast for the backbone on CPU (faster with avx512_bf16); weights stay float32.",
    )
    seed: int = _f(0, "Seed for head init, shuffling and LoRA init.")
    output_dir: str = _f(
        "outputs/reward_model",
        "Folder for the merged model, tokenizer, metrics.json and flowhf_reward.json.",
    )
    template: str = _f(
        REWARD_TEMPLATE,
        "Text template with {prompt} and {completion}; stored with the model for scoring.",
    )
    log_every: int = _f(10, "Log loss/accuracy every N steps.", allowed=AT_LEAST_ONE)

    def __post_init__(self) -> None:
        # ranges and choices: each field's `allowed`, checked on load (flowhf.config.fields)
        try:
            format_for_reward("p", "c", self.template)
        except (KeyError, IndexError, ValueError) as err:
            raise ValueError(
                f"template must use only {{prompt}} and {{completion}} (double other braces): {err}"
            ) from None


GOLD_EXTRA_PAIRS = "stackexchange_gold_extra"


def proxy_and_gold(
    proxy: RewardModelConfig, root: str | os.PathLike
) -> tuple[RewardModelConfig, RewardModelConfig]:
    """The proxy reward model the policies train on and its gold judge (Gao et al. 2022).

    Both score on the same held-out pairs, extra kinds included, so each reports how well it
    knows every kind. The gold trains on the proxy's pairs plus two pairs per training question
    of kinds the proxy never sees (`flowhf.reward_model.gold_pairs`: three times the data), from another seed.
    """
    root = Path(root)
    held_out = proxy.extra_test_data or f"{GOLD_EXTRA_PAIRS}:test"
    proxy = dataclasses.replace(proxy, extra_test_data=held_out, output_dir=str(root / "proxy"))
    gold = dataclasses.replace(
        proxy,
        extra_train_data=f"{GOLD_EXTRA_PAIRS}:train",
        seed=proxy.seed + 1,
        output_dir=str(root / "gold"),
    )
    return proxy, gold


def load_reward_config(
    path: str | os.PathLike | None = None, overrides: list[str] = ()
) -> RewardModelConfig:
    """Read a YAML file (flat keys) and apply ``key=value`` overrides (values parsed as YAML),
    checked like every config (`flowhf.config.fields`)."""
    data, source = read_with_overrides(path, overrides, FLAT, "reward-model config")
    return build_dataclass(RewardModelConfig, data, "reward-model config", source)


def read_reward_meta(path: str | os.PathLike) -> dict:
    """The scoring contract saved with a model: template, max_length, truncation side, bf16."""
    meta_path = Path(path) / REWARD_META_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(
            f"{meta_path} not found: {path} is not a FlowHF-trained reward model folder"
        )
    return json.loads(meta_path.read_text(encoding="utf-8"))
