#!/usr/bin/env python
"""Seconds per step and tokens/s of FlowHFTrainer on SmolLM2-135M (LoRA), batch 8 x 32 new tokens.

    python benchmarks/trainer_speed.py --steps 4 --json benchmarks/results/trainer_speed.json

Batch 8 = 2 prompts x 4 samples, the shape TRL's GRPO was measured at (8 completions x 32
tokens, 8.2 s/step on this machine class). The first step (warm-up) is excluded. Reports
the share of the step spent generating, scoring and updating.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
from pathlib import Path

import flowhf  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads)
import torch

from flowhf.training.config import FlowHFConfig
from flowhf.training.trainer import FlowHFTrainer


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--objectives", nargs="+", default=["subtb", "tb"])
    p.add_argument("--bf16", choices=["on", "off", "both"], default="both")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=Path("benchmarks/results/trainer_speed.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    records = []
    modes = {"on": [True], "off": [False], "both": [False, True]}[args.bf16]
    for objective in args.objectives:
        for bf16 in modes:
            cfg = FlowHFConfig.from_dict({
                "model": {"name": "smollm2", "lora": True, "autocast_bf16": bf16},
                "target": {"reward": "sentiment", "beta": 8.0, "alpha": 1.0},
                "objective": {"objective": objective, "logz": "batch"},
                "sampling": {"max_new_tokens": 32, "prompts_per_step": 2, "samples_per_prompt": 4, "explore_prob": 0.0},
                "optim": {"max_steps": args.steps + 1},
                "logging": {"output_dir": "/tmp/flowhf-speed", "save_steps": 0, "progress_bar": False},
            })
            trainer = FlowHFTrainer(args=cfg)
            steps = [trainer.training_step() for _ in range(args.steps + 1)][1:]
            mean = lambda k: statistics.mean(s[k] for s in steps)  # noqa: E731
            rec = {
                "objective": objective, "bf16_autocast": bf16, "batch": "2 prompts x 4 samples", "max_new_tokens": 32,
                "steps_timed": args.steps, "seconds_per_step": mean("train/step_time"),
                "generate_seconds": mean("train/sample_time"), "reward_seconds": mean("train/reward_time"),
                "update_seconds": mean("train/update_time"), "tokens_per_second": mean("train/tokens_per_second"),
                "completion_length": mean("train/completion_length"),
            }
            rec["generate_share"] = rec["generate_seconds"] / rec["seconds_per_step"]
            records.append(rec)
            print(f"{objective:6s} bf16={bf16!s:5s} {rec['seconds_per_step']:6.2f} s/step  {rec['tokens_per_second']:6.1f} tok/s  "
                  f"generate {rec['generate_share']:.0%}", flush=True)
    out = {"machine": f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}",
           "trl_grpo_reference_seconds_per_step": 8.2, "runs": records}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
