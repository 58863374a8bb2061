"""Checkpoints that resume exactly: weights, optimiser, scheduler, RNGs, replay, data position.

Layout of ``<output_dir>/checkpoints/step-N/``:
    trainable.safetensors   trainable policy parameters (LoRA adapters, or all weights)
    heads.safetensors       flow / log Z heads
    optimizer.pt            optimiser + scheduler state (loaded with weights_only=True)
    rng.pt                  torch global + sampling generator states (weights_only=True)
    trainer_state.json      step, data cursor, epoch, skip counters, log history, python RNG state
    replay.json             replay buffer
    rank-R/                 process R's own rng.pt, replay.json and python RNG (multi-process runs, R >= 1)
    manifest.json           size and SHA-256 of every file above, written last
Written to a temporary folder and renamed, so a killed save never leaves a half checkpoint
(resume deletes the ``.tmp-step-*`` folders a killed save leaves). Resume takes the newest
checkpoint whose manifest verifies and that loads, naming any it skipped and why; pruning
keeps the newest verified one. What goes in is `FlowHFTrainer.state_dict()`, the parts' own
states (``run``: counters and the torch RNG; ``rollout``: replay buffer and exploration
streams; ``update``: weights, heads, optimiser and schedule); this module only owns the file
layout, which is the same as before the trainer had parts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file, save_file

from flowhf.errors import CheckpointError
from flowhf.io import atomic_folder
from flowhf.models.cache import file_sha256

CHECKPOINTS = "checkpoints"
_STEP = re.compile(r"^step-(\d+)$")


def _alone() -> None:
    """The barrier of a single-process run."""


@dataclass(frozen=True)
class RunCheckpoints:
    """The checkpoints of one run folder as one of the run's processes sees them."""

    output_dir: Path
    rank: int = 0  # this process
    processes: int = 1  # how many save together
    keep: int = 0  # logging.save_total_limit (0: every checkpoint)
    barrier: Callable[[], None] = _alone  # every process waits here for the others

    @property
    def root(self) -> Path:
        return Path(self.output_dir) / CHECKPOINTS

    @property
    def main(self) -> bool:
        return self.rank == 0

    def say(self, message: str) -> None:
        if self.main:  # one process speaks for the run
            print(message)


def save_checkpoint(site: RunCheckpoints, step: int, state: dict) -> Path | None:
    """Write ``state`` (a `FlowHFTrainer.state_dict()`) as ``checkpoints/step-N`` (every process
    its own part, rank 0 the folder), keeping the newest ones. Every process must call it."""
    final = site.root / f"step-{step}"
    if site.processes > 1:  # each rank's own streams and replay, beside rank 0's
        if not site.main:
            site.root.mkdir(parents=True, exist_ok=True)
            with atomic_folder(site.root / f".rank-{site.rank}-step-{step}") as tmp:
                _write_rank_state(tmp, state)
        site.barrier()
    try:
        return _save_main(site, step, final, state) if site.main else None
    finally:
        if site.processes > 1:  # no process starts its next save before this one is complete
            site.barrier()


def _save_main(site: RunCheckpoints, step: int, final: Path, state: dict) -> Path:
    update, rollout = state["update"], state["rollout"]
    site.root.mkdir(parents=True, exist_ok=True)
    with atomic_folder(final) as tmp:
        save_file(update["trainable"], str(tmp / "trainable.safetensors"))
        save_file(update["heads"], str(tmp / "heads.safetensors"))
        torch.save(update["optimizer"], tmp / "optimizer.pt")
        _write_rank_state(tmp, state)
        counters = dict(state["run"]["counters"], python_rng=rollout["python_rng"])
        (tmp / "trainer_state.json").write_text(json.dumps(counters))
        for r in range(1, site.processes):
            os.replace(site.root / f".rank-{r}-step-{step}", tmp / f"rank-{r}")
        _hook("FLOWHF_TEST_STALL_SAVE")
        write_manifest(tmp)  # last: a checkpoint without a verifying manifest is never trusted
    _prune(site.root, site.keep)
    return final


def _write_rank_state(folder: Path, state: dict) -> None:
    """One process's own part: the torch RNG, the rollout's streams and its replay buffer."""
    rollout = state["rollout"]
    rng = {"torch": state["run"]["torch_rng"], "generator": rollout["generator"]}
    torch.save(rng, folder / "rng.pt")
    (folder / "replay.json").write_text(json.dumps(rollout["replay"]))
    (folder / "python_rng.json").write_text(json.dumps(rollout["python_rng"]))


def _hook(name: str) -> None:
    """Fault-injection hook (benchmarks/fault_injection.py): with ``name`` set to seconds,
    stall the save here, inside the temporary folder, so a kill lands mid-save."""
    import time

    if os.environ.get(name):
        time.sleep(float(os.environ[name]))


MANIFEST = "manifest.json"


def write_manifest(folder: Path) -> None:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    manifest = {
        str(p.relative_to(folder)): {"size": p.stat().st_size, "sha256": file_sha256(p)}
        for p in files
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))


def verify(folder: str | Path, hashes: bool = True) -> str | None:
    """None when ``folder``'s manifest lists every file with its size (and hash); else why not."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        return "no manifest (an unfinished or pre-manifest save)"
    except (OSError, ValueError) as err:
        return f"unreadable manifest ({err})"
    for name, want in manifest.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != want["size"]:
            return f"{name} has {path.stat().st_size} bytes, the manifest says {want['size']}"
        if hashes and file_sha256(path) != want["sha256"]:
            return f"{name} does not match its SHA-256"
    return None


def load_checkpoint(path: str | Path, rank: int = 0) -> dict:
    """A checkpoint folder read back as the dict `FlowHFTrainer.load_state_dict` takes
    (``rank``: whose RNG streams and replay buffer)."""
    path = Path(path)
    own = path if rank == 0 else path / f"rank-{rank}"
    if not own.is_dir():
        raise CheckpointError(
            f"{path} has no state of process {rank}: it was saved by fewer processes",
            "resume with the number of processes the run was saved with",
        )
    counters = json.loads((path / "trainer_state.json").read_text())
    python_rng = counters.pop("python_rng")
    if (own / "python_rng.json").is_file():
        python_rng = json.loads((own / "python_rng.json").read_text())
    update = {
        "trainable": load_file(str(path / "trainable.safetensors")),
        "heads": load_file(str(path / "heads.safetensors")),
        "optimizer": torch.load(path / "optimizer.pt", weights_only=True),
    }
    rng = torch.load(own / "rng.pt", weights_only=True)
    rollout = {
        "replay": json.loads((own / "replay.json").read_text()),
        "python_rng": python_rng,
        "generator": rng["generator"],
    }
    run = {"counters": counters, "torch_rng": rng["torch"]}
    return {"run": run, "rollout": rollout, "update": update}


def _steps(root: Path) -> list[tuple[int, Path]]:
    if not root.is_dir():
        return []
    return sorted((int(m.group(1)), p) for p in root.iterdir() if (m := _STEP.match(p.name)))


def _prune(root: Path, keep: int) -> None:
    steps = _steps(root)
    newest_verified = next((p for _, p in reversed(steps) if verify(p, hashes=False) is None), None)
    for _, path in steps[:-keep] if keep > 0 else []:
        if path != newest_verified:  # never the last checkpoint a resume could use
            shutil.rmtree(path, ignore_errors=True)


def remove_leftovers(output_dir: str | Path) -> list[str]:
    """Delete the temporary folders killed saves left (the caller holds the run's lock)."""
    root = Path(output_dir) / CHECKPOINTS
    stale = (
        [p for p in root.glob(".tmp-*")] + [p for p in root.glob(".rank-*")]
        if root.is_dir()
        else []
    )
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return [p.name for p in stale]


Restore = Callable[[dict], None]  # puts a loaded state back (`FlowHFTrainer.load_state_dict`)


def resume_latest(site: RunCheckpoints, restore: Restore) -> Path | None:
    """Restore the newest checkpoint that verifies and loads (no-op with a note if there is
    none). Skipped checkpoints are named with the reason; if every one fails, CheckpointError."""
    if site.main:
        removed = remove_leftovers(site.output_dir)
        if removed:
            site.say(
                f"[flowhf] removed {len(removed)} unfinished checkpoint save(s): {', '.join(sorted(removed))}"
            )
    if not _steps(site.root):
        site.say(f"[flowhf] --resume: no checkpoint under {site.root}; starting from step 0")
        return None
    return _restore_newest(site, site.root, restore)


def resume_from_path(site: RunCheckpoints, path: Path, restore: Restore) -> Path:
    """``train(resume_from_checkpoint=PATH)``: PATH is a checkpoint folder (``.../checkpoints/step-N``)
    or a run folder, whose newest verified checkpoint is taken. Anything else is a CheckpointError."""
    if _steps(path / CHECKPOINTS):
        return _restore_newest(site, path / CHECKPOINTS, restore)
    if not (path / "trainer_state.json").is_file():
        raise CheckpointError(
            f"resume_from_checkpoint={str(path)!r} is neither a checkpoint folder (no "
            "trainer_state.json) nor a run folder with checkpoints/step-N folders",
            f"pass a folder such as {site.root / 'step-100'}, or True "
            "for the newest checkpoint of output_dir",
        )
    problem = verify(path)
    if problem is not None:
        raise CheckpointError(
            f"checkpoint {path} cannot be restored: {problem}", "pass another checkpoint folder"
        )
    _load_into(site, path, load_checkpoint(path, site.rank), restore)
    return path


def _restore_newest(site: RunCheckpoints, root: Path, restore: Restore) -> Path:
    skipped = []
    for _, path in reversed(_steps(root)):
        problem = verify(path)
        if problem is None:
            try:
                state = load_checkpoint(path, site.rank)
            except CheckpointError:
                raise
            except Exception as err:  # noqa: BLE001  (a damaged file of any kind: try the previous one)
                problem = f"{type(err).__name__}: {err}"
        if problem is not None:
            skipped.append(f"{path.name}: {problem}")
            site.say(f"[flowhf] skipping checkpoint {path}: {problem}")
            continue
        _load_into(site, path, state, restore)
        return path
    raise CheckpointError(
        f"no checkpoint under {root} can be restored (" + "; ".join(skipped) + ")"
    )


def _load_into(site: RunCheckpoints, path: Path, state: dict, restore: Restore) -> None:
    try:
        restore(state)
    except ValueError as err:
        raise CheckpointError(f"{path}: {err}") from err
    site.say(f"[flowhf] resumed from {path} (step {state['run']['counters']['step']})")


def write_config(site: RunCheckpoints, config: dict) -> None:
    """The run's config as ``config.yaml`` (what a resume compares against)."""
    if site.main:
        (Path(site.output_dir) / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
