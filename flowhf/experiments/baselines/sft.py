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

from typing import Any

from flowhf.config.baselines import SFTArgs
from flowhf.experiments.baselines.common import finish_run, start_run, step_cap, trainer_kwargs
from flowhf.experiments.baselines.requires import require_trl
from flowhf.experiments.baselines.run_parts import (
    PathLike,
    build_trainer,
    read_rows,
    shared_settings,
)
from flowhf.sampling.prompts import as_conversation


def sft_examples(rows: list[dict[str, Any]], chat: bool) -> list[dict[str, Any]]:
    """TRL prompt/completion examples from rows with ``prompt`` and ``completion``."""
    examples = []
    for row in rows:
        prompt, completion = str(row["prompt"]), str(row["completion"])
        if chat:
            examples.append(
                {
                    "prompt": as_conversation(prompt),
                    "completion": [{"role": "assistant", "content": completion}],
                }
            )
        else:
            if prompt and completion and not prompt[-1].isspace() and not completion[0].isspace():
                completion = " " + completion
            examples.append({"prompt": prompt, "completion": completion})
    return examples


def run_sft(
    model: Any,
    train_source: PathLike,
    output_dir: PathLike,
    *,
    tokenizer: Any = None,
    **options: Any,
) -> dict[str, Any]:
    """Fine-tune ``model`` on prompt/completion pairs with TRL's SFTTrainer; returns the result dict.

    ``model``: "smollm2", a folder, a Hub id, or a built model (then pass ``tokenizer``).
    ``options``: the other keys of `flowhf.config.baselines.SFTArgs`, where each is described
    (``budget`` is required: seconds and/or max_steps; SFT generates no tokens, so a token
    limit never fires).
    """
    require_trl("run_sft (TRL's SFTTrainer)")  # before any model loads
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    a = SFTArgs(model=model, train_source=train_source, output_dir=output_dir, **options)
    run = start_run("sft", model, tokenizer, a)
    recorder, tokenizer = run.recorder, run.tokenizer
    tokenizer.padding_side = "right"  # training batches; left padding is only for generation
    started = read_rows(run, a, train_source, ["prompt", "completion"])
    max_steps = recorder.budget.max_steps or (
        -1 if a.epochs is not None else step_cap(recorder.budget)
    )
    config_kwargs = {
        **trainer_kwargs(a, recorder),
        "per_device_train_batch_size": a.batch_size,
        "data_seed": a.seed,
        "max_steps": max_steps,
        "num_train_epochs": float(a.epochs) if a.epochs is not None else 1.0,
        "max_length": a.max_length,
        "completion_only_loss": True,
        "packing": False,
        **(a.trl_overrides or {}),
    }
    trainer = build_trainer(
        SFTTrainer,
        run,
        SFTConfig(**config_kwargs),
        model=run.policy,
        train_dataset=Dataset.from_list(sft_examples(started.rows, started.chat)),
        processing_class=tokenizer,
    )
    trainer.train()

    tokenizer.padding_side = "left"  # saved for generation, as FlowHF's loader prepares it
    settings = {
        "train_source": train_source,
        "max_length": a.max_length,
        "batch_size": a.batch_size,
        "epochs": a.epochs,
        **shared_settings(started, a, config_kwargs),
    }
    return finish_run(run, trainer.model, tokenizer, settings)
