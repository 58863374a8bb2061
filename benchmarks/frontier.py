"""Benchmark: the reward-diversity frontier of `flowhf reproduce`, run in pieces across sessions.

The `cpu-full` sweep (every method's regularisation knob x 3 seeds) takes longer than one session
on 2 cores, and a session's run folder does not survive it. So the finished points are the unit
that is kept: each point's ``result.json`` (metrics, and the SHA-256 of the SFT and reward models
it started from) is copied into ``benchmarks/results/reproduce_<preset>/sweep/`` and committed. The next
session restores them into a fresh run folder, reruns the deterministic base stages (SFT, reward
models; `flowhf.experiments.reproduce.sweep.check_start` refuses to mix points if those differ) and trains
only the points still missing.

    .venv/bin/python benchmarks/frontier.py run      # restore, train what is missing, collect, report
    .venv/bin/python benchmarks/frontier.py collect  # copy finished points out of the run folder
    .venv/bin/python benchmarks/frontier.py report   # frontier.{json,png} + report.md from what is kept

``--preset`` (default cpu-full) and ``--run-dir`` / ``--results`` pick another sweep; the cpu-lr
grid is ``--preset cpu-lr``. Only the stages the sweep needs run (sft, reward_model, sweep).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
RESULT = "result.json"


def restore(results: Path, run_dir: Path) -> int:
    """Copy kept points into the run folder's sweep (never over a point it holds); returns how many."""
    copied = 0
    for kept in sorted((results / "sweep").glob(f"*/{RESULT}")):
        target = run_dir / "sweep" / kept.parent.name / RESULT
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(kept, target)
            copied += 1
    return copied


def collect(run_dir: Path, results: Path) -> int:
    """Copy the run folder's finished points into ``results/sweep``; a kept point that differs from
    the run's copy is an error (two runs of one point), never silently replaced."""
    from flowhf.errors import ConfigError

    copied = 0
    for done in sorted((run_dir / "sweep").glob(f"*/{RESULT}")):
        target = results / "sweep" / done.parent.name / RESULT
        if target.exists():
            if json.loads(target.read_text()) != json.loads(done.read_text()):
                raise ConfigError(
                    f"{target} and {done} hold different results of one point",
                    "keep one: delete the other (or use another --results folder)",
                )
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(done, target)
        copied += 1
    return copied


def report(preset_name: str, results: Path) -> Path:
    """frontier.json, frontier.png and report.md from the kept points."""
    from flowhf.config.preset import BASELINE_METHODS
    from flowhf.experiments.analysis.frontier import write_frontier
    from flowhf.experiments.reproduce.grid import describe_grid
    from flowhf.experiments.reproduce.presets import load_preset
    from flowhf.io import atomic_write_text

    preset = load_preset(preset_name)
    points = [json.loads(p.read_text()) for p in sorted((results / "sweep").glob(f"*/{RESULT}"))]
    if not points:
        raise SystemExit(
            f"no finished points under {results / 'sweep'}: run `benchmarks/frontier.py run` first"
        )
    result = write_frontier(points, results, BASELINE_METHODS)
    starts = sorted({json.dumps(p.get("start"), sort_keys=True) for p in points})
    expected = len(preset.sweep_seeds) * (
        1 + sum(len(v) for grid in preset.sweep.values() for v in grid.values())
    )
    lines = [
        f"# Frontier of preset {preset.name}: gold reward against per-prompt diversity",
        "",
        "![frontier](frontier.png)",
        "",
        describe_grid(preset),
        f"Points finished: {len(points)} of {expected}. Start models (SHA-256 prefixes of SFT, proxy, gold): "
        + "; ".join(starts),
        "",
        result.markdown(),
        "",
    ]
    return atomic_write_text(results / "report.md", "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("run", "collect", "report"))
    parser.add_argument("--preset", default="cpu-full")
    parser.add_argument("--run-dir", type=Path, help="default runs/frontier_<preset>")
    parser.add_argument(
        "--results", type=Path, help="default benchmarks/results/reproduce_<preset>"
    )
    args = parser.parse_args()
    stem = Path(args.preset).stem.replace("-", "_")
    run_dir = args.run_dir or Path("runs") / f"frontier_{stem}"
    results = args.results or HERE / "results" / f"reproduce_{stem}"
    if args.action == "run":
        from flowhf.experiments.reproduce.reproduce import run_reproduce

        print(
            f"[frontier] restored {restore(results, run_dir)} finished points into {run_dir}",
            flush=True,
        )
        try:
            run_reproduce(args.preset, run_dir, only=["sft", "reward_model", "sweep"], resume=True)
        finally:
            print(
                f"[frontier] kept {collect(run_dir, results)} new points in {results}", flush=True
            )
    elif args.action == "collect":
        print(f"[frontier] kept {collect(run_dir, results)} new points in {results}")
    print(f"[frontier] report: {report(args.preset, results)}")


if __name__ == "__main__":
    main()
