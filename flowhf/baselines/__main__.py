"""``python -m flowhf.baselines CONFIG.yaml [--set key=value ...]``: run one TRL baseline."""

from __future__ import annotations

import argparse
import json
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flowhf.baselines", description=__doc__)
    parser.add_argument("config", help="YAML config, e.g. configs/baselines/grpo.yaml")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Override a config key (dotted, YAML value), e.g. --set budget.max_steps=2",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="delete a run already in output_dir"
    )
    args = parser.parse_args(argv)
    if args.overwrite:
        args.overrides.append("overwrite=true")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download at run time
    from flowhf.baselines.config import run_config

    result = run_config(args.config, args.overrides)
    summary = {
        k: result[k]
        for k in (
            "method",
            "steps",
            "tokens_generated",
            "wall_clock_seconds",
            "stopped_by",
            "final_reward_mean",
            "model_dir",
        )
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    from flowhf.cli import guarded

    sys.exit(guarded(main))
