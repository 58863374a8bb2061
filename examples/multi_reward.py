"""Several reward functions, weighted (reward_weights). A function returns None for a sample
it does not apply to: the weighted sum skips it there, as TRL's nansum does. One function
is async; async and sync functions mix. `trainer_state` lets a reward change with training.

The only FlowHF line is the import below (TRL: `from trl import GRPOConfig, GRPOTrainer`).

    EXAMPLE_MODEL=path/to/model EXAMPLE_MAX_STEPS=2 python examples/multi_reward.py
"""

import asyncio
import os
import re

import torch
from datasets import Dataset

from flowhf.training import FlowHFConfig as GRPOConfig, FlowHFTrainer as GRPOTrainer

MODEL = os.environ.get("EXAMPLE_MODEL", "HuggingFaceTB/SmolLM2-135M-Instruct")
MAX_STEPS = int(os.environ.get("EXAMPLE_MAX_STEPS", "100"))
OUTPUT_DIR = os.environ.get("EXAMPLE_OUTPUT_DIR", "runs/multi_reward")

dataset = Dataset.from_list(
    [
        {"prompt": "What is 3 + 4?", "task": "math", "answer": "7"},
        {"prompt": "What is 10 - 6?", "task": "math", "answer": "4"},
        {"prompt": "Name a colour of the sky.", "task": "open", "answer": ""},
        {"prompt": "Say something about rain.", "task": "open", "answer": ""},
    ]
)


def math_accuracy(completions, task, answer, **kwargs):
    """1 / 0 for math rows; None (does not apply) for the others."""
    rewards = []
    for completion, kind, expected in zip(completions, task, answer):
        if kind != "math":
            rewards.append(None)
            continue
        found = re.search(r"-?\d+", completion)
        rewards.append(1.0 if found and found.group() == expected else 0.0)
    return rewards


async def brevity(completions, trainer_state, **kwargs):
    """Shorter is better, more so as training goes on (an async reward, e.g. one calling a service)."""
    await asyncio.sleep(0)
    strength = min(1.0, (trainer_state.global_step + 1) / 50)
    return [-strength * len(completion.split()) / 20 for completion in completions]


def ends_cleanly(completions, **kwargs):
    """1 when the completion ends with a full stop."""
    return [1.0 if completion.strip().endswith(".") else 0.0 for completion in completions]


args = GRPOConfig(
    output_dir=OUTPUT_DIR,
    max_steps=MAX_STEPS,
    num_generations=4,
    per_device_train_batch_size=8,
    max_completion_length=16,
    learning_rate=1e-5,
    reward_weights=[1.0, 0.5, 0.2],
    logging_steps=10,
    bf16=torch.cuda.is_available(),
)
trainer = GRPOTrainer(
    model=MODEL,
    reward_funcs=[math_accuracy, brevity, ends_cleanly],
    args=args,
    train_dataset=dataset,
)
trainer.train()
print(f"trained {trainer.state.global_step} steps; model in {OUTPUT_DIR}")
