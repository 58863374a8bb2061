"""The training loop of `FlowHFTrainer.train`: resume, steps, logging, checkpoints, callbacks.

Each step: on_step_begin -> `trainer.training_step()` -> counters -> on_step_end; every
logging_steps the metrics go to the sinks, to ``state.log_history`` and to on_log; every
save_steps a checkpoint, then on_save. A callback's ``control.should_training_stop`` ends the
loop after that step (the final checkpoint and model are still saved), ``should_save`` saves
a checkpoint now. The trainer owns what a step is; this module owns when things happen.
"""

from __future__ import annotations

from pathlib import Path

from flowhf.config.budget import Progress, progress_is_shown, publish_progress
from flowhf.training import checkpoint
from flowhf.training.log_files import cut_logs_back
from flowhf.training.logging import MetricsLogger, ProgressBar
from flowhf.training.nonfinite import NonFiniteStep


def _progress(opt, state) -> Progress:
    """Against the run's binding count: completions scored when budgeted so, else steps."""
    if opt.max_completions is not None:
        return Progress(state.completions_scored, opt.max_completions, "completions")
    return Progress(state.global_step, state.max_steps, "steps")


def run_training(trainer, resume_from: str | Path | None) -> dict:
    """Train until the step budget, max_seconds, max_completions or a callback's stop; returns the last metrics.
    ``resume_from``: None (start), "latest" (the output folder's newest checkpoint) or a path."""
    cfg, state = trainer.args, trainer.state
    trainer.output_dir.mkdir(parents=True, exist_ok=True)
    main = trainer.accelerator.is_main_process  # one process writes logs and the model
    if resume_from is not None:
        _resume(trainer, resume_from, main)
    checkpoint.write_config(trainer.checkpoints, cfg.to_dict())
    logger = _logger(trainer, resume_from is not None) if main else None
    bar = ProgressBar(
        state.max_steps,
        initial=state.global_step,
        disable=not (cfg.logging.progress_bar and main) or progress_is_shown(),
    )
    control = trainer.callbacks.fire("on_train_begin", trainer)
    last, saved_at = {}, None
    try:
        while (
            state.global_step < state.max_steps
            and not control.should_training_stop
            and not _out_of_budget(trainer)
        ):
            trainer.callbacks.fire("on_step_begin", trainer)
            last = trainer.training_step()
            state.global_step += 1
            state.train_seconds += last["train/step_time"]
            last["train/elapsed_seconds"] = (
                state.train_seconds
            )  # budget clock, as the baselines log
            last["train/completions_scored"] = state.completions_scored
            control = trainer.callbacks.fire("on_step_end", trainer)
            _log(trainer, logger, last)
            bar.update(state.global_step, last)
            publish_progress(_progress(cfg.optim, state))
            if (
                cfg.logging.save_steps and state.global_step % cfg.logging.save_steps == 0
            ) or control.should_save:
                saved_at = _save(trainer)
    finally:
        bar.close()
        if logger:
            logger.close()
    if state.global_step > 0 and state.skipped_total >= state.global_step:
        raise NonFiniteStep(
            f"no update was applied: all {state.global_step} steps were skipped for non-finite values "
            f"(see {trainer.output_dir / 'skipped_steps.jsonl'})",
            "fix the quantity named there",
        )
    if saved_at != state.global_step:
        _save(trainer)  # (unless the loop's last step just saved it)
    trainer.accelerator.wait_for_everyone()
    if main:
        trainer.save_model(trainer.output_dir)
    trainer.callbacks.fire("on_train_end", trainer)
    return last


def _logger(trainer, resumed: bool) -> MetricsLogger:
    """The metric sinks; a resumed run's drop what was logged after its checkpoint."""
    log = trainer.args.logging
    return MetricsLogger(
        trainer.output_dir,
        report_to=log.report_to or ["jsonl", "csv"],
        histogram_every=log.histogram_every,
        purge_step=trainer.state.global_step + 1 if resumed else None,
    )


def _resume(trainer, resume_from: str | Path, main: bool) -> None:
    if resume_from == "latest":
        checkpoint.resume_latest(trainer.checkpoints, trainer.load_state_dict)
    else:
        checkpoint.resume_from_path(trainer.checkpoints, Path(resume_from), trainer.load_state_dict)
    if main:  # rows logged after the checkpoint are logged again: drop them first
        dropped = cut_logs_back(trainer.output_dir, trainer.state.global_step)
        if dropped:
            print(f"[flowhf] logs cut back to step {trainer.state.global_step}: {dropped}")


def _log(trainer, logger: MetricsLogger | None, metrics: dict) -> None:
    """Every logging_steps (and at the last step): the sinks, state.log_history, on_log."""
    state, every = trainer.state, trainer.args.logging.logging_steps
    if logger:
        logger.log_histograms(state.global_step, trainer.last_histograms)
    if state.global_step % every and state.global_step != state.max_steps:
        return
    if logger:
        logger.log(state.global_step, metrics)
    logs = {**metrics, "epoch": state.epoch}
    state.log_history.append({**logs, "step": state.global_step})
    trainer.callbacks.fire("on_log", trainer, logs=logs)


def _save(trainer) -> int:
    """A checkpoint now (every process), then on_save; returns the step saved."""
    checkpoint.save_checkpoint(trainer.checkpoints, trainer.state.global_step, trainer.state_dict())
    trainer.callbacks.control.should_save = False
    trainer.callbacks.fire("on_save", trainer)
    return trainer.state.global_step


def _out_of_budget(trainer) -> bool:
    """max_seconds or max_completions reached; with several processes, all stop together (the
    slowest decides the seconds; the completions count is the same on every process)."""
    from flowhf.distributed import all_max

    opt, state = trainer.args.optim, trainer.state
    if opt.max_completions is not None and state.completions_scored >= opt.max_completions:
        return True
    return opt.max_seconds is not None and all_max(int(state.train_seconds >= opt.max_seconds)) > 0
