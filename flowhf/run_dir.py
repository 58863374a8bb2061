"""One run per folder: what `train`, `reward train`, the baselines and `reproduce` check before
anything loads, and the lock a running run holds.

- A folder that already holds a run (any of `RUN_FILES`: logs, checkpoints, a model, DONE, ...)
  is refused unless told ``resume`` (continue that run) or ``overwrite`` (delete that run's
  files, said out loud; other files, e.g. a prompts file put there, stay). A folder without
  run files (absent, empty, or holding only inputs) is always fine.
- A running run holds ``.flowhf.lock`` (JSON: pid, host, start time). A second run in the
  folder is refused while that pid lives, whatever the flags. A lock whose pid is dead on this
  host is stale (a killed run): it is reported, and ``resume`` / ``overwrite`` clear it.
- ``resume`` with a config compares it with the folder's ``config.yaml``: a change in what
  defines the run (model, LoRA, objective, target, data, sampling, ...) is an error listing the
  keys; budget keys (`RESUMABLE_CHANGES`) may change.
Only the main process checks and locks (launchers set RANK); the others write no run files.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import yaml

from flowhf.errors import ConfigError, RunDirError

LOCK = ".flowhf.lock"
# What the runs of every command write at the top of their folder.
RUN_FILES = (
    "metrics.jsonl",
    "metrics.csv",
    "config.yaml",
    "checkpoints",
    "result.json",
    "budget.json",
    "model",
    "DONE",
    "adapter_model.safetensors",
    "model.safetensors",
    "config.json",
    "summary.json",
    "metrics.json",
    "histograms.jsonl",
    "skipped_steps.jsonl",
    "tensorboard",
    "flowhf_reward.json",
    "report.md",
    "plan.json",
    # the rest of a saved policy folder (README.md is FlowHF's model card, flowhf.models.card)
    "adapter_config.json",
    "flowhf_heads.json",
    "flowhf_heads.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "generation_config.json",
    "curves.png",
    "README.md",
    "reward_config.yaml",
)
# Keys a resumed run may change: how long it runs and how it logs, not what it learns.
RESUMABLE_CHANGES = (
    "optim.max_steps",
    "optim.num_train_epochs",
    "optim.max_seconds",
    "optim.max_completions",
    "optim.max_skipped_steps",
    "logging.",
    "model.cache_dir",
)


def read_lock(folder: str | os.PathLike) -> dict | None:
    """The lock's {pid, host, started}, or None (an unreadable lock counts as stale)."""
    path = Path(folder) / LOCK
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"pid": -1, "host": socket.gethostname(), "started": 0}


def lock_is_live(lock: dict) -> bool:
    """True unless the lock's pid is known dead (same host). Another host's lock cannot be
    checked from here, so it counts as live."""
    if lock.get("host") != socket.gethostname():
        return True
    pid = int(lock.get("pid", -1))
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    state = _proc_stat(
        pid
    )  # where /proc exists: a zombie (killed, not yet reaped) or a reused pid is dead
    if state is not None and (
        state[0] == "Z" or ("pid_start" in lock and state[1] != lock["pid_start"])
    ):
        return False
    return True


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of ``pid`` from /proc, or None off Linux."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[19])


def _describe(lock: dict) -> str:
    return f"pid {lock.get('pid')} on {lock.get('host')}"


def prepare_run_dir(
    folder: str | os.PathLike,
    resume: bool = False,
    overwrite: bool = False,
    config: dict | None = None,
    log=print,
) -> None:
    """Refuse, clear or accept ``folder`` for a new run (see the module doc); call it before
    loading anything."""
    from flowhf.distributed import is_main_process

    if not is_main_process():
        return
    folder = Path(folder)
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other", "choose one")
    lock = read_lock(folder)
    if lock is not None and lock_is_live(lock) and lock.get("pid") != os.getpid():
        raise RunDirError(
            f"{folder} is in use by a running run ({_describe(lock)})",
            f"wait for it to end, or use another --output-dir (if it is gone, delete {folder / LOCK})",
        )
    if lock is not None and lock.get("pid") != os.getpid():
        log(f"[flowhf] {folder}: stale lock of {_describe(lock)} (a run that was killed)")
    entries = run_entries(folder)
    if not entries:
        return
    if overwrite:
        for name in entries:
            path = folder / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        log(f"[flowhf] --overwrite: deleted the earlier run in {folder} ({', '.join(entries)})")
    elif resume:
        if config is not None:
            check_resume_config(folder, config)
    else:
        stale = " and a stale lock" if lock is not None else ""
        raise RunDirError(
            f"{folder} already holds a run ({', '.join(entries[:4])}{', ...' if len(entries) > 4 else ''}"
            f"{stale}); nothing was changed"
        )


def run_entries(folder: str | os.PathLike) -> list[str]:
    """Names in ``folder`` that belong to a run (`RUN_FILES`, stage folders with DONE, temporary
    ``.tmp-*`` folders of a killed save)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(
        p.name
        for p in folder.iterdir()
        if p.name in RUN_FILES or p.name.startswith(".tmp-") or (p / "DONE").is_file()
    )


def _flatten(data: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in (data or {}).items():
        if isinstance(value, dict) and prefix == "":  # groups; values that are mappings stay whole
            flat.update(_flatten(value, f"{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_resume_config(folder: str | os.PathLike, config: dict) -> None:
    """Error listing the keys (saved -> new) where ``config`` differs from the run's config.yaml
    in anything but `RESUMABLE_CHANGES`."""
    path = Path(folder) / "config.yaml"
    if not path.is_file():
        return  # nothing saved yet (killed before its first write): nothing to compare
    saved, new = _flatten(yaml.safe_load(path.read_text()) or {}), _flatten(config)
    changed = sorted(
        k
        for k in set(saved) | set(new)
        if saved.get(k) != new.get(k) and not k.startswith(RESUMABLE_CHANGES)
    )
    if changed:
        diffs = "; ".join(f"{k}: {saved.get(k)!r} -> {new.get(k)!r}" for k in changed[:6])
        raise RunDirError(
            f"--resume: the config differs from the run's {path} in {len(changed)} key(s): {diffs}",
            "resume with the run's own config (only max_steps, num_train_epochs, max_seconds and "
            "logging keys may change), or use --overwrite / another --output-dir to start a new run",
        )


def acquire_lock(folder: str | os.PathLike) -> bool:
    """Take ``folder``'s lock for this process. Returns False when this process already holds
    it (the caller must then not release it). A live lock of another process is an error;
    a stale one is replaced."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK
    mine = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    stat = _proc_stat(os.getpid())
    if stat is not None:
        mine["pid_start"] = stat[1]  # tells this process from a later one given the same pid
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            held = read_lock(folder)
            if held is None:
                continue  # released in between
            if held.get("pid") == mine["pid"] and held.get("host") == mine["host"]:
                return False
            if lock_is_live(held):
                raise RunDirError(
                    f"{folder} is in use by a running run ({_describe(held)})",
                    "wait for it to end, or use another --output-dir",
                ) from None
            path.unlink(missing_ok=True)  # stale: prepare_run_dir reported it
            continue
        with os.fdopen(fd, "w") as fh:
            json.dump(mine, fh)
        return True
    raise RunDirError(f"{folder}: could not take the run lock {path}")


def release_lock(folder: str | os.PathLike) -> None:
    """Remove ``folder``'s lock if this process holds it."""
    held = read_lock(folder)
    if (
        held is not None
        and held.get("pid") == os.getpid()
        and held.get("host") == socket.gethostname()
    ):
        (Path(folder) / LOCK).unlink(missing_ok=True)


@contextlib.contextmanager
def run_lock(folder: str | os.PathLike) -> Iterator[None]:
    """Hold ``folder``'s lock for the block (main process only; re-entrant in one process)."""
    from flowhf.distributed import is_main_process

    taken = is_main_process() and acquire_lock(folder)
    try:
        yield
    finally:
        if taken:
            release_lock(folder)


@contextlib.contextmanager
def claim_run_dir(folder: str | os.PathLike, *choice, **named_choice) -> Iterator[None]:
    """`prepare_run_dir` (same arguments: resume, overwrite, config, log) then `run_lock` for
    the block: what a command does before loading."""
    prepare_run_dir(folder, *choice, **named_choice)
    with run_lock(folder):
        yield
