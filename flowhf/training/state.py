"""A run's counters (`RunState`): the part of `FlowHFTrainer.state_dict()` that is the run's
own rather than one of its parts'.

The parts keep the rest: the rollout its replay buffer and exploration streams
(`flowhf.training.rollout`), the update the weights, heads, optimiser and schedule
(`flowhf.training.update`). `flowhf.training.checkpoint` owns the file layout these go to.
"""

from __future__ import annotations

from dataclasses import dataclass

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
