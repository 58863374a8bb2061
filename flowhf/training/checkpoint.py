"""Checkpoints that resume exactly: weights, optimiser, scheduler, RNGs, replay, data position.

Layout of ``<output_dir>/checkpoints/step-N/``:
    trainable.safetensors   trainable policy parameters (LoRA adapters, or all weights)
    heads.safetensors       flow / log Z heads
    optimizer.pt            optimiser + scheduler state (loaded with weights_only=True)
    rng.pt                  torch global + sampling generator states (weights_only=True)
    trainer_state.json      step, data cursor, epoch, skip counters, python RNG state
    replay.json             replay buffer
Written to a temporary folder and renamed, so a killed save never leaves a half checkpoint.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file, save_file

CHECKPOINTS = "checkpoints"
_STEP = re.compile(r"^step-(\d+)$")


def _trainable(trainer) -> dict[str, torch.nn.Parameter]:
    model = trainer.accelerator.unwrap_model(trainer.model)
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def _python_state(rng) -> list:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def save_checkpoint(trainer) -> Path | None:
    if not trainer.accelerator.is_main_process:
        return None
    root = Path(trainer.output_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{trainer.state['step']}"
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-step-", dir=root))
    save_file({n: p.detach().cpu().contiguous() for n, p in _trainable(trainer).items()}, str(tmp / "trainable.safetensors"))
    heads = {
        f"{name}.{k}": v.detach().cpu().contiguous()
        for name, head in trainer.heads.items()
        for k, v in trainer.accelerator.unwrap_model(head).state_dict().items()
    }
    save_file(heads, str(tmp / "heads.safetensors"))
    torch.save({"optimizer": trainer.optimizer.state_dict(), "scheduler": trainer.scheduler.state_dict()}, tmp / "optimizer.pt")
    torch.save({"torch": torch.get_rng_state(), "generator": trainer.generator.get_state()}, tmp / "rng.pt")
    state = dict(trainer.state, python_rng=_python_state(trainer.rng))
    (tmp / "trainer_state.json").write_text(json.dumps(state))
    (tmp / "replay.json").write_text(json.dumps(trainer.replay.state_dict()))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _prune(root, trainer.args.logging.save_total_limit)
    return final


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
    params = _trainable(trainer)
    saved = load_file(str(path / "trainable.safetensors"))
    missing = set(params) ^ set(saved)
    if missing:
        raise ValueError(f"{path}: checkpoint parameters do not match the model ({sorted(missing)[:5]} ...); "
                         "resume with the same model and LoRA settings")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(saved[name].to(p.device, p.dtype))
    heads = load_file(str(path / "heads.safetensors"))
    for name, head in trainer.heads.items():
        module = trainer.accelerator.unwrap_model(head)
        module.load_state_dict({k.split(".", 1)[1]: v for k, v in heads.items() if k.split(".", 1)[0] == name})
    opt = torch.load(path / "optimizer.pt", weights_only=True)
    trainer.optimizer.load_state_dict(opt["optimizer"])
    trainer.scheduler.load_state_dict(opt["scheduler"])
    rng = torch.load(path / "rng.pt", weights_only=True)
    torch.set_rng_state(rng["torch"])
    trainer.generator.set_state(rng["generator"])
    state = json.loads((path / "trainer_state.json").read_text())
    version, internal, gauss = state.pop("python_rng")
    trainer.rng.setstate((version, tuple(internal), gauss))
    trainer.state.update(state)
    trainer.replay.load_state_dict(json.loads((path / "replay.json").read_text()))
    print(f"[flowhf] resumed from {path} (step {trainer.state['step']})")
    return path


def write_config(trainer) -> None:
    if trainer.accelerator.is_main_process:
        (Path(trainer.output_dir) / "config.yaml").write_text(yaml.safe_dump(trainer.args.to_dict(), sort_keys=False))
