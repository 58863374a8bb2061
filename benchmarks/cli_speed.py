"""Benchmark: wall time of the CLI's quick answers (`flowhf --help`, `flowhf train --help-config`,
`flowhf reproduce --dry-run`), median of N runs, for this checkout and optionally another one.

Each command is ``python -m flowhf.cli ...`` in a fresh process with ``PYTHONPATH`` set to the
checkout (one untimed warm-up run first, so byte-code compilation is not counted); a run also
reports whether torch was imported. The machine's load average before and after is recorded:
other jobs share the CPU, so timings are as measured. Writes benchmarks/results/cli_speed.json.
Run:
    .venv/bin/python benchmarks/cli_speed.py [--before /tmp/cli-before] [--runs 5]
(``git worktree add /tmp/cli-before COMMIT`` makes the earlier checkout).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "--help": ["--help"],
    "train --help-config": ["train", "--help-config"],
    "reproduce --dry-run": ["reproduce", "--dry-run", "--output-dir", "{tmp}/reproduce"],
}
TORCH_PROBE = (
    "import runpy, sys; sys.argv = ['flowhf'] + sys.argv[1:]\n"
    "try:\n    runpy.run_module('flowhf.cli', run_name='__main__')\n"
    "except SystemExit:\n    pass\n"
    "sys.stderr.write('TORCH=%s' % ('torch' in sys.modules))"
)


def _run(checkout: Path, argv: list[str], probe: bool = False) -> tuple[float, str]:
    env = dict(os.environ, PYTHONPATH=str(checkout), PYTHONWARNINGS="ignore")
    cmd = (
        [sys.executable, "-c", TORCH_PROBE, *argv]
        if probe
        else [sys.executable, "-m", "flowhf.cli", *argv]
    )
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=checkout, env=env, capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} in {checkout}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
    return seconds, proc.stderr


def measure(checkout: Path, runs: int) -> dict:
    """Per command: the wall times, their median, and whether torch was imported."""
    out = {"checkout": str(checkout), "commit": _commit(checkout)}
    with tempfile.TemporaryDirectory() as tmp:
        for name, argv in COMMANDS.items():
            argv = [a.format(tmp=tmp) for a in argv]
            _, probe = _run(checkout, argv, probe=True)  # warm-up, and the torch check
            times = [round(_run(checkout, argv)[0], 3) for _ in range(runs)]
            out[name] = {
                "seconds": times,
                "median_seconds": statistics.median(times),
                "imports_torch": "TORCH=True" in probe,
            }
    return out


def _commit(checkout: Path) -> str | None:
    proc = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return proc.stdout.strip() or None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="An earlier checkout to time as well.")
    parser.add_argument("--runs", type=int, default=5, help="Timed runs per command (median).")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks/results/cli_speed.json")
    args = parser.parse_args(argv)
    result = {
        "what": "wall seconds of `python -m flowhf.cli ...` in a fresh process, median of runs",
        "runs": args.runs,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "load_average_before": list(os.getloadavg()),
    }
    if args.before is not None:
        result["before"] = measure(args.before.resolve(), args.runs)
    result["after"] = measure(ROOT, args.runs)
    result["load_average_after"] = list(os.getloadavg())
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
