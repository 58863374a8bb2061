"""Data and model errors a user can act on: non-UTF-8 files name the line, over-long prompts
are cut from the left (or refused), an unknown model fails fast without the Hub."""

import time

import pytest

from flowhf.data.loading import DataError, load_rows
from flowhf.errors import ModelNotFound
from flowhf.training.trainer import FlowHFTrainer
from tests.test_trainer import tiny_config


def test_non_utf8_data_names_file_and_line(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes('{"prompt": "ok"}\n{"prompt": "café"}\n'.encode("latin-1"))
    with pytest.raises(
        DataError, match=r"latin1\.jsonl: line 2: not UTF-8 text \(byte 0xe9 at column 16\)"
    ):
        load_rows(str(path), required=["prompt"])


def test_over_long_prompts_are_cut_from_the_left_or_refused(tmp_path):
    rows = [{"prompt": "word " * 9000}, {"prompt": "Describe the sea."}]
    trainer = FlowHFTrainer(
        args=tiny_config(tmp_path, "objective.objective=tb"), train_dataset=rows
    )
    metrics = trainer.training_step()
    assert metrics["train/truncated_prompts"] == 1.0  # prompts of the step cut to fit
    context = trainer.bundle.model.config.max_position_embeddings
    batch, _ = trainer.build_batch(rows)
    assert batch.prompt_ids.shape[1] == context - trainer.args.sampling.max_new_tokens
    strict = FlowHFTrainer(
        args=tiny_config(tmp_path, "objective.objective=tb", "sampling.long_prompts=error"),
        train_dataset=rows,
    )
    with pytest.raises(
        DataError,
        match=r"has \d+ tokens; the model reads 512 and sampling.max_new_tokens=6 leaves 506",
    ):
        strict.build_batch(rows)


def test_unknown_model_fails_fast_offline(monkeypatch):
    from flowhf.models.loading import load_causal_lm

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    with pytest.raises(
        ModelNotFound,
        match=r"shipped alias \(smollm2, default, tiny-random\).*HF_HUB_OFFLINE is set",
    ):
        load_causal_lm("someone/no-such-model")
    assert time.perf_counter() - started < 5
