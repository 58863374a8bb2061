"""Quickstart: a TRL GRPO script, trained by FlowHF.

The only FlowHF line is the import below; with `from trl import GRPOConfig, GRPOTrainer`
instead, TRL's GRPOTrainer runs the same script. FlowHF learns to sample completions in
proportion to p_ref(y|x) * exp(reward) instead of maximising the reward.

    python examples/quickstart.py
    EXAMPLE_MODEL=path/to/model EXAMPLE_MAX_STEPS=2 python examples/quickstart.py   # a quick run
"""

import os

import torch
from datasets import Dataset

from flowhf.training import FlowHFConfig as GRPOConfig, FlowHFTrainer as GRPOTrainer

MODEL = os.environ.get("EXAMPLE_MODEL", "HuggingFaceTB/SmolLM2-135M-Instruct")
MAX_STEPS = int(os.environ.get("EXAMPLE_MAX_STEPS", "100"))
OUTPUT_DIR = os.environ.get("EXAMPLE_OUTPUT_DIR", "runs/quickstart")

dataset = Dataset.from_list(
    [
        {"prompt": "Write one sentence about the sea."},
        {"prompt": "Write one sentence about a forest."},
        {"prompt": "Write one sentence about the desert."},
        {"prompt": "Write one sentence about a city at night."},
    ]
)


def reward_len(completions, **kwargs):
    """Prefer completions of about 40 characters (TRL's quickstart reward)."""
    return [-abs(40 - len(completion)) / 40 for completion in completions]


args = GRPOConfig(
    output_dir=OUTPUT_DIR,
    max_steps=MAX_STEPS,
    num_generations=4,
    per_device_train_batch_size=8,  # completions per step: 2 prompts x 4
    max_completion_length=24,
    learning_rate=1e-5,
    logging_steps=10,
    bf16=torch.cuda.is_available(),
)
trainer = GRPOTrainer(model=MODEL, reward_funcs=reward_len, args=args, train_dataset=dataset)
trainer.train()
print(f"trained {trainer.state.global_step} steps; model in {OUTPUT_DIR}")
