"""A trainer's exact state: its counters (`RunState`), what `FlowHFTrainer.state_dict()` holds
and how it is put back.

Trainable weights, heads, optimiser + schedule, RNG streams (torch, the sampling generator,
the Python RNG inside the counters), step counters with the data cursor, the log history and
the replay buffer. `flowhf.training.checkpoint` owns the file layout these go to.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import TrainerState


@dataclass
class RunState(TrainerState):
    """`trainer.state`: transformers' TrainerState, so TRL-style reward functions
    (``trainer_state=``) and TrainerCallbacks read ``global_step``, ``epoch``, ``max_steps``
    and ``log_history`` as under TRL, plus the counters an exact resume needs.

    ``epoch`` is fractional progress through the prompts (as in transformers); ``data_epoch``
    counts completed passes and seeds each pass's shuffle.
    """

    data_cursor: int = 0
    data_epoch: int = 0
    skipped_in_a_row: int = 0
    skipped_total: int = 0
    train_seconds: float = 0.0
    completions_scored: int = 0  # reward calls, all processes together (optim.max_completions)

    def counters(self) -> dict:
        """The JSON a checkpoint keeps (trainer_state.json; the keys of earlier checkpoints)."""
        return {
            "step": self.global_step,
            "data_cursor": self.data_cursor,
            "epoch": self.data_epoch,
            "skipped_in_a_row": self.skipped_in_a_row,
            "skipped_total": self.skipped_total,
            "train_seconds": self.train_seconds,
            "completions_scored": self.completions_scored,
            "log_history": list(self.log_history),
        }

    def load_counters(self, counters: dict, rows: int) -> None:
        """Put `counters` back (a checkpoint from before the log history starts it empty)."""
        self.global_step, self.data_cursor, self.data_epoch = (
            counters["step"],
            counters["data_cursor"],
            counters["epoch"],
        )
        self.skipped_in_a_row, self.skipped_total = (
            counters["skipped_in_a_row"],
            counters["skipped_total"],
        )
        self.train_seconds = counters["train_seconds"]
        self.completions_scored = counters.get(
            "completions_scored", 0
        )  # absent in older checkpoints
        self.log_history = list(counters.get("log_history", []))
        self.set_epoch(rows)

    def set_epoch(self, rows: int) -> None:
        """``epoch`` from the data position: passes done plus the share of this one."""
        self.epoch = self.data_epoch + self.data_cursor / max(rows, 1)


def trainable_parameters(trainer) -> dict[str, torch.nn.Parameter]:
    model = trainer.accelerator.unwrap_model(trainer.model)
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def trainer_state(trainer) -> dict:
    """Everything an exact resume needs, as CPU tensors and plain values."""
    version, internal, gauss = trainer.rng.getstate()
    return {
        "trainable": {
            n: p.detach().cpu().contiguous() for n, p in trainable_parameters(trainer).items()
        },
        "heads": {
            f"{name}.{k}": v.detach().cpu().contiguous()
            for name, head in trainer.heads.items()
            for k, v in trainer.accelerator.unwrap_model(head).state_dict().items()
        },
        "optimizer": {
            "optimizer": trainer.optimizer.state_dict(),
            "scheduler": trainer.scheduler.state_dict(),
        },
        "rng": {"torch": torch.get_rng_state(), "generator": trainer.generator.get_state()},
        "trainer_state": dict(
            trainer.state.counters(), python_rng=[version, list(internal), gauss]
        ),
        "replay": trainer.replay.state_dict(),
    }


def restore_trainer_state(trainer, state: dict) -> None:
    """Put back a `trainer_state` taken from a trainer with the same model and settings."""
    params = trainable_parameters(trainer)
    mismatch = set(params) ^ set(state["trainable"])
    if mismatch:
        raise ValueError(
            f"checkpoint parameters do not match the model ({sorted(mismatch)[:5]} ...); "
            "resume with the same model and LoRA settings"
        )
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(state["trainable"][name].to(p.device, p.dtype))
    for name, head in trainer.heads.items():
        trainer.accelerator.unwrap_model(head).load_state_dict(
            {k.split(".", 1)[1]: v for k, v in state["heads"].items() if k.split(".", 1)[0] == name}
        )
    trainer.optimizer.load_state_dict(state["optimizer"]["optimizer"])
    trainer.scheduler.load_state_dict(state["optimizer"]["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    trainer.generator.set_state(state["rng"]["generator"])
    counters = dict(state["trainer_state"])
    version, internal, gauss = counters.pop("python_rng")
    trainer.rng.setstate((version, tuple(internal), gauss))
    trainer.state.load_counters(counters, len(trainer.rows))
    trainer.replay.load_state_dict(state["replay"])
