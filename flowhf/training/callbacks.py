"""A user's `transformers.TrainerCallback`s, called where transformers' Trainer calls them.

FlowHFTrainer runs its own loop, so this is the small part of transformers' CallbackHandler it
needs: each hook gets ``(args, state, control, model=..., processing_class=..., optimizer=...,
lr_scheduler=..., **event_kwargs)`` with ``args`` the FlowHFConfig (it answers TRL's flat names,
e.g. ``args.output_dir``) and ``state`` the trainer's `RunState` (a TrainerState). Events:
on_train_begin, on_step_begin, on_step_end, on_log (``logs=``), on_save, on_train_end. Of the
`TrainerControl` flags, the loop honours ``should_training_stop`` and ``should_save``.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback, TrainerControl


class CallbackList:
    """The callbacks of one trainer, and the `TrainerControl` they share."""

    def __init__(self, callbacks: list | None = None) -> None:
        self.items: list[TrainerCallback] = []
        self.control = TrainerControl()
        for callback in callbacks or []:
            self.add(callback)

    def add(self, callback: Any) -> None:
        """Add a TrainerCallback (an instance, or a class to instantiate)."""
        instance = callback() if isinstance(callback, type) else callback
        if not isinstance(instance, TrainerCallback):
            raise TypeError(
                f"callbacks: {callback!r:.80} is not a transformers.TrainerCallback; subclass "
                "transformers.TrainerCallback and override the hooks you need (on_log, on_step_end, ...)"
            )
        self.items.append(instance)

    def fire(self, event: str, trainer: Any, **kwargs: Any) -> TrainerControl:
        """Call ``event`` on every callback; a callback that returns a control replaces it."""
        for callback in self.items:
            result = getattr(callback, event)(
                trainer.args,
                trainer.state,
                self.control,
                model=trainer.model,
                processing_class=trainer.tokenizer,
                optimizer=trainer.optimizer,
                lr_scheduler=trainer.scheduler,
                train_dataloader=None,
                eval_dataloader=None,
                **kwargs,
            )
            if result is not None:
                self.control = result
        return self.control
