"""Benchmark: does the gold reward model know what the proxy does not?

Trains the proxy and gold StackExchange reward models exactly as `flowhf reproduce --preset cpu`
does (`flowhf.rewards.rm_config.proxy_and_gold`: the proxy on the shipped pairs, the gold on
those plus two pairs per question of kinds the proxy never sees, another seed) and reports both
models' held-out pairwise accuracy per rejected kind, with Wilson 95% intervals. A gold judge is
only worth its name if it catches the failure modes a policy finds by itself (one-word answers,
restating the question, repetition, cuts, and a non-answer preferred to a started real answer)
where the proxy does not.

Writes benchmarks/results/gold_reward/gold_reward.{json,md}. Run (about 10 minutes on 2 cores):
    .venv/bin/python benchmarks/gold_reward.py [--output-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

RESULTS = Path(__file__).resolve().parent / "results" / "gold_reward"


def wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion p observed on n trials."""
    if n == 0:
        return float("nan"), float("nan")
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def by_kind(metrics: dict) -> dict[str, dict]:
    """{kind: {accuracy, n, ci}} from a reward model's metrics.json."""
    out = {}
    for key, value in metrics.items():
        if key.startswith("eval/accuracy/"):
            kind = key.split("/", 2)[2]
            n = int(metrics[f"eval/n_pairs/{kind}"])
            out[kind] = {"accuracy": value, "n": n, "ci": wilson(value, n)}
    return out


def table(results: dict) -> str:
    from flowhf.data.gold_pairs import GOLD_KINDS, PARTIAL_KINDS

    lines = ["| rejected kind | seen by | n | proxy accuracy [95% CI] | gold accuracy [95% CI] |", "|---|---|---|---|---|"]
    proxy, gold = results["proxy"]["by_kind"], results["gold"]["by_kind"]
    for kind in sorted(gold, key=lambda k: (k in GOLD_KINDS + PARTIAL_KINDS, k)):
        cell = lambda r: f"{r['accuracy']:.2f} [{r['ci'][0]:.2f}, {r['ci'][1]:.2f}]"  # noqa: E731
        seen = "gold only" if kind in GOLD_KINDS + PARTIAL_KINDS else "both"
        lines.append(f"| {kind} | {seen} | {gold[kind]['n']} | {cell(proxy[kind])} | {cell(gold[kind])} |")
    for name in ("proxy", "gold"):
        m = results[name]["metrics"]
        lines.append(f"\n{name}: {m['train/n_pairs']} training pairs, held-out accuracy {m['eval/accuracy']:.3f} "
                     f"on {m['eval/n_pairs']} pairs, training score std {m['train/score_std']:.3g}.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    parser.add_argument("--mode", default="head_only", help="reward-model mode of both (as the cpu preset)")
    args = parser.parse_args()
    from flowhf.rewards.rm_config import RewardModelConfig, proxy_and_gold
    from flowhf.rewards.training import train_reward_model
    from flowhf.run_dir import atomic_write_text

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, config in zip(("proxy", "gold"), proxy_and_gold(RewardModelConfig(mode=args.mode), tmp)):
            metrics = train_reward_model(config)
            results[name] = {"metrics": metrics, "by_kind": by_kind(metrics),
                             "config": {k: getattr(config, k) for k in ("train_data", "extra_train_data", "seed", "mode")}}
            print(name, json.dumps(results[name]["by_kind"]))
    args.output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.output_dir / "gold_reward.json", json.dumps(results, indent=2))
    atomic_write_text(args.output_dir / "gold_reward.md", table(results))
    print(table(results))


if __name__ == "__main__":
    main()
