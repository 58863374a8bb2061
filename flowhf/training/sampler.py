"""Which sampler draws a step's on-policy batch: ``sampling.sampler`` plain or fast.

- plain: `flowhf.sampling.generate.sample_completions` on the PEFT policy itself (under bf16
  autocast when ``model.autocast_bf16``).
- fast: `flowhf.sampling.fast.FastSampler` on a merged copy in ``sampling.sample_dtype``; by
  default bfloat16 when the policy computes in bf16 anyway (``model.autocast_bf16`` or
  ``model.dtype: bfloat16``), else float32.

Both draw from the policy (or, for a batch drawn by the reference under
``sampling.reference_prob``, from the starting model) and record the log q of what they drew, so the objectives read either the same way.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator

import torch

from flowhf.models.modes import eval_mode
from flowhf.sampling.fast import FastSampler
from flowhf.sampling.generate import Completions, sample_completions

SampleFn = Callable[..., Completions]  # sample_completions' arguments after the model


class StepSamplers:
    """The sample function of each step, built on first use (a fast sampler copies the model).

    Args:
        trainer: a FlowHFTrainer (its bundle, config, device, policy and autocast are read).
    """

    def __init__(self, trainer):
        self.trainer = trainer
        self.fast: dict[str, FastSampler] = {}

    @contextlib.contextmanager
    def use(self, reference: bool) -> Iterator[SampleFn]:
        """Yield the sampling function of this batch: the policy's, or the reference's for a batch
        drawn by the starting model (sampling.reference_prob; its log q is the reference's)."""
        t = self.trainer
        if t.args.sampling.sampler == "fast":
            yield self._fast(reference)
            return
        source = (
            t.bundle.reference_mode()
            if reference
            else eval_mode(t.accelerator.unwrap_model(t.model))
        )
        with source as model, t._autocast():
            yield functools.partial(sample_completions, model)

    def _fast(self, reference: bool) -> SampleFn:
        """A LoRA policy samples the reference from its own copy with the adapters left out; a
        fully fine-tuned one has a frozen reference model, which gets a copy of its own."""
        t = self.trainer
        if reference and t.bundle.reference is None and not t.bundle.is_lora:
            raise RuntimeError(
                "sampling.reference_prob > 0 needs a reference: this bundle has no frozen copy and no "
                "LoRA adapters to switch off"
            )
        separate = reference and t.bundle.reference is not None
        key = "reference" if separate else "policy"
        if key not in self.fast:
            source = t.bundle.reference if separate else t.accelerator.unwrap_model(t.model)
            self.fast[key] = FastSampler(
                source, sampling_dtype(t.args), compile_decode(t.args.sampling, t.device)
            )
        return functools.partial(self.fast[key].sample, adapters=not reference)


def sampling_dtype(config) -> torch.dtype:
    """sampling.sample_dtype, or by default bfloat16 where the policy already computes in bf16
    (autocast or bf16 weights), else float32."""
    if config.sampling.sample_dtype is not None:
        return getattr(torch, config.sampling.sample_dtype)
    m = config.model
    return torch.bfloat16 if m.autocast_bf16 or m.dtype == "bfloat16" else torch.float32


def compile_decode(sampling_args, device: torch.device) -> bool:
    """sampling.compile_decode: true, false, or null (on GPU only; on CPU it did not pay, see the README)."""
    if sampling_args.compile_decode is None:
        return device.type == "cuda"
    return bool(sampling_args.compile_decode)
