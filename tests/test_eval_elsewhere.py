"""`flowhf eval` / `flowhf compare` on models trained elsewhere: TRL GRPO output folders (a LoRA
adapter and a full model, two steps on the tiny model) beside a FlowHF smoke run."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flowhf.cli.evaluate import per_prompt_from_args
from flowhf.cli.main import build_parser
from flowhf.config.training import FlowHFConfig
from flowhf.errors import ConfigError
from flowhf.models.tiny import tiny_model_dir
from flowhf.training.trainer import FlowHFTrainer

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = [f"Tell me about day {i}." for i in range(6)]


def trl_grpo(out: Path, lora: bool) -> Path:
    """Two GRPOTrainer steps on the tiny model, saved as TRL saves its output folder."""
    datasets = pytest.importorskip("datasets")
    trl = pytest.importorskip("trl")
    from peft import LoraConfig

    args = trl.GRPOConfig(
        output_dir=str(out),
        max_steps=2,
        per_device_train_batch_size=2,
        num_generations=2,
        max_completion_length=6,
        learning_rate=1e-3,
        bf16=False,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        seed=0,
    )
    trainer = trl.GRPOTrainer(
        model=str(tiny_model_dir()),
        reward_funcs=lambda completions, **_: [len(c) / 10 for c in completions],
        args=args,
        train_dataset=datasets.Dataset.from_list([{"prompt": p} for p in PROMPTS]),
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
        if lora
        else None,
    )
    trainer.train()
    trainer.save_model(str(out))
    return out


def flowhf_smoke(out: Path) -> Path:
    config = FlowHFConfig.from_yaml(
        ROOT / "configs" / "smoke.yaml",
        [f"logging.output_dir={out}", "optim.max_steps=2", "logging.save_steps=0"],
    )
    FlowHFTrainer(args=config).train()
    return out


def flowhf_cli(*args: str) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, "-m", "flowhf.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    )
    return proc.stdout


def evaluate(models: list[Path], out: Path, prompts: Path) -> dict:
    flags = [item for m in models for item in ("--model", str(m))]
    flowhf_cli(
        "eval",
        *flags,
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
        "--n-boot",
        "20",
        "--temperature",
        "1.0",
        "--per-prompt",
        "3",
        "--per-prompt-k",
        "3",
        "--output-dir",
        str(out),
    )
    return json.loads((out / "metrics.json").read_text())


def test_eval_and_compare_a_trl_grpo_run_beside_a_flowhf_run(tmp_path: Path):
    trl_lora = trl_grpo(tmp_path / "grpo-lora", lora=True)
    trl_full = trl_grpo(tmp_path / "grpo-full", lora=False)
    assert (trl_lora / "adapter_config.json").is_file() and (trl_full / "config.json").is_file()
    ours = flowhf_smoke(tmp_path / "flowhf-smoke")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("\n".join(json.dumps({"prompt": p}) for p in PROMPTS))

    theirs = evaluate([trl_lora, trl_full], tmp_path / "eval-trl", prompts)
    mine = evaluate([ours], tmp_path / "eval-flowhf", prompts)
    assert [m["model"] for m in theirs["models"]] == [str(trl_lora), str(trl_full)]
    assert [m["model"] for m in mine["models"]] == [str(ours)]
    for entry in theirs["models"] + mine["models"]:
        for key in ("diversity", "diversity_all", "pp_pairwise_distance", "pp_distinct_answers"):
            assert math.isfinite(entry["metrics"][key]), (entry["model"], key)
    report = (tmp_path / "eval-trl" / "report.md").read_text()
    assert str(trl_lora) in report and str(trl_full) in report

    merged = tmp_path / "compare.md"
    stdout = flowhf_cli(
        "compare",
        str(tmp_path / "eval-trl"),
        str(tmp_path / "eval-flowhf"),
        "--output",
        str(merged),
    )
    text = merged.read_text()
    for model in (trl_lora, trl_full, ours):
        assert model.name in text, model
    assert "report:" in stdout


def test_eval_per_prompt_flags_build_the_settings():
    base = ["eval", "--model", "m", "--task", "toxicity", "--output-dir", "o"]
    parser = build_parser()
    assert per_prompt_from_args(parser.parse_args(base)) is None
    settings = per_prompt_from_args(
        parser.parse_args(base + ["--per-prompt", "4", "--per-prompt-k", "3"])
    )
    assert (settings.n_prompts, settings.k, settings.temperature) == (4, 3, 1.0)
    with pytest.raises(ConfigError, match="k >= 2"):
        per_prompt_from_args(parser.parse_args(base + ["--per-prompt", "4", "--per-prompt-k", "1"]))
