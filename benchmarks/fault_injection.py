"""Fault injection: kill training with SIGKILL at random moments, resume, and compare with an
uninterrupted run.

    python benchmarks/fault_injection.py --trials 20                      # smoke config, one process
    python benchmarks/fault_injection.py --trials 0 --ddp-trials 3        # torchrun --nproc_per_node 2
    python benchmarks/fault_injection.py --trials 0 --reproduce-trials 3  # flowhf reproduce --preset smoke

Each trial starts `flowhf train` (the smoke config, tiny model) and SIGKILLs it, either at a
random moment of the run or inside a checkpoint save (FLOWHF_TEST_STALL_SAVE stalls the save
inside its temporary folder; the kill lands there), one to `--max-kills` times, then lets a
last ``--resume`` finish. It then compares the saved trainable weights and heads (exactly) and
``metrics.jsonl`` (timing columns aside) with the uninterrupted reference run. Reproduce trials
kill `flowhf reproduce --preset smoke` at a random moment, rerun it with ``--resume`` and
compare report.md (the wall-clock and time-to-reach sections aside) with an uninterrupted one.
Results: JSON (``--json``, default benchmarks/results/reliability/fault_injection.json).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIMING = {
    "time",
    "train/step_time",
    "train/sample_time",
    "train/reward_time",
    "train/update_time",
    "train/tokens_per_second",
    "train/elapsed_seconds",
}


def train_command(out: Path, steps: int, ddp: bool, resume: bool) -> list[str]:
    launcher = (
        [str(Path(sys.executable).with_name("torchrun")), "--nproc_per_node", "2"]
        if ddp
        else [sys.executable]
    )
    cmd = launcher + [
        "-m",
        "flowhf.cli",
        "train",
        "--config",
        "configs/smoke.yaml",
        "--output-dir",
        str(out),
        "--set",
        f"optim.max_steps={steps}",
        "--set",
        "logging.save_steps=2",
        "--set",
        "logging.progress_bar=false",
    ]
    return cmd + (["--resume"] if resume else [])


def env(stall: float | None = None) -> dict:
    e = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        PYTHONWARNINGS="ignore",
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    e.pop("FLOWHF_TEST_STALL_SAVE", None)
    if stall:
        e["FLOWHF_TEST_STALL_SAVE"] = str(stall)
    return e


FORK = False  # --fork: runs are forked from this process (torch already imported: a start costs ms, not s)


class Forked:
    """A `flowhf` CLI run in a forked child, with the few Popen methods used here."""

    def __init__(self, cmd: list[str], stall: float | None) -> None:
        argv = cmd[cmd.index("flowhf.cli") + 1 :]
        self.returncode, self.pid = None, os.fork()
        if self.pid == 0:  # the child: a session of its own, the run's environment, no output
            code = 1
            try:
                os.setsid()
                os.chdir(ROOT)  # the config path is relative to the repository
                os.environ.clear()
                os.environ.update(env(stall))
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 1)
                os.dup2(devnull, 2)
                from flowhf.cli import main as cli_main

                code = cli_main(argv)
            finally:
                os._exit(code)

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:
        if self.returncode is None:
            self.returncode = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
        return self.returncode

    def communicate(self) -> tuple[str, str]:
        self.wait()
        return "", "(output of forked runs is discarded; rerun without --fork to see it)"


def start(cmd: list[str], stall: float | None = None):
    if FORK and "torchrun" not in cmd[0]:
        return Forked(cmd, stall)
    # a session of its own: SIGKILL reaches every process of the run (torchrun's workers too)
    return subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env(stall),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (torchrun starts its workers in sessions of their own)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill(proc) -> None:
    """SIGKILL the run's whole process tree at once, as a crash or `kill -9` of every process would."""
    victims = [proc.pid, *descendants(proc.pid)]
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    for _ in range(250):  # all gone before the next start
        if not any(Path(f"/proc/{pid}").exists() and _alive(pid) for pid in victims[1:]):
            return
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def finish(proc, what: str) -> None:
    _, err = proc.communicate()
    if proc.returncode != 0:
        lines = [
            line for line in err.splitlines() if "flowhf" in line or "Error" in line
        ]  # the cause, not the frames
        raise RuntimeError(f"{what} exited {proc.returncode}:\n" + "\n".join(lines[-30:]))


def run_to_end(cmd: list[str], what: str) -> float:
    started = time.perf_counter()
    finish(start(cmd), what)
    return time.perf_counter() - started


def in_save(out: Path) -> bool:
    root = out / "checkpoints"
    return root.is_dir() and any(p.name.startswith(".tmp-step-") for p in root.iterdir())


def killed_run(
    cmd: list[str],
    rng: random.Random,
    duration: float,
    during_save: bool,
    span: tuple[float, float] = (0.2, 0.95),
) -> dict:
    """Start ``cmd`` and SIGKILL it: inside a checkpoint save, or at a random moment.
    Returns what happened (None when the run ended before the kill)."""
    out = Path(cmd[cmd.index("--output-dir") + 1])
    proc = start(cmd, stall=1.5 if during_save else None)
    started = time.perf_counter()
    if during_save:
        saves_to_skip = rng.randrange(3)  # not always the first save
        while proc.poll() is None:
            if in_save(out):
                if saves_to_skip == 0:
                    kill(proc)
                    return {
                        "kind": "during_save",
                        "at_seconds": round(time.perf_counter() - started, 2),
                    }
                saves_to_skip -= 1
                while in_save(out) and proc.poll() is None:
                    time.sleep(0.02)
            time.sleep(0.02)
    else:
        at = rng.uniform(*span) * duration
        while proc.poll() is None and time.perf_counter() - started < at:
            time.sleep(0.02)
        if proc.poll() is None:
            kill(proc)
            return {"kind": "random", "at_seconds": round(at, 2)}
    finish(proc, "run meant to be killed")
    return {"kind": "none (ended before the kill)"}


def untimed_rows(run: Path) -> list[dict]:
    return [
        {k: v for k, v in json.loads(line).items() if k not in TIMING}
        for line in (run / "metrics.jsonl").read_text().splitlines()
        if line.strip()
    ]


def same_weights(a: Path, b: Path) -> bool:
    import torch
    from safetensors.torch import load_file

    for name in ("adapter_model.safetensors", "flowhf_heads.safetensors"):
        ta, tb = load_file(str(a / name)), load_file(str(b / name))
        if ta.keys() != tb.keys() or any(not torch.equal(ta[k], tb[k]) for k in ta):
            return False
    return True


def train_trials(n: int, ddp: bool, steps: int, max_kills: int, seed: int, work: Path, log) -> dict:
    reference = work / ("ddp-reference" if ddp else "reference")
    duration = run_to_end(train_command(reference, steps, ddp, False), "reference run")
    log(f"reference ({'2 processes' if ddp else '1 process'}): {steps} steps in {duration:.1f} s")
    rng, trials = random.Random(seed), []
    for i in range(n):
        out = work / f"{'ddp-' if ddp else ''}trial-{i}"
        kills = []
        for k in range(rng.randint(1, max_kills)):
            kills.append(
                killed_run(
                    train_command(out, steps, ddp, resume=k > 0),
                    rng,
                    duration,
                    during_save=(i + k) % 3 == 1,
                )
            )
        leftovers = (
            sorted(p.name for p in (out / "checkpoints").glob(".tmp-*"))
            if (out / "checkpoints").is_dir()
            else []
        )
        run_to_end(train_command(out, steps, ddp, resume=True), "resume")
        weights, metrics = (
            same_weights(reference, out),
            untimed_rows(reference) == untimed_rows(out),
        )
        trials.append(
            {
                "trial": i,
                "kills": kills,
                "tmp_folders_before_resume": leftovers,
                "tmp_folders_after": sorted(p.name for p in (out / "checkpoints").glob(".tmp-*")),
                "weights_identical": weights,
                "metrics_identical": metrics,
            }
        )
        log(
            f"trial {i}: kills {[k['kind'] for k in kills]} -> weights {'=' if weights else 'DIFFER'}, "
            f"metrics {'=' if metrics else 'DIFFER'}"
        )
        shutil.rmtree(out, ignore_errors=True)
    identical = sum(t["weights_identical"] and t["metrics_identical"] for t in trials)
    killed = sum(
        any(k["kind"] != "none (ended before the kill)" for k in t["kills"]) for t in trials
    )
    return {
        "trials": n,
        "identical": identical,
        "trials_with_a_kill": killed,
        "kills": sum(
            k["kind"] != "none (ended before the kill)" for t in trials for k in t["kills"]
        ),
        "kills_inside_a_save": sum(k["kind"] == "during_save" for t in trials for k in t["kills"]),
        "steps": steps,
        "reference_seconds": round(duration, 1),
        "per_trial": trials,
    }


def report_body(run: Path) -> str:
    """report.md without its timing sections (wall-clock per stage, time to reach PPO), the run
    folder's path replaced by <run>."""
    keep, lines = True, []
    for line in (run / "report.md").read_text().replace(str(run), "<run>").splitlines():
        if line.startswith("## "):
            keep = not line.startswith(("## Wall-clock", "## Time to reach"))
        if keep:
            lines.append(line)
    return "\n".join(lines)


def reproduce_trials(n: int, seed: int, work: Path, log) -> dict:
    def cmd(out: Path, resume: bool) -> list[str]:
        return [
            sys.executable,
            "-m",
            "flowhf.cli",
            "reproduce",
            "--preset",
            "smoke",
            "--output-dir",
            str(out),
        ] + (["--resume"] if resume else [])

    reference = work / "reproduce-reference"
    duration = run_to_end(cmd(reference, False), "reference reproduce")
    log(f"reference reproduce --preset smoke: {duration:.0f} s")
    rng, trials = random.Random(seed + 1), []
    for i in range(n):
        out = work / f"reproduce-{i}"
        kill_info = killed_run(cmd(out, False), rng, duration, during_save=False, span=(0.2, 0.8))
        kill_info["stages_done_at_kill"] = sorted(p.parent.name for p in out.glob("*/DONE"))
        run_to_end(cmd(out, True), "reproduce --resume")
        a, b = report_body(reference).splitlines(), report_body(out).splitlines()
        same = a == b
        first_diff = next(
            ([x, y] for x, y in zip(a, b) if x != y), None if same else ["(lengths differ)", ""]
        )
        trials.append(
            {
                "trial": i,
                "kill": kill_info,
                "report_identical": same,
                "first_difference": first_diff,
            }
        )
        log(
            f"reproduce trial {i}: killed at {kill_info.get('at_seconds')} s -> report {'=' if same else 'DIFFERS'}"
        )
        shutil.rmtree(out, ignore_errors=True)
    return {
        "trials": n,
        "identical": sum(t["report_identical"] for t in trials),
        "reference_seconds": round(duration, 1),
        "per_trial": trials,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=20, help="single-process training trials")
    parser.add_argument(
        "--ddp-trials", type=int, default=0, help="trials under torchrun --nproc_per_node 2"
    )
    parser.add_argument(
        "--reproduce-trials", type=int, default=0, help="flowhf reproduce --preset smoke trials"
    )
    parser.add_argument(
        "--steps", type=int, default=10, help="training steps of each run (checkpoint every 2)"
    )
    parser.add_argument("--max-kills", type=int, default=2, help="kills per trial: 1 to this many")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--json",
        default=str(ROOT / "benchmarks" / "results" / "reliability" / "fault_injection.json"),
    )
    parser.add_argument(
        "--work-dir", help="where runs are written (default: a temporary folder, removed)"
    )
    parser.add_argument(
        "--fork",
        action="store_true",
        help="fork single-process runs from this process (fast starts)",
    )
    args = parser.parse_args(argv)
    global FORK
    FORK = args.fork
    if FORK:  # what the forked runs import, imported once here
        import flowhf.cli  # noqa: F401
        import flowhf.training.trainer  # noqa: F401
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="flowhf-faults-"))
    log = lambda msg: print(f"[fault-injection] {msg}", flush=True)  # noqa: E731
    started = time.perf_counter()
    result = {
        "command": "python benchmarks/fault_injection.py "
        + " ".join(argv if argv is not None else sys.argv[1:])
    }
    try:
        if args.trials:
            result["single_process"] = train_trials(
                args.trials, False, args.steps, args.max_kills, args.seed, work, log
            )
        if args.ddp_trials:
            result["torchrun_2"] = train_trials(
                args.ddp_trials, True, args.steps, args.max_kills, args.seed, work, log
            )
        if args.reproduce_trials:
            result["reproduce_smoke"] = reproduce_trials(
                args.reproduce_trials, args.seed, work, log
            )
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    result["seconds"] = round(time.perf_counter() - started, 1)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    parts = [
        f"{k}: {v['identical']}/{v['trials']} identical"
        for k, v in result.items()
        if isinstance(v, dict)
    ]
    log("; ".join(parts) + f" ({result['seconds']} s) -> {args.json}")
    return (
        0
        if all(v["identical"] == v["trials"] for v in result.values() if isinstance(v, dict))
        else 1
    )


if __name__ == "__main__":
    sys.exit(main())
