"""One recording reward function under TRL's GRPOTrainer and under FlowHFTrainer, on the same
tiny model and dataset: it receives the same keyword names with the same value types, for
standard (text) and conversational prompts."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from transformers import TrainerState

from flowhf.models.tiny import tiny_model_dir

WORDS = ["sea", "forest", "desert"]


def describe(value) -> str:
    """The type structure of a value: list[dict{content: str, role: str}], TrainerState, ..."""
    if isinstance(value, TrainerState):  # FlowHF's RunState is a TrainerState
        return "TrainerState"
    if isinstance(value, (list, tuple)):
        return f"list[{describe(value[0]) if value else ''}]"
    if isinstance(value, dict):
        return "dict{" + ", ".join(f"{k}: {describe(v)}" for k, v in sorted(value.items())) + "}"
    if callable(value):
        return "callable"
    return type(value).__name__


class Recorder:
    """A TRL-style reward function that remembers the keywords (and their types) it was called with."""

    def __init__(self):
        self.calls = []
        self.__name__ = "recorder"

    def __call__(self, prompts, completions, **kwargs):
        self.calls.append(
            {
                "prompts": describe(prompts),
                "completions": describe(completions),
                **{k: describe(v) for k, v in kwargs.items()},
            }
        )
        return [float(len(str(c))) / 100 for c in completions]


def dataset(conversational: bool) -> Dataset:
    rows = []
    for i, word in enumerate(WORDS):
        text = f"Describe the {word}."
        prompt = [{"role": "user", "content": text}] if conversational else text
        rows.append({"prompt": prompt, "topic": word, "number": i, "score": 0.5 * i})
    return Dataset.from_list(rows)


def trl_calls(tmp_path, data: Dataset) -> list[dict]:
    from trl import GRPOConfig, GRPOTrainer

    recorder = Recorder()
    args = GRPOConfig(
        output_dir=str(tmp_path / "trl"),
        max_steps=1,
        per_device_train_batch_size=2,
        num_generations=2,
        max_completion_length=4,
        learning_rate=1e-5,
        bf16=False,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        seed=0,
    )
    trainer = GRPOTrainer(
        model=str(tiny_model_dir()), reward_funcs=recorder, args=args, train_dataset=data
    )
    trainer.train()
    return recorder.calls


def flowhf_calls(tmp_path, data: Dataset) -> list[dict]:
    from flowhf.training import FlowHFConfig, FlowHFTrainer

    recorder = Recorder()
    args = FlowHFConfig(
        output_dir=str(tmp_path / "flowhf"),
        max_steps=1,
        per_device_train_batch_size=2,
        num_generations=2,
        max_completion_length=4,
        learning_rate=1e-5,
        bf16=False,
        report_to="none",
        logging_steps=1,
        seed=0,
    )
    args.logging.progress_bar = False
    trainer = FlowHFTrainer(
        model=str(tiny_model_dir()), reward_funcs=recorder, args=args, train_dataset=data
    )
    trainer.train()
    return recorder.calls


@pytest.mark.slow
@pytest.mark.parametrize("conversational", [False, True], ids=["text", "conversational"])
def test_a_reward_function_gets_the_same_keywords_and_types_as_under_trl(tmp_path, conversational):
    torch.manual_seed(0)
    theirs = trl_calls(tmp_path, dataset(conversational))
    ours = flowhf_calls(tmp_path, dataset(conversational))
    assert theirs and ours
    assert ours[0] == theirs[0]
    assert all(set(call) == set(theirs[0]) for call in ours)  # prefix calls (objective subtb) too
    assert set(theirs[0]) == {
        "prompts",
        "completions",
        "completion_ids",
        "topic",
        "number",
        "score",
        "trainer_state",
        "log_extra",
        "log_metric",
    }
    if conversational:
        assert theirs[0]["completions"] == "list[list[dict{content: str, role: str}]]"
    else:
        assert theirs[0]["prompts"] == "list[str]" and theirs[0]["completions"] == "list[str]"
