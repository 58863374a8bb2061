"""Train, stop, resume from the newest checkpoint, save the model, load it back and sample.
A TrainerCallback of your own logs as under TRL (on_log, on_step_end, on_save).

The only FlowHF line is the import below (TRL: `from trl import GRPOConfig, GRPOTrainer`).

    EXAMPLE_MODEL=path/to/model EXAMPLE_MAX_STEPS=2 python examples/train_resume_save_load.py
"""

import os

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from flowhf.training import FlowHFConfig as GRPOConfig, FlowHFTrainer as GRPOTrainer

MODEL = os.environ.get("EXAMPLE_MODEL", "HuggingFaceTB/SmolLM2-135M-Instruct")
MAX_STEPS = int(os.environ.get("EXAMPLE_MAX_STEPS", "40"))
OUTPUT_DIR = os.environ.get("EXAMPLE_OUTPUT_DIR", "runs/train_resume_save_load")

dataset = Dataset.from_list(
    [{"prompt": f"Tell me a fact about {topic}."} for topic in ["owls", "tea", "rivers", "snow"]]
)


def has_number(completions, **kwargs):
    """Facts with a number in them."""
    return [1.0 if any(ch.isdigit() for ch in completion) else 0.0 for completion in completions]


class PrintLogs(TrainerCallback):
    """Your own logging: every logged step, every checkpoint."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        print(f"step {state.global_step}/{state.max_steps}: {len(logs)} values logged")

    def on_save(self, args, state, control, **kwargs):
        print(f"checkpoint at step {state.global_step} in {args.output_dir}")


def config(max_steps):
    return GRPOConfig(
        output_dir=OUTPUT_DIR,
        max_steps=max_steps,
        save_steps=max(1, max_steps // 2),
        num_generations=4,
        per_device_train_batch_size=8,
        max_completion_length=16,
        learning_rate=1e-5,
        logging_steps=1,
        bf16=torch.cuda.is_available(),
    )


# First run: stops after MAX_STEPS steps (checkpoints on the way).
GRPOTrainer(
    model=MODEL,
    reward_funcs=has_number,
    args=config(MAX_STEPS),
    train_dataset=dataset,
    callbacks=[PrintLogs()],
).train()

# Second run: continues from the newest checkpoint up to twice as many steps.
trainer = GRPOTrainer(
    model=MODEL,
    reward_funcs=has_number,
    args=config(2 * MAX_STEPS),
    train_dataset=dataset,
    callbacks=[PrintLogs()],
)
trainer.train(resume_from_checkpoint=True)
print(f"resumed to step {trainer.state.global_step}; {len(trainer.state.log_history)} log entries")

final_dir = os.path.join(OUTPUT_DIR, "final")
trainer.save_model(final_dir)

# Load the saved model with plain transformers and sample from it.
tokenizer = AutoTokenizer.from_pretrained(final_dir)
model = AutoModelForCausalLM.from_pretrained(final_dir)
inputs = tokenizer.apply_chat_template(
    [{"role": "user", "content": "Tell me a fact about owls."}],
    add_generation_prompt=True,
    return_tensors="pt",
    return_dict=True,
)
output = model.generate(**inputs, max_new_tokens=16, do_sample=True)
print(
    "sample:", tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
)
