#!/usr/bin/env python
"""Seconds per step of FlowHFTrainer (each sampler) and of TRL's GRPO, back to back, on SmolLM2-135M + LoRA.

    python benchmarks/trainer_speed.py --steps 3 --max-new-tokens 32 --grpo --json benchmarks/results/step_speed_32.json

Batch 2 prompts x 4 samples, LoRA r16 (alpha 32, no dropout) on q/k/v/o, VADER sentiment reward,
shipped sentiment prompts. TRL's GRPOTrainer (``--grpo``) runs at the same batch (batch 8,
num_generations 4), completion length, LoRA and dtype (its ``bf16`` = FlowHF's
``model.autocast_bf16``), with beta 0.04 so it too runs a reference pass. For each dtype the
runs follow one another in one process: FlowHF per sampler, then GRPO. The first step of
each (warm-up) is excluded. Both stop a completion at EOS, so the tokens per step are
recorded next to the seconds. The load average is recorded (other jobs share the 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
from pathlib import Path

import torch

import flowhf  # (sets the OpenMP waits before torch loads)
from flowhf.config.training import FlowHFConfig
from flowhf.models.lora import LoraSettings
from flowhf.training.trainer import FlowHFTrainer

LORA = LoraSettings(r=16, alpha=32, dropout=0.0)  # FlowHF's model.lora_* defaults


def flowhf_run(objective: str, bf16: bool, sampler: str, args) -> dict:
    cfg = FlowHFConfig.from_dict(
        {
            "model": {"name": "smollm2", "lora": True, "autocast_bf16": bf16},
            "target": {"reward": "sentiment", "beta": 8.0, "alpha": 1.0},
            "objective": {"objective": objective, "logz": "batch"},
            "sampling": {
                "max_new_tokens": args.max_new_tokens,
                "prompts_per_step": 2,
                "samples_per_prompt": 4,
                "explore_prob": 0.0,
                "sampler": sampler,
            },
            "optim": {"max_steps": args.steps + 1},
            "logging": {"output_dir": "/tmp/flowhf-speed", "save_steps": 0, "progress_bar": False},
        }
    )
    trainer = FlowHFTrainer(args=cfg)
    steps = [trainer.training_step() for _ in range(args.steps + 1)][1:]
    mean = lambda k: statistics.mean(s[k] for s in steps)  # noqa: E731
    rec = {
        "method": f"flowhf-{objective}",
        "sampler": sampler,
        "bf16_autocast": bf16,
        "steps_timed": args.steps,
        "seconds_per_step": mean("train/step_time"),
        "generate_seconds": mean("train/sample_time"),
        "reward_seconds": mean("train/reward_time"),
        "update_seconds": mean("train/update_time"),
        "tokens_per_second": mean("train/tokens_per_second"),
        "completion_length": mean("train/completion_length"),
        "step_seconds": [s["train/step_time"] for s in steps],
        "load_average": list(os.getloadavg()),
    }
    rec["generate_share"] = rec["generate_seconds"] / rec["seconds_per_step"]
    return rec


def grpo_run(bf16: bool, args) -> dict:
    """TRL GRPO at the same batch, lengths, LoRA and dtype; per-step seconds from its metrics.jsonl."""
    from baselines_speed import step_times

    from flowhf.experiments.baselines import run_grpo

    with tempfile.TemporaryDirectory(prefix="grpo-speed-") as tmp:
        result = run_grpo(
            "smollm2",
            "sentiment_prompts",
            "sentiment",
            Path(tmp) / "grpo",
            budget={"max_steps": args.steps + 1},
            num_generations=4,
            batch_size=8,
            max_completion_length=args.max_new_tokens,
            lora=LORA,
            lr=1e-4,
            beta=0.04,
            trl_overrides={"bf16": bf16, **({"use_cpu": True} if bf16 else {})},
        )
        times = step_times(Path(tmp) / "grpo")[1:]
    return {
        "method": "trl-grpo",
        "bf16_autocast": bf16,
        "steps_timed": len(times),
        "seconds_per_step": statistics.mean(times),
        "step_seconds": times,
        "completion_length": result["tokens_generated"] / max(1, result["steps"]) / 8,
        "load_average": list(os.getloadavg()),
    }


def ratios(records: list[dict]) -> dict:
    """GRPO seconds over each FlowHF run's, and plain over fast, per dtype."""
    out = {}
    for bf16 in sorted({r["bf16_autocast"] for r in records}):
        rows = [r for r in records if r["bf16_autocast"] == bf16]
        tag = "bf16" if bf16 else "fp32"
        grpo = next((r["seconds_per_step"] for r in rows if r["method"] == "trl-grpo"), None)
        by = {(r["method"], r.get("sampler")): r for r in rows}
        for (method, sampler), r in by.items():
            if grpo and method != "trl-grpo":
                out[f"{tag}: grpo / {method} {sampler}"] = grpo / r["seconds_per_step"]
            if sampler == "fast" and (method, "plain") in by:
                plain = by[(method, "plain")]
                out[f"{tag}: {method} step plain / fast"] = (
                    plain["seconds_per_step"] / r["seconds_per_step"]
                )
                out[f"{tag}: {method} generation plain / fast"] = (
                    plain["generate_seconds"] / r["generate_seconds"]
                )
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--objectives", nargs="+", default=["subtb"])
    p.add_argument("--samplers", nargs="+", choices=["plain", "fast"], default=["plain", "fast"])
    p.add_argument("--bf16", choices=["on", "off", "both"], default="both")
    p.add_argument(
        "--grpo", action="store_true", help="also time TRL's GRPOTrainer at the same settings"
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=Path("benchmarks/results/trainer_speed.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    records = []
    for bf16 in {"on": [True], "off": [False], "both": [False, True]}[args.bf16]:
        for objective in args.objectives:
            for sampler in args.samplers:
                records.append(flowhf_run(objective, bf16, sampler, args))
                r = records[-1]
                print(
                    f"{objective:6s} {sampler:5s} bf16={bf16!s:5s} {r['seconds_per_step']:6.2f} s/step  "
                    f"generate {r['generate_seconds']:.2f} s ({r['generate_share']:.0%})",
                    flush=True,
                )
        if args.grpo:
            records.append(grpo_run(bf16, args))
            torch.set_num_threads(args.threads)  # TRL's Trainer may have changed it
            print(
                f"grpo         bf16={bf16!s:5s} {records[-1]['seconds_per_step']:6.2f} s/step",
                flush=True,
            )
    out = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {args.threads} threads, torch {torch.__version__}",
        "openmp_waits": flowhf.openmp_waits(),
        "batch": "2 prompts x 4 samples",
        "max_new_tokens": args.max_new_tokens,
        "lora": "r16 alpha32 q,k,v,o",
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "ratios": ratios(records),
        "runs": records,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out["ratios"], indent=1))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
