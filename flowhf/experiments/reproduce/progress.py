"""Per-stage progress bars and a whole-run ETA for `flowhf reproduce`.

A stage's bar shows what the loop inside it publishes (`flowhf.config.budget.publish_progress`):
completions scored (or steps) against the stage's budget for a training stage, models done in the
evaluation; the loops' own bars (TRL's, FlowHF's) are silenced meanwhile, so there is one bar
per stage. Until a loop publishes (loading, saving, a stage without a loop) the bar runs over
the stage's ESTIMATED seconds (``Preset.stage_seconds``). A background thread refreshes it once
a second. The ETA is the sum of the estimates of the stages still to run, corrected by how far
the finished stages over- or under-ran theirs. On a non-TTY (log files, CI) the bar is off
and one line per stage with the ETA is printed instead.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    minutes, sec = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{sec:02d}" if hours else f"{minutes}:{sec:02d}"


class RunClock:
    """ETA bookkeeping over ``stages`` with estimated seconds ``estimates`` (missing = 0)."""

    def __init__(self, stages: Sequence[str], estimates: Mapping[str, float]) -> None:
        self.stages = list(stages)
        self.estimates = {s: float(estimates.get(s, 0.0)) for s in self.stages}
        self.actual: dict[str, float] = {}

    def finish(self, stage: str, seconds: float) -> None:
        self.actual[stage] = seconds

    def remaining(self, current: str | None = None, current_elapsed: float = 0.0) -> float:
        """Estimated seconds left: unfinished stages' estimates x the overrun ratio so far."""
        done_est = sum(self.estimates[s] for s in self.actual)
        ratio = (sum(self.actual.values()) / done_est) if done_est > 0 else 1.0
        left = sum(self.estimates[s] for s in self.stages if s not in self.actual and s != current)
        if current is not None:
            left += max(0.0, self.estimates[current] - current_elapsed)
        return left * ratio


class StageProgress:
    """Context manager: a seconds bar for one stage, with the run's ETA in its postfix."""

    def __init__(
        self,
        stage: str,
        index: int,
        clock: RunClock,
        log: Callable[[str], None] = print,
        stream=None,
    ) -> None:
        self.stage, self.index, self.clock, self.log = stage, index, clock, log
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bar = None
        self.started = 0.0

    def __enter__(self) -> StageProgress:
        self.started = time.perf_counter()
        total = len(self.clock.stages)
        eta = format_seconds(self.clock.remaining(self.stage))
        self.log(
            f"[reproduce] stage {self.index}/{total} {self.stage}: running "
            f"(estimate {format_seconds(self.clock.estimates[self.stage])}, run ETA {eta})"
        )
        if self.enabled:
            from tqdm import tqdm

            from flowhf.config.budget import listen_to_progress

            listen_to_progress(True)

            self._bar = tqdm(
                total=max(1, int(self.clock.estimates[self.stage])),
                desc=f"{self.index}/{total} {self.stage}",
                unit="s",
                file=self.stream,
                dynamic_ncols=True,
                leave=False,
            )
            self._thread = threading.Thread(target=self._tick, daemon=True)
            self._thread.start()
        return self

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            self.refresh()

    def refresh(self) -> None:
        """Show the loop's published progress, else the seconds against the stage's estimate."""
        from flowhf.config.budget import latest_progress

        elapsed = time.perf_counter() - self.started
        progress = latest_progress()
        if progress is not None:
            self._bar.total, self._bar.unit = max(1, int(progress.total)), progress.unit
            self._bar.n = min(int(progress.done), self._bar.total)
        else:
            self._bar.n = min(int(elapsed), self._bar.total)
        self._bar.set_postfix_str(
            f"run ETA {format_seconds(self.clock.remaining(self.stage, elapsed))}"
        )

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._bar is not None:
            from flowhf.config.budget import listen_to_progress

            listen_to_progress(False)
            self._bar.close()
