"""CLI smoke runs as subprocesses: train (smoke config) -> eval the saved run; exact benchmark."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*args, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\nSTDOUT:\n{proc.stdout[-3000:]}\nSTDERR:\n{proc.stderr[-3000:]}"
    )
    return proc


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke") / "run"
    proc = run(
        "-m", "flowhf.cli", "train", "--config", "configs/smoke.yaml", "--output-dir", str(out)
    )
    return out, proc


def test_train_smoke_writes_a_loadable_run(smoke_run):
    out, proc = smoke_run
    assert "curves:" in proc.stdout
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all(r["train/loss"] is not None for r in rows)
    for name in (
        "adapter_config.json",
        "adapter_model.safetensors",
        "flowhf_heads.safetensors",
        "config.yaml",
        "curves.png",
        "summary.json",
        "histograms.jsonl",
    ):
        assert (out / name).is_file(), name
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-3", "step-6"]


def test_train_resume_continues(smoke_run, tmp_path):
    out, _ = smoke_run
    proc = run(
        "-m",
        "flowhf.cli",
        "train",
        "--config",
        "configs/smoke.yaml",
        "--output-dir",
        str(out),
        "--set",
        "optim.max_steps=7",
        "--resume",
    )
    assert "resumed from" in proc.stdout
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 7


def test_eval_loads_the_trained_run(smoke_run, tmp_path):
    out, _ = smoke_run
    ev = tmp_path / "eval"
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "\n".join(json.dumps({"prompt": f"Tell me about day {i}."}) for i in range(6))
    )
    run(
        "-m",
        "flowhf.cli",
        "eval",
        "--model",
        str(out),
        "--task",
        "toxicity",
        "--prompts",
        str(prompts),
        "--reward",
        "python:flowhf.rewards.toy:letter_share",
        "--n",
        "6",
        "--top-k",
        "3",
        "--max-new-tokens",
        "8",
        "--output-dir",
        str(ev),
        "--n-boot",
        "50",
    )
    metrics = json.loads((ev / "metrics.json").read_text())
    text = json.dumps(metrics)
    assert "mean_reward" in text and "diversity" in text
    assert (ev / "report.md").is_file() and (ev / "completions.jsonl").is_file()


def test_train_rejects_unknown_keys(tmp_path):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "flowhf.cli",
            "train",
            "--config",
            "configs/smoke.yaml",
            "--set",
            "target.betta=3",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0 and "did you mean 'beta'" in proc.stderr


@pytest.mark.parametrize(
    "argv, start",
    [
        (["compare", "{t}", "--output", "{t}/r.md"], "flowhf: error: {t}/metrics.json not found"),
        (
            ["bench", "lm-target", "--method", "recommended"],
            "flowhf: error: flowhf bench lm-target: --task FILE is required",
        ),
        (
            [
                "bench",
                "lm-target",
                "--task",
                "benchmarks/lm_tasks/numbers_uniform.yaml",
                "--method",
                "grpo",
                "--baseline-set",
                "seed=3",
            ],
            "flowhf: error: --baseline-set seed: every method gets the same seed",
        ),
        (
            [
                "bench",
                "lm-target",
                "--task",
                "benchmarks/lm_tasks/numbers_uniform.yaml",
                "--all",
                "--baseline-set",
                "lrr=1",
            ],
            "flowhf: error: --baseline-set for grpo",
        ),
        (
            ["reproduce", "--preset", "smoke", "--set", "eval_n=0", "--output-dir", "{t}/r"],
            "flowhf: error: --set eval_n=0: must be",
        ),
    ],
)
def test_user_errors_exit_2_with_one_line(tmp_path, argv, start):
    """A real process: exit code 2, the error line and its hint, no traceback (internal errors keep theirs)."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, "-m", "flowhf.cli", *[a.format(t=tmp_path) for a in argv]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.startswith(start.format(t=tmp_path)) and "Traceback" not in proc.stderr, (
        proc.stderr
    )
    assert len(proc.stderr.strip().splitlines()) == 2


def test_exact_benchmark_cli_writes_required_keys(tmp_path):
    path = tmp_path / "x.json"
    run(
        "benchmarks/exact_target.py",
        "--objective",
        "tb",
        "--logz",
        "scalar",
        "--size",
        "quick",
        "--prompts",
        "1",
        "--steps",
        "20",
        "--samples-per-prompt",
        "16",
        "--json",
        str(path),
    )
    record = json.loads(path.read_text())
    for key in (
        "objective",
        "logz",
        "steps",
        "seconds",
        "tv",
        "kl_target_model",
        "jsd",
        "modes_found",
        "modes_total",
        "log_z_final",
        "log_z_true",
    ):
        assert key in record, key
    assert record["steps"] == 20 and 0.0 <= record["tv"] <= 1.0
    all_path = tmp_path / "all.json"
    target = tmp_path / "mine.py"
    target.write_text(
        "VOCAB_SIZE = 3\nMAX_LEN = 3\ndef log_reward(tokens):\n    return float(tokens.count(2))\n"
    )
    run(
        "-m",
        "flowhf.cli",
        "exact",
        "--all",
        "--target",
        str(target),
        "--steps",
        "3",
        "--samples-per-prompt",
        "4",
        "--json",
        str(all_path),
    )
    records = json.loads(all_path.read_text())
    assert [r["objective"] for r in records] == ["tb", "tb", "tb", "fl", "db", "subtb", "pg"]


def test_gpu_scale_script_runs_both_samplers_on_a_tiny_shape(tmp_path):
    """benchmarks/gpu_scale.py is the one-shot device check: on CPU with a tiny shape, every run of
    it (plain and fast sampler) must finish with finite losses and the reported keys."""
    from flowhf.models.tiny import tiny_model_dir

    path = tmp_path / "scale.json"
    run(
        "benchmarks/gpu_scale.py",
        "--tokenizer",
        str(tiny_model_dir()),
        "--objectives",
        "subtb",
        "--samplers",
        "plain",
        "fast",
        "--layers",
        "1",
        "--hidden",
        "32",
        "--intermediate",
        "64",
        "--heads",
        "2",
        "--prompts",
        "1",
        "--samples",
        "2",
        "--max-new-tokens",
        "4",
        "--steps",
        "2",
        "--max-prompt-length",
        "16",
        "--output-dir",
        str(tmp_path / "runs"),
        "--json",
        str(path),
    )
    runs = json.loads(path.read_text())["runs"]
    assert [(r["objective"], r["sampler"]) for r in runs] == [("subtb", "plain"), ("subtb", "fast")]
    for r in runs:
        assert "error" not in r, r
        assert r["all_finite"] and r["steps"] == 2 and r["tokens_per_second"] > 0


def test_two_process_ddp_training(tmp_path):
    """torchrun with 2 gloo processes: one set of logs and one saved model, from rank 0."""
    out = tmp_path / "ddp"
    torchrun = Path(sys.executable).with_name("torchrun")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [
            str(torchrun),
            "--nproc_per_node",
            "2",
            "-m",
            "flowhf.cli",
            "train",
            "--config",
            "configs/smoke.yaml",
            "--output-dir",
            str(out),
            "--set",
            "optim.max_steps=2",
            "--set",
            "logging.save_steps=0",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert (out / "adapter_model.safetensors").is_file()
    from flowhf.training.checkpoint import verify

    saved = (
        out / "checkpoints" / "step-2"
    )  # each process saves its own RNG streams and replay buffer
    assert verify(saved) is None
    for name in ("rng.pt", "replay.json", "python_rng.json"):
        assert (saved / name).is_file() and (saved / "rank-1" / name).is_file(), name
    assert (saved / "rank-1" / "python_rng.json").read_text() != (
        saved / "python_rng.json"
    ).read_text()


def test_frontier_benchmark_resumes_across_run_folders(tmp_path):
    # Session 1 trains the smoke sweep and keeps its points; session 2 starts from an empty run
    # folder, restores them, reruns the deterministic base stages (check_start agrees) and trains nothing.
    results = tmp_path / "kept"
    first = run(
        "benchmarks/frontier.py",
        "run",
        "--preset",
        "smoke",
        "--run-dir",
        str(tmp_path / "s1"),
        "--results",
        str(results),
    )
    assert "kept 5 new points" in first.stdout
    kept = sorted(p.name for p in (results / "sweep").iterdir())
    assert len(kept) == 5 and "length_tb__target.beta=4.0__seed0" in kept
    second = run(
        "benchmarks/frontier.py",
        "run",
        "--preset",
        "smoke",
        "--run-dir",
        str(tmp_path / "s2"),
        "--results",
        str(results),
    )
    assert "restored 5 finished points" in second.stdout and "kept 0 new points" in second.stdout
    assert "sweep point" not in second.stdout + second.stderr  # nothing retrained
    report = (results / "report.md").read_text()
    assert "Points finished: 5 of 5" in report and (results / "frontier.png").is_file()
    assert report.count('"sft": ') == 1  # one start for every point
