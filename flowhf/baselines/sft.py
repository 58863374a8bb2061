"""Supervised fine-tuning baseline with TRL's `SFTTrainer` (the report's "Baseline model").

Data: prompt -> completion pairs (StackExchange: question -> response_j, the preferred answer).
With a chat template the pairs are TRL's conversational prompt/completion format, so TRL renders
``[user: question]`` + generation prompt exactly as FlowHF formats prompts, and the loss covers
only the assistant turn (including its end-of-turn token, so the model learns to stop). Without
a chat template the raw prompt text is followed directly by the completion (TRL appends EOS); a
single space is inserted when neither side has whitespace at the junction, so words do not fuse.

The result is saved MERGED (LoRA folded into the weights) under ``output_dir/model``: a plain
folder that GFlowNet, GRPO and PPO runs start from.
"""

from __future__ import annotations

import os
from typing import Any

from flowhf.baselines.budget import Budget
from flowhf.baselines.common import (
    COMMON_TRAINER_KWARGS,
    finish_run,
    load_training_rows,
    lora_config,
    start_run,
    step_cap,
)
from flowhf.models.lora import LoraSettings
from flowhf.sampling.prompts import as_conversation, uses_chat_template


def sft_examples(rows: list[dict[str, Any]], chat: bool) -> list[dict[str, Any]]:
    """TRL prompt/completion examples from rows with ``prompt`` and ``completion``."""
    examples = []
    for row in rows:
        prompt, completion = str(row["prompt"]), str(row["completion"])
        if chat:
            examples.append({"prompt": as_conversation(prompt),
                             "completion": [{"role": "assistant", "content": completion}]})
        else:
            if prompt and completion and not prompt[-1].isspace() and not completion[0].isspace():
                completion = " " + completion
            examples.append({"prompt": prompt, "completion": completion})
    return examples


def run_sft(
    model: Any,
    train_source: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    budget: Budget | dict,
    lora: LoraSettings | dict | None = None,
    tokenizer: Any = None,
    max_length: int = 512,
    lr: float = 2e-4,
    batch_size: int = 8,
    seed: int = 0,
    epochs: float | None = None,
    columns: dict[str, str] | None = None,
    split: str | None = None,
    limit: int | None = None,
    use_chat_template: bool = True,
    trl_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fine-tune ``model`` on prompt/completion pairs with TRL's SFTTrainer; returns the result dict.

    ``model``: "smollm2", a folder, a Hub id, or a built model (then pass ``tokenizer``).
    ``budget``: seconds and/or max_steps (SFT generates no tokens, so a token limit never fires).
    ``epochs``: passes over the data; None repeats the data until the budget ends.
    ``columns``: our name -> source column (default: StackExchange's question/response_j mapped).
    ``trl_overrides``: extra `trl.SFTConfig` fields, applied last.
    """
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    run = start_run("sft", model, tokenizer, output_dir, budget, lora, seed)
    recorder, policy, tokenizer, lora = run.recorder, run.policy, run.tokenizer, run.lora
    tokenizer.padding_side = "right"  # training batches; left padding is only for generation
    chat = uses_chat_template(tokenizer, use_chat_template)
    rows = load_training_rows(train_source, ["prompt", "completion"], columns, split, limit)
    dataset = Dataset.from_list(sft_examples(rows, chat))

    max_steps = recorder.budget.max_steps or (-1 if epochs is not None else step_cap(recorder.budget))
    config_kwargs = {
        **COMMON_TRAINER_KWARGS,
        "output_dir": str(output_dir),
        "learning_rate": lr,
        "per_device_train_batch_size": batch_size,
        "seed": seed,
        "data_seed": seed,
        "max_steps": max_steps,
        "num_train_epochs": float(epochs) if epochs is not None else 1.0,
        "max_length": max_length,
        "completion_only_loss": True,
        "packing": False,
        **(trl_overrides or {}),
    }
    trainer = SFTTrainer(
        model=policy,
        args=SFTConfig(**config_kwargs),
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora_config(lora),
        callbacks=recorder.callbacks,
    )
    trainer.train()

    tokenizer.padding_side = "left"  # saved for generation, as FlowHF's loader prepares it
    settings = {
        "train_source": train_source, "rows": len(rows), "chat_template": chat, "max_length": max_length,
        "lr": lr, "batch_size": batch_size, "seed": seed, "epochs": epochs, "lora": lora,
        "trl_config": config_kwargs,
    }
    return finish_run(run, trainer.model, tokenizer, output_dir, settings)
