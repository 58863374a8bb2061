"""`Budget`: the compute budget every compared method gets (seconds, generated tokens, scored
completions, steps).

Its own light module (no torch / transformers) so that `flowhf reproduce` presets can check a
budget key by key (`flowhf.config.fields.build_dataclass`: file, line, value, allowed range) before
anything loads; the TRL callback that enforces it is `flowhf.experiments.baselines.budget.BudgetCallback`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from flowhf.config.fields import POSITIVE, help_field as _f

KEYS = ("seconds", "generated_tokens", "completions", "max_steps")


@dataclass
class Budget:
    """Compute budget of one training run; at least one limit must be set."""

    seconds: float | None = _f(
        None,
        "Wall-clock seconds of the training loop (setup and saving excluded).",
        allowed=POSITIVE,
    )
    generated_tokens: int | None = _f(
        None, "Completion tokens sampled by the trainer (EOS included).", allowed=POSITIVE
    )
    completions: int | None = _f(
        None,
        "Completions scored by the reward (reward calls): the machine-independent budget, so a rerun "
        "elsewhere trains the same steps.",
        allowed=POSITIVE,
    )
    max_steps: int | None = _f(
        None, "Optimizer steps (one TRL global step each).", allowed=POSITIVE
    )

    def __post_init__(self) -> None:
        for name in KEYS:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"Budget.{name} must be a positive number or None, got {value!r}")
            if name != "seconds" and int(value) != value:
                raise ValueError(f"Budget.{name} must be a whole number, got {value!r}")
        for name in ("generated_tokens", "completions"):
            if getattr(self, name) is not None:
                setattr(self, name, int(getattr(self, name)))
        if self.max_steps is not None:
            self.max_steps = int(self.max_steps)
        if all(getattr(self, name) is None for name in KEYS):
            raise ValueError(
                "Budget needs at least one limit: set seconds, generated_tokens, completions or max_steps "
                "(e.g. Budget(max_steps=200)); an unlimited run never ends"
            )

    @classmethod
    def coerce(cls, value: Budget | Mapping[str, Any] | None) -> Budget:
        """A Budget from a Budget or a dict (YAML configs); unknown keys are an error."""
        if isinstance(value, Budget):
            return value
        if value is None:
            raise ValueError("a budget is required, e.g. budget={'max_steps': 200}")
        if not isinstance(value, Mapping):
            raise TypeError(f"budget must be a Budget or a dict, got {type(value).__name__}")
        unknown = sorted(set(value) - set(KEYS))
        if unknown:
            raise ValueError(f"unknown budget key(s) {unknown}; use {', '.join(KEYS)}")
        return cls(**dict(value))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Progress:
    """How far the budgeted loop running in this process is: ``done`` of ``total`` ``unit``."""

    done: float
    total: float
    unit: str


# The loop publishes, a stage bar of `flowhf reproduce` reads (one loop per process at a time).
# A listener also silences the loops' own bars, so each stage shows one bar against its budget.
_LATEST: dict[str, Any] = {"progress": None, "listening": False}


def progress_of(budget: Budget, steps: int, completions: int, seconds: float) -> Progress:
    """Progress against the budget's count limit (completions, else steps), else its seconds."""
    if budget.completions is not None:
        return Progress(completions, budget.completions, "completions")
    if budget.max_steps is not None:
        return Progress(steps, budget.max_steps, "steps")
    return Progress(round(seconds), budget.seconds or 0, "s")


def publish_progress(progress: Progress) -> None:
    _LATEST["progress"] = progress


def latest_progress() -> Progress | None:
    return _LATEST["progress"]


def listen_to_progress(on: bool) -> None:
    """A stage bar starts (True: the loops' own bars are silenced) or ends (False); clears the last progress."""
    _LATEST.update(progress=None, listening=bool(on))


def progress_is_shown() -> bool:
    """Whether a stage bar shows the loop's progress (then the loop draws no bar of its own)."""
    return bool(_LATEST["listening"])
