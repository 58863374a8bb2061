"""A reward that reads a dataset column: TRL passes every other column to reward functions
by name, and so does FlowHF (here `solution`).

The only FlowHF line is the import below (TRL: `from trl import GRPOConfig, GRPOTrainer`).

    EXAMPLE_MODEL=path/to/model EXAMPLE_MAX_STEPS=2 python examples/accuracy_reward.py
"""

import os
import re

import torch
from datasets import Dataset

from flowhf.training import FlowHFConfig as GRPOConfig, FlowHFTrainer as GRPOTrainer

MODEL = os.environ.get("EXAMPLE_MODEL", "HuggingFaceTB/SmolLM2-135M-Instruct")
MAX_STEPS = int(os.environ.get("EXAMPLE_MAX_STEPS", "200"))
OUTPUT_DIR = os.environ.get("EXAMPLE_OUTPUT_DIR", "runs/accuracy_reward")

dataset = Dataset.from_list(
    [
        {"prompt": f"What is {a} + {b}? Answer with the number only.", "solution": str(a + b)}
        for a, b in [(2, 3), (4, 4), (7, 1), (6, 3), (5, 5), (9, 2)]
    ]
)


def accuracy(completions, solution, **kwargs):
    """1 when the first number in the completion is the solution, else 0."""
    rewards = []
    for completion, answer in zip(completions, solution):
        found = re.search(r"-?\d+", completion)
        rewards.append(1.0 if found and found.group() == answer else 0.0)
    return rewards


args = GRPOConfig(
    output_dir=OUTPUT_DIR,
    max_steps=MAX_STEPS,
    num_generations=4,
    per_device_train_batch_size=8,
    max_completion_length=8,
    learning_rate=1e-5,
    logging_steps=10,
    bf16=torch.cuda.is_available(),
)
trainer = GRPOTrainer(model=MODEL, reward_funcs=accuracy, args=args, train_dataset=dataset)
trainer.train()
print(f"trained {trainer.state.global_step} steps; model in {OUTPUT_DIR}")
