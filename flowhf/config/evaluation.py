"""The evaluation's settings: how completions are sampled (`GenerationSettings`), the per-prompt
diversity (`PerPromptSettings`) and one evaluation of several models (`EvalArgs`).

`flowhf.evaluation.runner.evaluate_models` reads an `EvalArgs`; ``flowhf eval`` builds one from its
flags (their help strings are these fields' help) and ``flowhf reproduce`` from its preset.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from flowhf.config.fields import AT_LEAST_ONE, POSITIVE, Range, help_field as _f


@dataclass
class GenerationSettings:
    """Sampling settings of the evaluation (defaults follow the report: temperature 0.1)."""

    temperature: float = _f(0.1, "Sampling temperature (the report uses 0.1).")
    top_p: float = _f(1.0, "Nucleus sampling mass in (0, 1]; 1.0 disables it.")
    top_k: int = _f(0, "Top-k filtering; 0 disables it (HF's own default would be 50).")
    repetition_penalty: float = _f(1.0, "HF repetition penalty (> 0); 1.0 disables it.")
    max_new_tokens: int = _f(64, "Maximum tokens generated per completion.")
    batch_size: int = _f(16, "Prompts per generate() call.")
    do_sample: bool = _f(True, "Sample (True) or greedy decode (False; temperature/top_p unused).")
    use_chat_template: bool = _f(
        True, "Wrap prompts in the tokenizer's chat template when it has one."
    )

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(
                f"temperature must be > 0, got {self.temperature} (use do_sample=False for greedy)"
            )
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 disables it), got {self.top_k}")
        if not self.repetition_penalty > 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    def generate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``model.generate`` (sampling knobs only when sampling)."""
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": self.do_sample,
            "repetition_penalty": self.repetition_penalty,
        }
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k)
        return kwargs


@dataclass
class PerPromptSettings:
    """Which prompts, how many samples each, at what temperature, and the same-answer threshold."""

    n_prompts: int = _f(
        32, "N evaluation prompts, evenly spaced over the prompt file.", allowed=AT_LEAST_ONE
    )
    k: int = _f(8, "Completions per prompt.", allowed=Range(2))
    temperature: float = _f(
        1.0, "Sampling temperature (1.0: the trained policy itself).", allowed=POSITIVE
    )
    threshold: float = _f(
        0.15,
        "Cosine distance under which two answers count as the same.",
        allowed=Range(0, 2, low_open=True, high_open=True),
    )

    def __post_init__(self) -> None:
        if self.n_prompts < 1 or self.k < 2:
            raise ValueError(
                f"per-prompt diversity needs n_prompts >= 1 and k >= 2, got {self.n_prompts}, {self.k}"
            )
        if not (self.temperature > 0 and 0 < self.threshold < 2):
            raise ValueError(
                f"temperature must be > 0 and threshold in (0, 2), got {self.temperature}, {self.threshold}"
            )


@dataclass
class EvalArgs:
    """One evaluation of several models: how many completions, which statistics, where written.

    What the models are evaluated on (prompts, rewards) is `flowhf.evaluation.runner.EvalInputs`.
    """

    output_dir: str | os.PathLike = field(metadata={"help": "Where the outputs are written."})
    n: int = _f(200, "Number of test prompts / completions per model.", allowed=AT_LEAST_ONE)
    k: int = _f(20, "K of the top-K metrics.", allowed=AT_LEAST_ONE)
    seed: int = _f(0, "Seed of generation and of the bootstrap.")
    n_boot: int = _f(1000, "Bootstrap resamples for the 95% CIs.", allowed=AT_LEAST_ONE)
    alpha: float = _f(0.05, "The intervals are 1 - alpha.", allowed=Range(0, 1, True, True))
    task: str = _f("custom", "Task name: report tables 1 (stackexchange) and 2 (toxicity).")
    baseline: str | None = _f(None, "Model (as passed to --model) the others are t-tested against.")
    device: str | None = _f(
        None, "Device of the models loaded here (default: CUDA when available)."
    )
    run_dirs: dict = _f(
        {}, "NAME -> training run dir (with metrics.jsonl) for training_curves.png."
    )
    generation: GenerationSettings = field(
        default_factory=GenerationSettings, metadata={"help": "How completions are sampled."}
    )
    per_prompt: PerPromptSettings | None = _f(
        None, "Per-prompt diversity (`flowhf.evaluation.per_prompt`); None skips it."
    )
