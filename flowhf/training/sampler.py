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

from flowhf.config.training import SamplingArgs
from flowhf.models.modes import eval_mode
from flowhf.sampling.fast import FastSampler
from flowhf.sampling.generate import Completions, sample_completions
from flowhf.training.policy import Policy

SampleFn = Callable[..., Completions]  # sample_completions' arguments after the model


class StepSamplers:
    """The sample function of each step, built on first use (a fast sampler copies the model).

    Args:
        policy: the trainer's `flowhf.training.policy.Policy` (bundle, device, autocast).
        sampling: the config's sampling group (which sampler, compile_decode).
    """

    def __init__(self, policy: Policy, sampling: SamplingArgs):
        self.policy, self.sampling = policy, sampling
        self.fast: dict[str, FastSampler] = {}

    @contextlib.contextmanager
    def use(self, reference: bool) -> Iterator[SampleFn]:
        """Yield the sampling function of this batch: the policy's, or the reference's for a batch
        drawn by the starting model (sampling.reference_prob; its log q is the reference's)."""
        p = self.policy
        if self.sampling.sampler == "fast":
            yield self._fast(reference)
            return
        source = p.bundle.reference_mode() if reference else eval_mode(p.unwrapped())
        with source as model, p.autocast():
            yield functools.partial(sample_completions, model)

    def _fast(self, reference: bool) -> SampleFn:
        """A LoRA policy samples the reference from its own copy with the adapters left out; a
        fully fine-tuned one has a frozen reference model, which gets a copy of its own."""
        p = self.policy
        if reference and p.bundle.reference is None and not p.bundle.is_lora:
            raise RuntimeError(
                "sampling.reference_prob > 0 needs a reference: this bundle has no frozen copy and no "
                "LoRA adapters to switch off"
            )
        separate = reference and p.bundle.reference is not None
        key = "reference" if separate else "policy"
        if key not in self.fast:
            source = p.bundle.reference if separate else p.unwrapped()
            self.fast[key] = FastSampler(
                source, p.sample_dtype, compile_decode(self.sampling, p.device)
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
    """sampling.compile_decode: true, false, or null (on GPU only; on CPU it did not pay, see docs/speed.md)."""
    if sampling_args.compile_decode is None:
        return device.type == "cuda"
    return bool(sampling_args.compile_decode)
