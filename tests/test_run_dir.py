"""One run per folder (flowhf.run_dir): refusal, --overwrite, the pid+host lock (live, stale,
concurrent), the resume config check, and the trainer / TRL runner entry points."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from flowhf.errors import RunDirError
from flowhf.run_dir import (
    LOCK,
    acquire_lock,
    check_resume_config,
    prepare_run_dir,
    release_lock,
    run_lock,
)


def _run_folder(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "metrics.jsonl").write_text("{}\n")
    (run / "prompts.jsonl").write_text("{}\n")  # an input the user put there: never a run file
    return run


def test_absent_empty_or_input_only_folders_are_accepted(tmp_path):
    prepare_run_dir(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    prepare_run_dir(tmp_path / "empty")
    (tmp_path / "inputs").mkdir()
    (tmp_path / "inputs" / "prompts.jsonl").write_text("{}\n")
    prepare_run_dir(tmp_path / "inputs")


def test_occupied_folder_is_refused_and_overwrite_says_what_it_deleted(tmp_path):
    run = _run_folder(tmp_path)
    with pytest.raises(
        RunDirError, match=r"already holds a run \(checkpoints, metrics.jsonl\)"
    ) as err:
        prepare_run_dir(run)
    assert "--resume" in err.value.hint and "--overwrite" in err.value.hint
    said = []
    prepare_run_dir(run, overwrite=True, log=said.append)
    assert sorted(p.name for p in run.iterdir()) == ["prompts.jsonl"]
    assert "deleted the earlier run" in said[0] and "metrics.jsonl" in said[0]


def test_live_lock_refuses_even_overwrite_and_stale_lock_is_reported(tmp_path):
    run = _run_folder(tmp_path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from flowhf.run_dir import acquire_lock; "
            f"acquire_lock({str(run)!r}); print('locked', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        lock = json.loads((run / LOCK).read_text())
        assert lock["pid"] == holder.pid and lock["host"] == socket.gethostname()
        with pytest.raises(RunDirError, match=f"in use by a running run \\(pid {holder.pid}"):
            prepare_run_dir(run, overwrite=True)
        with pytest.raises(
            RunDirError, match="in use"
        ):  # two runs at once: the second never starts
            acquire_lock(run)
    finally:
        holder.kill()
        holder.wait()
    said = []
    with pytest.raises(
        RunDirError, match="and a stale lock"
    ):  # killed: stale, still refused without a flag
        prepare_run_dir(run, log=said.append)
    assert "stale lock" in said[0]
    prepare_run_dir(
        run, resume=True, log=said.append
    )  # resuming the killed run takes the lock over
    with run_lock(run):
        assert json.loads((run / LOCK).read_text())["pid"] == os.getpid()
        with run_lock(run):  # re-entrant in one process
            pass
        assert (run / LOCK).is_file()
    assert not (run / LOCK).exists()


def test_resume_config_check_lists_keys_and_allows_budget_keys(tmp_path):
    import yaml

    from flowhf.config.training import FlowHFConfig

    saved = FlowHFConfig().to_dict()
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved))
    longer = FlowHFConfig.from_dict(
        {"optim": {"max_steps": 500, "max_seconds": 9.0}, "logging": {"logging_steps": 5}}
    )
    check_resume_config(tmp_path, longer.to_dict())
    other = FlowHFConfig.from_dict(
        {"model": {"lora_r": 8}, "objective": {"objective": "tb"}, "data": {"limit": 3}}
    )
    with pytest.raises(
        RunDirError,
        match=r"3 key\(s\): data.limit: None -> 3; model.lora_r: 16 -> 8; "
        r"objective.objective: 'subtb' -> 'tb'",
    ):
        check_resume_config(tmp_path, other.to_dict())


def test_trainer_refuses_a_second_run_and_overwrites_on_request(tmp_path):
    from flowhf.training.trainer import FlowHFTrainer
    from tests.test_trainer import tiny_config

    FlowHFTrainer(args=tiny_config(tmp_path, steps=1)).train()
    first = (tmp_path / "run" / "metrics.jsonl").read_text()
    again = FlowHFTrainer(args=tiny_config(tmp_path, steps=1))
    with pytest.raises(RunDirError, match="already holds a run"):
        again.train()
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == first
    again.train(overwrite=True)
    assert [
        json.loads(line)["step"]
        for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ] == [1]
    assert not (tmp_path / "run" / LOCK).exists()


def test_release_only_removes_our_own_lock(tmp_path):
    tmp_path.joinpath(LOCK).write_text(
        json.dumps({"pid": 1, "host": socket.gethostname(), "started": time.time()})
    )
    release_lock(tmp_path)
    assert (tmp_path / LOCK).is_file()


def test_reproduce_trusts_done_only_when_its_outputs_verify(tmp_path):
    from flowhf.experiments.reproduce.reproduce import read_done, stage_outputs

    stage = tmp_path / "sft"
    (stage / "model").mkdir(parents=True)
    (stage / "model" / "weights.bin").write_bytes(b"12345")
    result = {"model_dir": str(stage / "model")}
    (stage / "DONE").write_text(
        json.dumps({**result, "outputs": stage_outputs(tmp_path, stage, result)})
    )
    assert read_done(stage)["outputs"] == {"sft/model/weights.bin": 5}
    said = []
    (stage / "model" / "weights.bin").write_bytes(b"123")
    assert (
        read_done(stage, said.append) is None
        and "weights.bin has 3 bytes, DONE recorded 5" in said[0]
    )
    (stage / "model" / "weights.bin").unlink()
    assert read_done(stage, said.append) is None and "is missing" in said[1]
    (stage / "DONE").write_text('{"model_dir": "x"}')  # written before DONE listed outputs
    assert read_done(stage, said.append) is None and "lists no outputs" in said[2]
