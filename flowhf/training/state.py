"""A trainer's exact state: what `FlowHFTrainer.state_dict()` holds and how it is put back.

Trainable weights, heads, optimiser + schedule, RNG streams (torch, the sampling generator,
the Python RNG inside the counters), step counters with the data cursor, and the replay
buffer. `flowhf.training.checkpoint` owns the file layout these go to.
"""

from __future__ import annotations

import torch


def trainable_parameters(trainer) -> dict[str, torch.nn.Parameter]:
    model = trainer.accelerator.unwrap_model(trainer.model)
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def trainer_state(trainer) -> dict:
    """Everything an exact resume needs, as CPU tensors and plain values."""
    version, internal, gauss = trainer.rng.getstate()
    return {
        "trainable": {n: p.detach().cpu().contiguous() for n, p in trainable_parameters(trainer).items()},
        "heads": {f"{name}.{k}": v.detach().cpu().contiguous() for name, head in trainer.heads.items()
                  for k, v in trainer.accelerator.unwrap_model(head).state_dict().items()},
        "optimizer": {"optimizer": trainer.optimizer.state_dict(), "scheduler": trainer.scheduler.state_dict()},
        "rng": {"torch": torch.get_rng_state(), "generator": trainer.generator.get_state()},
        "trainer_state": dict(trainer.state, python_rng=[version, list(internal), gauss]),
        "replay": trainer.replay.state_dict(),
    }


def restore_trainer_state(trainer, state: dict) -> None:
    """Put back a `trainer_state` taken from a trainer with the same model and settings."""
    params = trainable_parameters(trainer)
    mismatch = set(params) ^ set(state["trainable"])
    if mismatch:
        raise ValueError(f"checkpoint parameters do not match the model ({sorted(mismatch)[:5]} ...); "
                         "resume with the same model and LoRA settings")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(state["trainable"][name].to(p.device, p.dtype))
    for name, head in trainer.heads.items():
        trainer.accelerator.unwrap_model(head).load_state_dict(
            {k.split(".", 1)[1]: v for k, v in state["heads"].items() if k.split(".", 1)[0] == name})
    trainer.optimizer.load_state_dict(state["optimizer"]["optimizer"])
    trainer.scheduler.load_state_dict(state["optimizer"]["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    trainer.generator.set_state(state["rng"]["generator"])
    counters = dict(state["trainer_state"])
    version, internal, gauss = counters.pop("python_rng")
    trainer.rng.setstate((version, tuple(internal), gauss))
    trainer.state.update(counters)
    trainer.replay.load_state_dict(state["replay"])
