"""Per-stage progress and the run's ETA of `flowhf reproduce`."""

import io

import pytest

from flowhf.experiments.reproduce.progress import RunClock, StageProgress, format_seconds


def test_format_seconds():
    assert (
        format_seconds(59.6) == "1:00"
        and format_seconds(3725) == "1:02:05"
        and format_seconds(-3) == "0:00"
    )


def test_eta_scales_remaining_estimates_by_the_overrun_so_far():
    clock = RunClock(["a", "b", "c"], {"a": 100, "b": 50, "c": 50})
    assert clock.remaining() == 200
    assert clock.remaining("a", current_elapsed=30) == pytest.approx(170)  # 70 left of a + b + c
    clock.finish("a", 200.0)  # a took twice its estimate: expect the rest to as well
    assert clock.remaining() == pytest.approx(200)
    assert clock.remaining("b", current_elapsed=80) == pytest.approx(
        100
    )  # b overran: only c (x2) left


def test_stage_progress_logs_a_line_without_a_tty():
    lines = []
    clock = RunClock(["sft"], {"sft": 10})
    with StageProgress("sft", 1, clock, log=lines.append, stream=io.StringIO()) as progress:
        assert progress.enabled is False  # no bar thread on a non-TTY stream
    assert lines == ["[reproduce] stage 1/1 sft: running (estimate 0:10, run ETA 0:10)"]


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_stage_bar_shows_the_loops_budget_and_silences_the_loops_own_bars():
    from flowhf.config.budget import (
        Budget,
        latest_progress,
        progress_is_shown,
        progress_of,
        publish_progress,
    )

    clock = RunClock(["ppo"], {"ppo": 300})
    with StageProgress("ppo", 1, clock, log=lambda _: None, stream=_Tty()) as progress:
        assert (
            progress_is_shown()
        )  # TRL's and FlowHF's own bars are off now (trainer_kwargs, run_training)
        progress.refresh()
        assert (
            progress._bar.unit == "s" and progress._bar.total == 300
        )  # nothing published yet: the estimate
        publish_progress(
            progress_of(Budget(completions=160), steps=5, completions=40, seconds=12.0)
        )
        progress.refresh()
        assert (progress._bar.n, progress._bar.total, progress._bar.unit) == (
            40,
            160,
            "completions",
        )
    assert not progress_is_shown() and latest_progress() is None
    assert progress_of(Budget(max_steps=16), 3, 0, 9.0).unit == "steps"
    assert progress_of(Budget(seconds=60), 3, 0, 9.4) == progress_of(
        Budget(seconds=60), 4, 0, 9.0
    )  # by seconds only
