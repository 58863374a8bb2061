"""One compute budget shared by every method, and the callback that enforces it on TRL trainers.

A head-to-head comparison is only fair when every method gets the same budget. `Budget` (in the
light `flowhf/config/budget.py`, so presets and configs check it without importing transformers) holds
up to four limits (wall-clock seconds of the training loop, completion tokens generated,
completions scored, optimizer steps); training stops at the first one reached. The limits are checked after each
optimizer step, so a run can overshoot a seconds / tokens limit by at most one step; the record
says exactly what was used.

Generated tokens are counted by a `TokenCounter` that the runners attach to the reward path
(every completion is scored exactly once, so counting there is exact): GRPO through the reward
function wrapper, PPO through the reward-model wrapper. A completion's tokens include its EOS
when it has one, the same convention as FlowHF's trajectories. SFT generates nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from flowhf.config.budget import (
    Budget,  # noqa: F401  (re-exported: flowhf.experiments.baselines.Budget)
    progress_of,
    publish_progress,
)
from flowhf.io import atomic_write_text


class BudgetExhausted(RuntimeError):
    """Raised by `BudgetCallback(raise_on_stop=True)` for trainers whose loop ignores
    ``control.should_training_stop`` (TRL's PPOTrainer); the runner catches it."""


class TokenCounter:
    """Running total of generated completion tokens (shared by a reward wrapper and the callback)."""

    def __init__(self) -> None:
        self.total = 0
        self.completions = 0

    def add(self, lengths: list[int] | tuple[int, ...]) -> None:
        """Count one batch of completions, given their lengths in tokens."""
        lengths = [int(n) for n in lengths]
        if any(n < 0 for n in lengths):
            raise ValueError(f"completion lengths must be >= 0, got {lengths}")
        self.total += sum(lengths)
        self.completions += len(lengths)


class BudgetCallback(TrainerCallback):
    """Stops training when the budget is used up and records what was used.

    ``record_path`` (JSON) is rewritten at every step and at the end: budget, elapsed seconds,
    steps, generated tokens and ``stopped_by`` (``seconds`` / ``generated_tokens`` /
    ``completions`` / ``max_steps``, or ``completed`` when the data or the trainer's own schedule ran out first).
    ``clock`` is injectable so tests can advance time deterministically.
    """

    def __init__(
        self,
        budget: Budget,
        counter: TokenCounter | None = None,
        record_path: str | Path | None = None,
        raise_on_stop: bool = False,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.budget = budget
        self.counter = counter if counter is not None else TokenCounter()
        self.record_path = Path(record_path) if record_path is not None else None
        self.raise_on_stop = raise_on_stop
        self.clock = clock
        self.start: float | None = None
        self.elapsed = 0.0
        self.steps = 0
        self.stopped_by: str | None = None

    # -- bookkeeping -------------------------------------------------------------------------

    def exhausted(self) -> str | None:
        """Name of the first limit reached, or None."""
        b = self.budget
        if b.max_steps is not None and self.steps >= b.max_steps:
            return "max_steps"
        if b.seconds is not None and self.elapsed >= b.seconds:
            return "seconds"
        if b.generated_tokens is not None and self.counter.total >= b.generated_tokens:
            return "generated_tokens"
        if b.completions is not None and self.counter.completions >= b.completions:
            return "completions"
        return None

    def record(self) -> dict[str, Any]:
        return {
            "budget": self.budget.to_dict(),
            "elapsed_seconds": round(self.elapsed, 4),
            "steps": self.steps,
            "tokens_generated": self.counter.total,
            "completions_generated": self.counter.completions,
            "stopped_by": self.stopped_by or "completed",
        }

    def elapsed_now(self) -> float:
        """Seconds since training began (0 before it began)."""
        return 0.0 if self.start is None else self.clock() - self.start

    def _update(self, state: TrainerState) -> None:
        if self.start is None:  # a trainer that skipped on_train_begin
            self.start = self.clock()
        self.elapsed = self.clock() - self.start
        self.steps = int(state.global_step)

    def _agreed(self, reason: str | None) -> str | None:
        """With several processes, all stop at the same step: the limit any process hit (when
        several processes hit different limits, the later one in ``codes`` is reported)."""
        from flowhf.distributed import all_max

        codes = ("max_steps", "seconds", "generated_tokens", "completions")
        code = all_max(codes.index(reason) + 1 if reason else 0)
        return codes[code - 1] if code else None

    def _write(self) -> None:
        if self.record_path is not None:
            self.record_path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(
                self.record_path, json.dumps(self.record(), indent=2) + "\n"
            )  # rewritten every step

    # -- callback events ---------------------------------------------------------------------

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs
    ):
        if self.start is None:
            self.start = self.clock()

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs
    ):
        self._update(state)
        publish_progress(
            progress_of(self.budget, self.steps, self.counter.completions, self.elapsed)
        )
        reason = self._agreed(self.exhausted())
        if reason is not None:
            self.stopped_by = reason
            control.should_training_stop = True
        self._write()
        if reason is not None and self.raise_on_stop:
            raise BudgetExhausted(f"budget exhausted ({reason}) after {self.steps} steps")
        return control

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs
    ):
        self._update(state)
        self._write()
