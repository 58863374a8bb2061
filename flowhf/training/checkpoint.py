"""Checkpoints that resume exactly: weights, optimiser, scheduler, RNGs, replay, data position.

Layout of ``<output_dir>/checkpoints/step-N/``:
    trainable.safetensors   trainable policy parameters (LoRA adapters, or all weights)
    heads.safetensors       flow / log Z heads
    optimizer.pt            optimiser + scheduler state (loaded with weights_only=True)
    rng.pt                  torch global + sampling generator states (weights_only=True)
    trainer_state.json      step, data cursor, epoch, skip counters, python RNG state
    replay.json             replay buffer
Written to a temporary folder and renamed, so a killed save never leaves a half checkpoint.
What goes in is `FlowHFTrainer.state_dict()`; this module only owns the file layout.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file, save_file

from flowhf.models.cache import atomic_folder

CHECKPOINTS = "checkpoints"
_STEP = re.compile(r"^step-(\d+)$")


def save_checkpoint(trainer) -> Path | None:
    """Write ``trainer.state_dict()`` as ``checkpoints/step-N`` (rank 0 only), keeping the newest ones."""
    if not trainer.accelerator.is_main_process:
        return None
    root = Path(trainer.output_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{trainer.state['step']}"
    state = trainer.state_dict()
    with atomic_folder(final) as tmp:
        save_file(state["trainable"], str(tmp / "trainable.safetensors"))
        save_file(state["heads"], str(tmp / "heads.safetensors"))
        torch.save(state["optimizer"], tmp / "optimizer.pt")
        torch.save(state["rng"], tmp / "rng.pt")
        (tmp / "trainer_state.json").write_text(json.dumps(state["trainer_state"]))
        (tmp / "replay.json").write_text(json.dumps(state["replay"]))
    _prune(root, trainer.args.logging.save_total_limit)
    return final


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint folder read back as the dict `FlowHFTrainer.load_state_dict` takes."""
    path = Path(path)
    return {
        "trainable": load_file(str(path / "trainable.safetensors")),
        "heads": load_file(str(path / "heads.safetensors")),
        "optimizer": torch.load(path / "optimizer.pt", weights_only=True),
        "rng": torch.load(path / "rng.pt", weights_only=True),
        "trainer_state": json.loads((path / "trainer_state.json").read_text()),
        "replay": json.loads((path / "replay.json").read_text()),
    }


def _prune(root: Path, keep: int) -> None:
    steps = sorted((int(m.group(1)), p) for p in root.iterdir() if (m := _STEP.match(p.name)))
    for _, path in steps[:-keep] if keep > 0 else []:
        shutil.rmtree(path, ignore_errors=True)


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    root = Path(output_dir) / CHECKPOINTS
    if not root.is_dir():
        return None
    steps = sorted((int(m.group(1)), p) for p in root.iterdir() if (m := _STEP.match(p.name)))
    return steps[-1][1] if steps else None


def resume_latest(trainer) -> Path | None:
    """Restore the newest checkpoint of the run directory (no-op with a note if there is none)."""
    path = latest_checkpoint(trainer.output_dir)
    if path is None:
        print(f"[flowhf] --resume: no checkpoint under {trainer.output_dir}/{CHECKPOINTS}; starting from step 0")
        return None
    try:
        trainer.load_state_dict(load_checkpoint(path))
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err
    print(f"[flowhf] resumed from {path} (step {trainer.state['step']})")
    return path


def write_config(trainer) -> None:
    if trainer.accelerator.is_main_process:
        (Path(trainer.output_dir) / "config.yaml").write_text(yaml.safe_dump(trainer.args.to_dict(), sort_keys=False))
