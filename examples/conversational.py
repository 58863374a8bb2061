"""Conversational prompts: each prompt is a list of {"role", "content"} messages, rendered by
the tokenizer's chat template as TRL renders it; each completion reaches the reward as
[{"role": "assistant", "content": ...}].

The only FlowHF line is the import below (TRL: `from trl import GRPOConfig, GRPOTrainer`).

    EXAMPLE_MODEL=path/to/model EXAMPLE_MAX_STEPS=2 python examples/conversational.py
"""

import os

import torch
from datasets import Dataset

from flowhf.training import FlowHFConfig as GRPOConfig, FlowHFTrainer as GRPOTrainer

MODEL = os.environ.get("EXAMPLE_MODEL", "HuggingFaceTB/SmolLM2-135M-Instruct")
MAX_STEPS = int(os.environ.get("EXAMPLE_MAX_STEPS", "100"))
OUTPUT_DIR = os.environ.get("EXAMPLE_OUTPUT_DIR", "runs/conversational")

SYSTEM = {"role": "system", "content": "You are a polite assistant. Answer in one sentence."}
dataset = Dataset.from_list(
    [
        {"prompt": [SYSTEM, {"role": "user", "content": question}]}
        for question in [
            "Can you help me plan a picnic?",
            "What should I cook tonight?",
            "How do I water a cactus?",
            "Which book should I read next?",
        ]
    ]
)


def politeness(completions, **kwargs):
    """Share of polite words in the assistant's message."""
    polite = {"please", "thank", "thanks", "glad", "happy", "sure", "certainly"}
    rewards = []
    for completion in completions:
        words = completion[0]["content"].lower().split()  # one assistant message per completion
        rewards.append(sum(w.strip(".,!?") in polite for w in words) / max(len(words), 1))
    return rewards


args = GRPOConfig(
    output_dir=OUTPUT_DIR,
    max_steps=MAX_STEPS,
    num_generations=4,
    per_device_train_batch_size=8,
    max_completion_length=24,
    learning_rate=1e-5,
    logging_steps=10,
    bf16=torch.cuda.is_available(),
)
trainer = GRPOTrainer(model=MODEL, reward_funcs=politeness, args=args, train_dataset=dataset)
trainer.train()
print(f"trained {trainer.state.global_step} steps; model in {OUTPUT_DIR}")
