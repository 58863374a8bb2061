"""The trainer's TRL lifecycle on the tiny model: callbacks (on_log, on_step_end, on_save, ...),
state.global_step / log_history, train(resume_from_checkpoint=True | PATH), save_model, the
dataset types and formats TRL takes, and a bare model with processing_class."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset, IterableDataset
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback, TrainerState

from flowhf.data.loading import DataError
from flowhf.errors import CheckpointError
from flowhf.models.tiny import tiny_model_dir
from flowhf.training.trainer import FlowHFTrainer
from tests.test_trainer import tiny_config, trainable_snapshot

ROWS = [
    {"prompt": "Describe the sea.", "topic": "sea"},
    {"prompt": "Describe a forest.", "topic": "forest"},
    {"prompt": "Describe the desert.", "topic": "desert"},
]


def length(completions, **_):
    return [len(c) / 10 for c in completions]


class Recorder(TrainerCallback):
    def __init__(self, stop_at=None):
        self.events, self.stop_at = [], stop_at

    def on_train_begin(self, args, state, control, **kw):
        self.events.append(("begin", state.global_step))

    def on_step_end(self, args, state, control, **kw):
        self.events.append(("step_end", state.global_step))
        if state.global_step == self.stop_at:
            control.should_training_stop = True

    def on_log(self, args, state, control, logs=None, **kw):
        self.events.append(
            (
                "log",
                state.global_step,
                args.output_dir,
                logs["train/loss"] is not None,
                "epoch" in logs,
            )
        )

    def on_save(self, args, state, control, **kw):
        self.events.append(("save", state.global_step))

    def on_train_end(self, args, state, control, model=None, **kw):
        self.events.append(("end", state.global_step, model is not None))


def test_callbacks_log_history_and_a_callbacks_stop(tmp_path):
    recorder = Recorder()
    cfg = tiny_config(
        tmp_path,
        "objective.objective=tb",
        "logging.save_steps=2",
        "logging.logging_steps=2",
        steps=3,
    )
    trainer = FlowHFTrainer(args=cfg, reward_funcs=length, train_dataset=ROWS, callbacks=[recorder])
    trainer.train()
    out = str(tmp_path / "run")
    assert recorder.events == [
        ("begin", 0),
        ("step_end", 1),
        ("step_end", 2),
        ("log", 2, out, True, True),
        ("save", 2),
        ("step_end", 3),
        ("log", 3, out, True, True),
        ("save", 3),
        ("end", 3, True),
    ]
    assert (
        isinstance(trainer.state, TrainerState)
        and trainer.state.global_step == 3 == trainer.state.max_steps
    )
    assert [e["step"] for e in trainer.state.log_history] == [2, 3]
    assert trainer.state.epoch == pytest.approx(3 * 2 / 3)  # 2 prompts a step, 3 rows

    stopping = Recorder(stop_at=1)
    cfg = tiny_config(tmp_path / "stop", "objective.objective=tb", steps=5)
    trainer = FlowHFTrainer(args=cfg, reward_funcs=length, train_dataset=ROWS, callbacks=[stopping])
    trainer.train()
    assert trainer.state.global_step == 1 and ("save", 1) in stopping.events
    assert (
        tmp_path / "stop" / "run" / "adapter_model.safetensors"
    ).is_file()  # the model is saved all the same


def test_callbacks_must_be_trainer_callbacks(tmp_path):
    with pytest.raises(TypeError, match="is not a transformers.TrainerCallback"):
        FlowHFTrainer(
            args=tiny_config(tmp_path), reward_funcs=length, train_dataset=ROWS, callbacks=[print]
        )


def test_resume_from_checkpoint_true_or_a_path_of_another_run(tmp_path):
    straight = FlowHFTrainer(
        args=tiny_config(tmp_path / "a", "objective.objective=tb", "logging.save_steps=2", steps=4),
        reward_funcs=length,
        train_dataset=ROWS,
    )
    straight.train()
    step2 = tmp_path / "a" / "run" / "checkpoints" / "step-2"
    resumed = FlowHFTrainer(
        args=tiny_config(tmp_path / "b", "objective.objective=tb", "logging.save_steps=2", steps=4),
        reward_funcs=length,
        train_dataset=ROWS,
    )
    resumed.train(resume_from_checkpoint=str(step2))
    a, b = trainable_snapshot(straight), trainable_snapshot(resumed)
    assert all(torch.equal(a[n], b[n]) for n in a)  # exact: weights, optimiser, RNG, data position
    assert [e["step"] for e in resumed.state.log_history] == [
        1,
        2,
        3,
        4,
    ]  # the history up to step 2 came along
    again = FlowHFTrainer(
        args=tiny_config(tmp_path / "b", "objective.objective=tb", "logging.save_steps=2", steps=5),
        reward_funcs=length,
        train_dataset=ROWS,
    )
    again.train(resume_from_checkpoint=True)
    assert again.state.global_step == 5
    with pytest.raises(CheckpointError, match="is neither a checkpoint folder"):
        FlowHFTrainer(
            args=tiny_config(tmp_path / "c", steps=1), reward_funcs=length, train_dataset=ROWS
        ).train(resume_from_checkpoint=str(tmp_path))


def test_save_model_writes_a_folder_transformers_loads(tmp_path):
    trainer = FlowHFTrainer(
        args=tiny_config(tmp_path, steps=1), reward_funcs=length, train_dataset=ROWS
    )
    saved = trainer.save_model(tmp_path / "final")
    assert (saved / "adapter_config.json").is_file()
    assert AutoModelForCausalLM.from_pretrained(saved) is not None
    assert trainer.save_model() == tmp_path / "run"


@pytest.mark.parametrize("kind", ["Dataset", "IterableDataset", "list"])
def test_dataset_types(tmp_path, kind):
    data = {
        "Dataset": lambda: Dataset.from_list(ROWS),
        "list": lambda: list(ROWS),
        "IterableDataset": lambda: IterableDataset.from_generator(lambda: iter(ROWS)),
    }[kind]()
    trainer = FlowHFTrainer(
        args=tiny_config(tmp_path, "objective.objective=tb"),
        reward_funcs=length,
        train_dataset=data,
    )
    assert trainer.rows == ROWS and trainer.columns == ["topic"]


def test_conversational_prompts_train_through_the_chat_template(tmp_path):
    rows = [
        {
            "prompt": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": r["prompt"]},
            ]
        }
        for r in ROWS
    ]
    seen = []

    def record(prompts, completions, **_):
        seen.append((prompts[0], completions[0]))
        return [0.5] * len(prompts)

    trainer = FlowHFTrainer(args=tiny_config(tmp_path), reward_funcs=record, train_dataset=rows)
    batch, _ = trainer.build_batch(trainer.next_prompt_rows())
    text = trainer.tokenizer.decode(batch.prompt_ids[0][batch.prompt_mask[0].bool()])
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n")
    assert text.endswith("<|im_start|>assistant\n")
    assert trainer.training_step()["train/skipped"] == 0.0
    prompt, completion = seen[0]
    assert prompt[0]["role"] == "system" and completion[0]["role"] == "assistant"


def test_bad_datasets_are_errors_naming_the_row(tmp_path):
    cfg = tiny_config(tmp_path)
    cases = [
        ("data.jsonl", "train_dataset must be rows"),
        (
            [{"prompt": "a"}, {"prompt": [{"role": "user", "content": "b"}]}],
            "row 2: prompt column 'prompt' is a list of chat",
        ),
        ([{"prompt": [{"role": "user"}]}], "row 1: prompt message 1 is"),
        ([{"prompt": "a", "trainer_state": 1}], "column 'trainer_state' has the name of a keyword"),
        ([{"prompt": "a"}, "b"], "row 2: expected a dict of columns"),
        ([], "no rows"),
    ]
    for data, message in cases:
        with pytest.raises(DataError, match=message):
            FlowHFTrainer(args=cfg, reward_funcs=length, train_dataset=data)
    with pytest.raises(
        DataError, match="data.reward_columns names 'answer', which no dataset row has"
    ):
        FlowHFTrainer(
            args=tiny_config(tmp_path, "data.reward_columns=[answer]"),
            reward_funcs=length,
            train_dataset=ROWS,
        )


def test_a_bare_model_takes_processing_class_or_its_folders_tokenizer(tmp_path):
    folder = tiny_model_dir()
    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    trainer = FlowHFTrainer(model, length, tiny_config(tmp_path), ROWS, processing_class=tokenizer)
    assert trainer.tokenizer is not None
    assert FlowHFTrainer(
        AutoModelForCausalLM.from_pretrained(folder), length, tiny_config(tmp_path), ROWS
    ).tokenizer
    from flowhf.models.tiny import tiny_llama

    with pytest.raises(
        ValueError, match="came without a tokenizer .* pass processing_class=tokenizer"
    ):
        FlowHFTrainer(tiny_llama(64), length, tiny_config(tmp_path), ROWS)


def test_num_train_epochs_is_the_step_budget(tmp_path):
    trainer = FlowHFTrainer(
        args=tiny_config(tmp_path, "optim.num_train_epochs=2"),
        reward_funcs=length,
        train_dataset=ROWS,
    )
    assert trainer.state.max_steps == 3  # ceil(2 epochs x 3 rows / 2 prompts per step)


def test_peft_config_becomes_the_lora_keys_and_eval_dataset_is_refused(tmp_path):
    from peft import LoraConfig

    from flowhf.config.trl_names import with_peft_config
    from flowhf.errors import ConfigError

    cfg = with_peft_config(
        tiny_config(tmp_path),
        LoraConfig(r=8, lora_alpha=16, lora_dropout=0.1, target_modules=["v_proj", "q_proj"]),
    )
    assert (cfg.model.lora, cfg.model.lora_r, cfg.model.lora_alpha, cfg.model.lora_dropout) == (
        True,
        8,
        16,
        0.1,
    )
    assert cfg.model.lora_target_modules == ["q_proj", "v_proj"]
    with pytest.raises(
        ConfigError, match=r"peft_config.use_dora=True: FlowHF's LoRA takes r, lora_alpha"
    ):
        with_peft_config(cfg, LoraConfig(use_dora=True))
    with pytest.raises(
        ConfigError, match="eval_dataset: FlowHFTrainer does not evaluate during training"
    ):
        FlowHFTrainer(args=cfg, reward_funcs=length, train_dataset=ROWS, eval_dataset=ROWS)
    trainer = FlowHFTrainer(
        args=tiny_config(tmp_path),
        reward_funcs=length,
        train_dataset=ROWS,
        peft_config=LoraConfig(r=2, lora_alpha=4, target_modules="all-linear"),
    )
    assert trainer.args.model.lora_r == 2 and trainer.args.model.lora_target_modules == [
        "all-linear"
    ]
