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
keeps the newest verified one. What goes in is `FlowHFTrainer.state_dict()`; this module
only owns the file layout.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file, save_file

from flowhf.errors import CheckpointError
from flowhf.io import atomic_folder
from flowhf.models.cache import file_sha256

CHECKPOINTS = "checkpoints"
_STEP = re.compile(r"^step-(\d+)$")


def save_checkpoint(trainer) -> Path | None:
    """Write ``trainer.state_dict()`` as ``checkpoints/step-N`` (every process its own part,
    rank 0 the folder), keeping the newest ones. Every process must call it."""
    root = Path(trainer.output_dir) / CHECKPOINTS
    final = root / f"step-{trainer.state.global_step}"
    state = trainer.state_dict()
    rank, main = trainer.accelerator.process_index, trainer.accelerator.is_main_process
    if trainer.accelerator.num_processes > 1:  # each rank's own streams and replay, beside rank 0's
        if not main:
            root.mkdir(parents=True, exist_ok=True)
            with atomic_folder(root / f".rank-{rank}-step-{trainer.state.global_step}") as tmp:
                _write_rank_state(tmp, state)
        trainer.accelerator.wait_for_everyone()
    try:
        return _save_main(trainer, root, final, state) if main else None
    finally:
        if (
            trainer.accelerator.num_processes > 1
        ):  # no process starts its next save before this one is complete
            trainer.accelerator.wait_for_everyone()


def _save_main(trainer, root: Path, final: Path, state: dict) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with atomic_folder(final) as tmp:
        save_file(state["trainable"], str(tmp / "trainable.safetensors"))
        save_file(state["heads"], str(tmp / "heads.safetensors"))
        torch.save(state["optimizer"], tmp / "optimizer.pt")
        _write_rank_state(tmp, state)
        (tmp / "trainer_state.json").write_text(json.dumps(state["trainer_state"]))
        for r in range(1, trainer.accelerator.num_processes):
            os.replace(root / f".rank-{r}-step-{trainer.state.global_step}", tmp / f"rank-{r}")
        _hook("FLOWHF_TEST_STALL_SAVE")
        write_manifest(tmp)  # last: a checkpoint without a verifying manifest is never trusted
    _prune(root, trainer.args.logging.save_total_limit)
    return final


def _write_rank_state(folder: Path, state: dict) -> None:
    torch.save(state["rng"], folder / "rng.pt")
    (folder / "replay.json").write_text(json.dumps(state["replay"]))
    (folder / "python_rng.json").write_text(json.dumps(state["trainer_state"]["python_rng"]))


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
    trainer_state = json.loads((path / "trainer_state.json").read_text())
    if (own / "python_rng.json").is_file():
        trainer_state["python_rng"] = json.loads((own / "python_rng.json").read_text())
    return {
        "trainable": load_file(str(path / "trainable.safetensors")),
        "heads": load_file(str(path / "heads.safetensors")),
        "optimizer": torch.load(path / "optimizer.pt", weights_only=True),
        "rng": torch.load(own / "rng.pt", weights_only=True),
        "trainer_state": trainer_state,
        "replay": json.loads((own / "replay.json").read_text()),
    }


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


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    steps = _steps(Path(output_dir) / CHECKPOINTS)
    return steps[-1][1] if steps else None


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


def resume_latest(trainer) -> Path | None:
    """Restore the newest checkpoint that verifies and loads (no-op with a note if there is
    none). Skipped checkpoints are named with the reason; if every one fails, CheckpointError."""
    main = trainer.accelerator.is_main_process
    say = print if main else (lambda *_: None)
    if main:
        removed = remove_leftovers(trainer.output_dir)
        if removed:
            say(
                f"[flowhf] removed {len(removed)} unfinished checkpoint save(s): {', '.join(sorted(removed))}"
            )
    root = Path(trainer.output_dir) / CHECKPOINTS
    if not _steps(root):
        say(f"[flowhf] --resume: no checkpoint under {root}; starting from step 0")
        return None
    return _restore_newest(trainer, root, say)


def resume_from_path(trainer, path: Path) -> Path:
    """``train(resume_from_checkpoint=PATH)``: PATH is a checkpoint folder (``.../checkpoints/step-N``)
    or a run folder, whose newest verified checkpoint is taken. Anything else is a CheckpointError."""
    main = trainer.accelerator.is_main_process
    say = print if main else (lambda *_: None)
    if _steps(path / CHECKPOINTS):
        return _restore_newest(trainer, path / CHECKPOINTS, say)
    if not (path / "trainer_state.json").is_file():
        raise CheckpointError(
            f"resume_from_checkpoint={str(path)!r} is neither a checkpoint folder (no "
            "trainer_state.json) nor a run folder with checkpoints/step-N folders",
            f"pass a folder such as {Path(trainer.output_dir) / CHECKPOINTS / 'step-100'}, or True "
            "for the newest checkpoint of output_dir",
        )
    problem = verify(path)
    if problem is not None:
        raise CheckpointError(
            f"checkpoint {path} cannot be restored: {problem}", "pass another checkpoint folder"
        )
    _load_into(trainer, path, load_checkpoint(path, trainer.accelerator.process_index))
    say(f"[flowhf] resumed from {path} (step {trainer.state.global_step})")
    return path


def _restore_newest(trainer, root: Path, say) -> Path:
    skipped = []
    for _, path in reversed(_steps(root)):
        problem = verify(path)
        if problem is None:
            try:
                state = load_checkpoint(path, trainer.accelerator.process_index)
            except CheckpointError:
                raise
            except Exception as err:  # noqa: BLE001  (a damaged file of any kind: try the previous one)
                problem = f"{type(err).__name__}: {err}"
        if problem is not None:
            skipped.append(f"{path.name}: {problem}")
            say(f"[flowhf] skipping checkpoint {path}: {problem}")
            continue
        _load_into(trainer, path, state)
        say(f"[flowhf] resumed from {path} (step {trainer.state.global_step})")
        return path
    raise CheckpointError(
        f"no checkpoint under {root} can be restored (" + "; ".join(skipped) + ")"
    )


def _load_into(trainer, path: Path, state: dict) -> None:
    try:
        trainer.load_state_dict(state)
    except ValueError as err:
        raise CheckpointError(f"{path}: {err}") from err


def write_config(trainer) -> None:
    if trainer.accelerator.is_main_process:
        (Path(trainer.output_dir) / "config.yaml").write_text(
            yaml.safe_dump(trainer.args.to_dict(), sort_keys=False)
        )
