"""Resume is faithful: logs are cut back to the checkpoint's step (an interrupted + resumed run
logs the same rows as an uninterrupted one, timings aside); checkpoints carry a manifest and a
damaged newest one falls back to the previous; leftovers of killed saves are removed."""

import json

import pytest

from flowhf.errors import CheckpointError
from flowhf.training import checkpoint
from flowhf.training.trainer import FlowHFTrainer
from tests.test_trainer import tiny_config, trainable_snapshot

TIMING = (
    "time",
    "train/step_time",
    "train/sample_time",
    "train/reward_time",
    "train/update_time",
    "train/tokens_per_second",
    "train/elapsed_seconds",
)


def untimed_rows(path):
    return [
        {k: v for k, v in json.loads(line).items() if k not in TIMING}
        for line in path.read_text().splitlines()
    ]


def _config(folder, steps, *more):
    return tiny_config(
        folder,
        "replay.replay_ratio=0.34",
        "logging.save_steps=2",
        "logging.histogram_every=1",
        "logging.save_total_limit=3",
        *more,
        steps=steps,
    )


def test_interrupted_then_resumed_run_logs_the_same_rows(tmp_path):
    straight = FlowHFTrainer(args=_config(tmp_path / "a", 6))
    straight.train()
    FlowHFTrainer(args=_config(tmp_path / "b", 5)).train()
    run = tmp_path / "b" / "run"
    # as if killed after step 5 was logged but before it was saved
    import shutil

    shutil.rmtree(run / "checkpoints" / "step-5")
    (run / "checkpoints" / ".tmp-step-5-x").mkdir()  # a killed save's leftover
    with (run / "metrics.jsonl").open("a") as fh:
        fh.write('{"step": 6, "train/lo')  # a torn line of a killed write
    resumed = FlowHFTrainer(args=_config(tmp_path / "b", 6))
    resumed.train(resume=True)
    a_dir = tmp_path / "a" / "run"
    assert untimed_rows(run / "metrics.jsonl") == untimed_rows(a_dir / "metrics.jsonl")
    assert [r["step"] for r in untimed_rows(run / "histograms.jsonl")] == [
        r["step"] for r in untimed_rows(a_dir / "histograms.jsonl")
    ]
    csv_steps = [line.split(",")[0] for line in (run / "metrics.csv").read_text().splitlines()[1:]]
    assert csv_steps == ["1", "2", "3", "4", "5", "6"]
    assert not list((run / "checkpoints").glob(".tmp-*"))
    a, b = trainable_snapshot(straight), trainable_snapshot(resumed)
    assert all(bool((a[n] == b[n]).all()) for n in a)


def test_damaged_newest_checkpoint_falls_back_to_the_previous(tmp_path, capsys):
    FlowHFTrainer(args=_config(tmp_path, 4)).train()
    root = tmp_path / "run" / "checkpoints"
    assert checkpoint.verify(root / "step-4") is None
    weights = root / "step-4" / "trainable.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    resumed = FlowHFTrainer(args=_config(tmp_path, 4))
    assert checkpoint.resume_latest(resumed.checkpoints, resumed.load_state_dict) == root / "step-2"
    assert resumed.state.global_step == 2
    out = capsys.readouterr().out
    assert (
        "skipping checkpoint" in out
        and "step-4" in out
        and "trainable.safetensors has 100 bytes" in out
    )
    (root / "step-2" / "trainer_state.json").write_text("{broken")
    with pytest.raises(
        CheckpointError, match="can be restored.*step-4.*step-2: trainer_state.json"
    ):
        again = FlowHFTrainer(args=_config(tmp_path, 4))
        checkpoint.resume_latest(again.checkpoints, again.load_state_dict)


def test_pruning_keeps_the_newest_verified_checkpoint(tmp_path):
    FlowHFTrainer(args=_config(tmp_path, 2, "logging.save_total_limit=1")).train()
    root = tmp_path / "run" / "checkpoints"
    (root / "step-3").mkdir()  # a newer folder without a manifest (pre-manifest or damaged)
    checkpoint._prune(root, keep=1)
    assert (root / "step-2").is_dir() and (root / "step-3").is_dir()
