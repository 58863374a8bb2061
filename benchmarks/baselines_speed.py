"""Benchmark: seconds per optimizer step of the TRL baselines on SmolLM2-135M-Instruct (CPU).

Setting (the one the FlowHF comparison uses): LoRA r=16 on q/k/v/o, float32, 8 completions x 32
new tokens per step, VADER sentiment reward on the shipped sentiment prompts.
- GRPO: TRL GRPOTrainer, one prompt x 8 generations per step, beta 0.04 (reference forward).
- PPO:  TRL PPOTrainer, 8 prompts x 1 completion per update, 4 PPO epochs, LoRA value model.
- SFT:  TRL SFTTrainer, batch 8 StackExchange (question -> response_j) pairs, max_length 512.

Each method runs a few steps through the real runners (`flowhf.experiments.baselines`); per-step times are
the differences of ``train/elapsed_seconds`` in their metrics.jsonl. The first step includes
warm-up, so the summary gives it separately and the median of the others. The machine's load
average before/after is recorded: other jobs share the CPU, so timings are as measured.
``--threads 1 2`` repeats everything for each torch thread count. Writes
benchmarks/results/baselines_speed.json. Run:
    .venv/bin/python benchmarks/baselines_speed.py [--grpo-steps 4 --ppo-steps 3 --sft-steps 4] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

import flowhf  # noqa: E402,F401  (sets OMP_WAIT_POLICY=PASSIVE before torch loads)
from flowhf.experiments.baselines import run_grpo, run_ppo, run_sft  # noqa: E402
from flowhf.models.lora import LoraSettings  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "baselines_speed.json"
LORA = LoraSettings(r=16, alpha=32, dropout=0.05)


def step_times(run_dir: Path) -> list[float]:
    """Seconds of each logged step, from the cumulative train/elapsed_seconds."""
    rows = [
        json.loads(line)
        for line in (run_dir / "metrics.jsonl").read_text().splitlines()
        if line.strip()
    ]
    elapsed = [r["train/elapsed_seconds"] for r in rows]
    return [round(b - a, 3) for a, b in zip([0.0] + elapsed[:-1], elapsed)]


def summarise(name: str, result: dict, run_dir: Path, extra: dict) -> dict:
    times = step_times(run_dir)
    later = times[1:] or times
    rows = [
        json.loads(line)
        for line in (run_dir / "metrics.jsonl").read_text().splitlines()
        if line.strip()
    ]
    return {
        "method": name,
        "steps": result["steps"],
        "step_seconds": times,
        "first_step_seconds": times[0],
        "median_step_seconds_after_first": round(statistics.median(later), 3),
        "mean_step_seconds_after_first": round(statistics.fmean(later), 3),
        "tokens_generated": result["tokens_generated"],
        "tokens_per_step": round(result["tokens_generated"] / max(1, result["steps"]), 1),
        "reward_mean_per_step": [r.get("train/reward_mean") for r in rows],
        "setup_and_save_seconds": round(result["total_seconds"] - result["wall_clock_seconds"], 2),
        **extra,
    }


def measure(args: argparse.Namespace, extra: dict) -> list[dict]:
    """Run each method for its steps at the current thread count; one summary per method."""
    runs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="baselines-speed-") as tmp:
        tmp = Path(tmp)
        if args.grpo_steps:
            result = run_grpo(
                "smollm2",
                "sentiment_prompts",
                "sentiment",
                tmp / "grpo",
                budget={"max_steps": args.grpo_steps},
                num_generations=8,
                max_completion_length=32,
                lora=LORA,
                lr=1e-4,
                beta=0.04,
            )
            runs.append(
                summarise(
                    "grpo", result, tmp / "grpo", {**extra, "completions_per_step": 8, "beta": 0.04}
                )
            )
            print(json.dumps(runs[-1]))
        if args.ppo_steps:
            result = run_ppo(
                "smollm2",
                "sentiment_prompts",
                "sentiment",
                tmp / "ppo",
                budget={"max_steps": args.ppo_steps},
                batch_size=8,
                max_completion_length=32,
                lora=LORA,
                lr=1e-4,
                num_ppo_epochs=4,
            )
            runs.append(
                summarise(
                    "ppo",
                    result,
                    tmp / "ppo",
                    {
                        **extra,
                        "completions_per_step": 8,
                        "num_ppo_epochs": 4,
                        "value_lora": True,
                        "pad": result["settings"]["pad"],
                    },
                )
            )
            print(json.dumps(runs[-1]))
        if args.sft_steps:
            result = run_sft(
                "smollm2",
                "stackexchange:train",
                tmp / "sft",
                budget={"max_steps": args.sft_steps},
                lora=LORA,
                batch_size=8,
                max_length=512,
                lr=2e-4,
            )
            runs.append(
                summarise("sft", result, tmp / "sft", {**extra, "batch_size": 8, "max_length": 512})
            )
            print(json.dumps(runs[-1]))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--grpo-steps", type=int, default=4)
    parser.add_argument("--ppo-steps", type=int, default=3)
    parser.add_argument("--sft-steps", type=int, default=4)
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[torch.get_num_threads()],
        help="torch thread counts to measure (default: torch's own)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    load_before = os.getloadavg()
    started = time.time()
    runs = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        runs += measure(args, {"torch_threads": threads})
    import trl

    report = {
        "benchmark": "TRL baselines: seconds per optimizer step, SmolLM2-135M-Instruct + LoRA r16, CPU",
        "setting": "8 completions x 32 new tokens per step (GRPO 1 prompt x 8, PPO 8 prompts x 1), VADER sentiment "
        "reward, sentiment_prompts; SFT batch 8 on stackexchange:train, max_length 512; float32",
        "trl_version": trl.__version__,
        "torch_threads": args.threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "contention_note": "The 2 CPU cores are shared with other jobs; a load average above 2 means the "
        "benchmark got less than the full machine. Timings are as measured.",
        "total_seconds": round(time.time() - started, 1),
        "results": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
