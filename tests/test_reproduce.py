"""`flowhf reproduce`: dry-run plan touches nothing; smoke preset end to end; cached stages skip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flowhf.config.preset import METHODS, PRESETS, STAGES
from flowhf.errors import ConfigError, RunDirError
from flowhf.experiments.reproduce.presets import load_preset
from flowhf.experiments.reproduce.reproduce import build_plan, report_summary, run_reproduce

ROOT = Path(__file__).resolve().parents[1]


def test_paper_dry_run_prints_plan_and_touches_nothing(tmp_path):
    out = tmp_path / "paper"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "flowhf.cli",
            "reproduce",
            "--preset",
            "paper",
            "--output-dir",
            str(out),
            "--dry-run",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    for needle in (
        "huggyllama/llama-7b",
        "lvwerra/stack-exchange-paired",
        "trl-lib/llama-7b-se-rm-peft",
        "facebook/roberta-hate-speech-dynabench-r4-target",
        "deepspeed_zero2.yaml",
    ):
        assert needle in text
    assert " -> ".join(STAGES) in text
    # 8 GPUs x (4 SFT + 6 methods x 8 + 3 eval) hours, from the preset table
    assert "estimated GPU hours: 440" in text
    assert (
        "launch:           accelerate launch --config_file configs/accelerate/deepspeed_zero2.yaml"
        in text
    )
    assert not out.exists() and not (tmp_path / "hf").exists()
    assert "torch" not in proc.stderr.lower() or proc.stderr == ""


def test_plan_rejects_unknown_stage(tmp_path):
    with pytest.raises(ValueError, match="unknown stage"):
        build_plan("smoke", tmp_path, ["sft", "rlhf"])


def test_shipped_presets_pass_their_own_checks():
    for name, preset in PRESETS.items():
        assert load_preset(name) == preset, name


def test_preset_file_and_set_change_a_base(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("base: cpu\neval_n: 16\nbudget: {max_steps: 5}\n")
    preset = load_preset(path, ["budget.seconds=30", "eval_k=4"])
    assert (preset.policy, preset.eval_n, preset.eval_k) == ("smollm2", 16, 4)
    assert preset.budget == {
        "max_steps": 5,
        "seconds": 30,
    }  # the file's budget replaces cpu's, --set adds a key
    assert PRESETS["cpu"].budget == {"completions": 160}  # the shipped preset is untouched


@pytest.mark.parametrize(
    "text, sets, message",
    [
        (
            "base: smoke\nbudget:\n  max_steps: -5\n",
            [],
            "{p}, line 3: budget.max_steps=-5: must be a number > 0",
        ),
        ("eval_nn: 3\n", [], "{p}, line 1: unknown key 'eval_nn' (did you mean 'eval_n'?)"),
        ("eval_n: many\n", [], "{p}, line 1: eval_n='many': expected int"),
        (
            "base: smok\n",
            [],
            "{p}, line 1: base='smok': must be one of cpu, cpu-full, cpu-lr, paper, smoke",
        ),
        (
            "stage_seconds: {sft: 10, rlhf: 3}\n",
            [],
            "{p}, line 1: unknown key 'stage_seconds.rlhf'",
        ),
        (
            "reward_model: {mode: lora2}\n",
            [],
            "{p}, line 1: reward_model.mode='lora2': must be one of lora, head_only, full",
        ),
        ("", ["eval_temperature=0"], "--set eval_temperature=0: must be a number > 0"),
        (
            "",
            ["budget.max_stepz=3"],
            "--set budget.max_stepz: unknown key 'budget.max_stepz' (did you mean 'max_steps'?)",
        ),
    ],
)
def test_bad_preset_values_name_file_line_key(tmp_path, text, sets, message):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_preset(path, sets)
    assert str(err.value).startswith(message.format(p=path)), str(err.value)


def test_bad_preset_is_refused_before_the_folder_or_a_model(tmp_path, monkeypatch, capsys):
    """The CLI checks the preset first: one error line, exit 2, nothing written or loaded."""
    import transformers

    from flowhf import cli

    def no_model(*_, **__):
        raise AssertionError("a model was loaded for a bad preset")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_model)
    out = tmp_path / "run"
    assert (
        cli.main(
            [
                "reproduce",
                "--preset",
                "smoke",
                "--set",
                "max_new_tokens=-1",
                "--output-dir",
                str(out),
            ]
        )
        == 2
    )
    assert capsys.readouterr().err.startswith(
        "flowhf: error: --set max_new_tokens=-1: must be a number >= 1"
    )
    assert not out.exists()


def test_every_method_shares_one_budget():
    for preset in PRESETS.values():
        assert set(preset.budget) <= {"seconds", "completions", "max_steps"}


def test_smoke_end_to_end_then_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "run"
    results = run_reproduce("smoke", out, log=lambda *_: None)
    assert list(results) == list(STAGES)
    plan = json.loads((out / "plan.json").read_text())
    assert plan["budget_per_method"] == {"max_steps": 2, "seconds": 60}
    report = (out / "report.md").read_text()
    assert "Table 1: StackExchange" in report and "Table 2: Toxicity" in report
    for method in METHODS:  # one row per method in each table
        assert report.count(f"| {method} |") >= 2, method
    assert "ppo" in report and "t = " in report
    # gold (distinct_word_share) judges, the proxy (letter_share) scores the same text beside it
    assert (
        "## Gold vs proxy reward" in report
        and "## Per-prompt diversity" in report
        and "Proxy reward" in report
    )
    gold_proxy = json.loads((out / "report" / "gold_proxy.json").read_text())
    assert [row["model"] for row in gold_proxy["rows"]] == list(METHODS)
    assert (out / "eval" / "stackexchange" / "per_prompt.jsonl").is_file()
    assert "## Frontier" in report and (out / "report" / "frontier.png").is_file()
    frontier = json.loads((out / "report" / "frontier.json").read_text())
    assert set(frontier["frontier"]) == {"sft", "recommended", "length_tb", "grpo"}
    assert {(t["candidate"], t["baseline"]) for t in frontier["tests"]} == {
        ("recommended", "grpo"),
        ("length_tb", "grpo"),
    }
    assert sorted(p.name for p in (out / "sweep").iterdir() if p.is_dir()) == [
        "grpo__beta=0.04__seed0",
        "length_tb__target.beta=4.0__seed0",
        "recommended__target.beta=1.0__seed0",
        "recommended__target.beta=4.0__seed0",
        "sft__seed0",
    ]  # length_tb: a sweep-only method (no stage)
    point = json.loads((out / "sweep" / "sft__seed0" / "result.json").read_text())
    assert {"gap", "corr_reward_length", "corr_proxy_length", "pairwise_distance"} <= set(
        point["metrics"]
    )
    assert set(point["start"]) == {
        "sft",
        "proxy",
        "gold",
    }  # what every point started from (check_start)
    assert not list(out.rglob(".tmp-*")), (
        "a temporary file or folder of an atomic write was left behind"
    )
    for method in ("sft", "ppo", "grpo"):  # model folders renamed into place whole
        assert (out / method / "model" / "config.json").is_file(), method
    assert "## Time to reach PPO's final reward" in report and "## Wall-clock per stage" in report
    # beside Table 1: its intervals are not over training seeds; where the seed spread is
    assert "do not cover training variance" in report
    assert "benchmarks/results/reproduce_cpu_full/report.md" in report
    summary = report_summary(out / "report.md")  # what `flowhf reproduce` prints at the end
    assert "## Table 1" in summary and "## Table 2" in summary and "## Time to reach" in summary
    assert summary.endswith(str((out / "report.md").resolve()))
    reach = json.loads((out / "report" / "reach.json").read_text())
    assert set(reach["runs"]) == {"grpo", "tb", "fl_kl", "flowhf", "recommended"}
    for method in ("tb", "recommended"):  # each FlowHF run stopped at the shared 2-step budget
        rows = [
            json.loads(line) for line in (out / method / "metrics.jsonl").read_text().splitlines()
        ]
        assert max(r["step"] for r in rows if "step" in r) == 2

    done = out / "sft" / "DONE"
    mtime = done.stat().st_mtime_ns
    (out / "report" / "DONE").unlink()  # only the report stage must run again
    lines: list[str] = []
    with pytest.raises(RunDirError, match="already holds a run"):  # one run per folder
        run_reproduce("smoke", out, log=lines.append)
    run_reproduce("smoke", out, log=lines.append, resume=True)
    assert done.stat().st_mtime_ns == mtime
    assert "[reproduce] sft: skipped (DONE verified)" in lines
    assert "[reproduce] eval: skipped (DONE verified)" in lines
    assert any(line.startswith("[reproduce] stage 1/1 report: running") for line in lines), lines
    assert (out / "report" / "DONE").is_file()


def test_smoke_two_processes(tmp_path):
    """torchrun, 2 gloo processes: every training stage runs data-parallel and stops at the same
    step; rank 0 alone writes the logs, DONE files, evaluation and report."""
    out = tmp_path / "ddp"
    torchrun = Path(sys.executable).with_name("torchrun")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [
            str(torchrun),
            "--nproc_per_node",
            "2",
            "-m",
            "flowhf.cli",
            "reproduce",
            "--preset",
            "smoke",
            "--output-dir",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=500,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.count("flowhf reproduce: preset smoke") == 1  # one process prints
    assert "## Table 1" in proc.stdout
    for stage in STAGES:
        assert (out / stage / "DONE").is_file(), stage
    for method in (
        "sft",
        "ppo",
        "grpo",
        "tb",
        "recommended",
    ):  # one log line per step, not one per process
        steps = [
            json.loads(line)["step"]
            for line in (out / method / "metrics.jsonl").read_text().splitlines()
        ]
        assert steps == sorted(set(steps)) and steps[-1] == 2, (method, steps)


def test_training_spread_note_reads_the_cpu_full_frontier(tmp_path):
    """Table 1's note gives each Table 1 method's seed half-width of gold at its default setting
    from the committed cpu-full frontier (read, not hard-coded); without the JSON, the pointer."""
    from flowhf.experiments.reproduce.report_stage import CPU_FULL_DIR, training_spread_note

    frontier = json.loads((CPU_FULL_DIR / "frontier.json").read_text())["frontier"]
    note = training_spread_note()
    assert "reproduce_cpu_full/report.md" in note and "3 seeds" in note
    defaults = {"recommended": 8.0, "fl_kl": 10.0, "ppo": 0.05, "grpo": 0.04}
    for method, value in defaults.items():
        (point,) = [p for p in frontier[method] if p["value"] == value]
        assert f"{method} {point['reward']:.2f} ± {point['reward_ci']:.2f}" in note, method
    (sft,) = frontier["sft"]
    assert f"sft {sft['reward']:.2f} ± {sft['reward_ci']:.2f}" in note
    assert "length_tb" not in note  # not a Table 1 method
    missing = training_spread_note(tmp_path / "absent.json")
    assert missing.endswith("(benchmarks/results/reproduce_cpu_full/report.md).")
