"""Helpers shared by the TRL baseline runners: data, prompt formatting, LoRA, saving, results.

Prompts are formatted and encoded by FlowHF's own path (`flowhf.sampling.prompts`): when the
tokenizer has a chat template the prompt is one user turn with the generation prompt appended;
otherwise the raw text is tokenized with the tokenizer's own special tokens. Rewards always see
the RAW prompt text (the question), never the templated one, as in FlowHF.

Every run writes into ``output_dir``: ``metrics.jsonl`` / ``metrics.csv`` (one line per logging
step), ``budget.json`` (what the budget callback recorded), ``model/`` (the merged policy, a
plain folder ``AutoModelForCausalLM.from_pretrained`` loads) and ``result.json``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftModel

from flowhf.data.loading import DataError, load_rows
from flowhf.distributed import barrier, is_main_process
from flowhf.experiments.baselines.budget import Budget, BudgetCallback, TokenCounter
from flowhf.experiments.baselines.metrics import MetricsCallback
from flowhf.io import atomic_folder, atomic_write_text
from flowhf.models.lora import LoraSettings, build_lora_config
from flowhf.run_dir import acquire_lock, prepare_run_dir, release_lock
from flowhf.sampling.prompts import as_conversation, encode_prompt, uses_chat_template  # noqa: F401  (runners import them here)

# Column layout of the StackExchange pairs -> the names the runners read.
SE_COLUMNS = {"prompt": "question", "completion": "response_j"}
# Trainer settings every baseline shares (CPU-friendly, no checkpoints, no external loggers).
COMMON_TRAINER_KWARGS: dict[str, Any] = {
    "logging_steps": 1,
    "save_strategy": "no",
    "report_to": "none",
    "bf16": False,  # TRL defaults to bf16; FlowHF trains in float32 on CPU
    "fp16": False,
    "gradient_checkpointing": False,  # TRL defaults to True; costs ~20% time and these models are small
    "lr_scheduler_type": "constant",  # a seconds/tokens budget has no known horizon to decay over
    "dataloader_num_workers": 0,
}
UNBOUNDED_STEPS = 10**9  # step cap when only seconds / tokens bound the run


# -- data ---------------------------------------------------------------------------------------


def load_training_rows(
    source: str | os.PathLike,
    required: list[str],
    columns: dict[str, str] | None = None,
    split: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Rows with our ``required`` columns; StackExchange-layout sources are mapped automatically.

    Without ``columns``, a source whose rows lack ``prompt`` but have ``question`` (and, for
    SFT, ``response_j``) is read with ``question -> prompt``, ``response_j -> completion``.
    """
    if columns is None:
        first = load_rows(source, required=[], split=split, limit=1)[0]
        wanted = {k: v for k, v in SE_COLUMNS.items() if k in required}
        if any(k not in first for k in wanted) and all(v in first for v in wanted.values()):
            columns = wanted
    try:
        return load_rows(source, columns=columns, required=required, split=split, limit=limit)
    except DataError as err:
        raise DataError(f"{err} (the baselines need columns {required})") from err


# -- models -------------------------------------------------------------------------------------


def load_model(model: Any, tokenizer: Any = None) -> tuple[Any, Any, str]:
    """(model, tokenizer, source label) from a spec ("smollm2", folder, Hub id) or a built model.

    A built model needs its tokenizer. A tokenizer without a pad token gets EOS as pad
    (`flowhf.models.loading.prepare_tokenizer`), left padding for generation.
    """
    from flowhf.models.loading import load_causal_lm, prepare_tokenizer

    if isinstance(model, (str, os.PathLike)):
        loaded, loaded_tok = load_causal_lm(model, dtype="float32")
        tokenizer = prepare_tokenizer(tokenizer) if tokenizer is not None else loaded_tok
        return loaded, tokenizer, os.fspath(model)
    if tokenizer is None:
        raise ValueError(
            "a built model needs its tokenizer: pass tokenizer=... (or pass a model path instead)"
        )
    if isinstance(model, PeftModel):
        raise ValueError(
            "the baselines add their own LoRA adapters through TRL; pass the base model (or merge the "
            "existing adapter with model.merge_and_unload() first)"
        )
    return (
        model,
        prepare_tokenizer(tokenizer),
        getattr(model, "name_or_path", "") or type(model).__name__,
    )


def lora_config(settings: LoraSettings | None, task_type: str = "CAUSAL_LM") -> LoraConfig | None:
    """PEFT config for TRL's ``peft_config`` from FlowHF's `LoraSettings` (same fields as apply_lora)."""
    if settings is None:
        return None
    if not isinstance(settings, LoraSettings):
        raise TypeError(f"lora must be a LoraSettings or None, got {type(settings).__name__}")
    return build_lora_config(settings, task_type)


def coerce_lora(value: LoraSettings | dict | None) -> LoraSettings | None:
    if value is None or isinstance(value, LoraSettings):
        return value
    if isinstance(value, dict):
        return LoraSettings(**value)
    raise TypeError(f"lora must be a LoraSettings, a dict or None, got {type(value).__name__}")


def save_merged_model(model: Any, tokenizer: Any, path: str | os.PathLike) -> Path:
    """Save the policy as a plain model folder (LoRA merged into the weights) + its tokenizer,
    written to a temporary folder renamed into place (`atomic_folder`): never half a model."""
    path = Path(path)
    if (
        is_main_process()
    ):  # one process merges and writes; the others wait until the folder is complete
        if isinstance(model, PeftModel):
            model = model.merge_and_unload()
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_folder(path) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
    barrier()
    return path


def step_cap(budget: Budget) -> int:
    """TRL's max_steps: the budget's, else a cap the seconds/tokens limits reach first."""
    return budget.max_steps if budget.max_steps is not None else UNBOUNDED_STEPS


# -- run bookkeeping ----------------------------------------------------------------------------


@dataclass
class TrlRun:
    """A baseline run between `start_run` and `finish_run`."""

    recorder: RunRecorder
    policy: Any
    tokenizer: Any
    source: str  # what the policy was loaded from (result.json's "model")
    lora: LoraSettings | None
    output_dir: Path


def start_run(method: str, model: Any, tokenizer: Any, args: Any, **recorder_kw: Any) -> TrlRun:
    """What every TRL baseline does first: seed everything, start the recorder (budget and
    metrics callbacks; stale outputs removed), load the policy and its tokenizer.
    ``args``: the run's `flowhf.config.baselines.BaselineArgs`."""
    from transformers import set_seed

    set_seed(args.seed)
    lora = coerce_lora(args.lora)
    # one run per folder, checked before the policy loads; the lock is released by finish_run
    # (or, when training fails, found stale by the next run)
    prepare_run_dir(args.output_dir, overwrite=args.overwrite)
    if is_main_process():
        acquire_lock(args.output_dir)
    recorder = RunRecorder(method, args.output_dir, args.budget, **recorder_kw)
    policy, tokenizer, source = load_model(model, tokenizer)
    return TrlRun(recorder, policy, tokenizer, source, lora, Path(args.output_dir))


def trainer_kwargs(args: Any, recorder: RunRecorder) -> dict[str, Any]:
    """TRL config fields every baseline sets the same way (then its own, then trl_overrides)."""
    from flowhf.config.budget import progress_is_shown

    return {
        **COMMON_TRAINER_KWARGS,
        "output_dir": str(args.output_dir),
        "learning_rate": args.lr,
        "seed": args.seed,
        "disable_tqdm": progress_is_shown(),
    }  # under a reproduce stage bar, TRL draws no second bar


def finish_run(
    run: TrlRun, trained: Any, tokenizer: Any, settings: dict[str, Any]
) -> dict[str, Any]:
    """What every TRL baseline does last: save the merged policy under ``output_dir/model``
    and write ``result.json``; returns the result dict."""
    model_dir = save_merged_model(trained, tokenizer, run.output_dir / "model")
    result = run.recorder.finish(model_dir, run.source, settings)
    release_lock(run.output_dir)
    return result


class RunRecorder:
    """Callbacks (budget + metrics) of one run and the ``result.json`` written when it ends."""

    def __init__(
        self,
        method: str,
        output_dir: str | os.PathLike,
        budget: Budget | dict,
        raise_on_stop: bool = False,
        vf_coef: float | None = None,
    ) -> None:
        self.method = method
        self.output_dir = Path(output_dir)
        self.main = is_main_process()
        self.output_dir.mkdir(
            parents=True, exist_ok=True
        )  # no earlier run here: start_run refused it
        self.budget = Budget.coerce(budget)
        self.counter = TokenCounter()
        self.budget_callback = BudgetCallback(
            self.budget,
            self.counter,
            self.output_dir / "budget.json" if self.main else None,
            raise_on_stop=raise_on_stop,
        )
        self.metrics_callback = MetricsCallback(
            self.output_dir, self.budget_callback, vf_coef=vf_coef, enabled=self.main
        )
        self.started = time.perf_counter()

    @property
    def callbacks(self) -> list:
        return [self.budget_callback, self.metrics_callback]

    def finish(
        self, model_dir: Path, model_source: str, settings: dict[str, Any]
    ) -> dict[str, Any]:
        """Write ``result.json`` and return it as a dict."""
        import trl

        self.metrics_callback.close()
        record = self.budget_callback.record()
        last = self.metrics_callback.last
        result = {
            "method": self.method,
            "trl_version": trl.__version__,
            "model": model_source,
            "output_dir": str(self.output_dir),
            "model_dir": str(model_dir),
            "metrics_path": str(self.output_dir / "metrics.jsonl"),
            "budget": record["budget"],
            "stopped_by": record["stopped_by"],
            "wall_clock_seconds": record["elapsed_seconds"],
            "total_seconds": round(time.perf_counter() - self.started, 4),
            "steps": record["steps"],
            "tokens_generated": record["tokens_generated"],
            "completions_generated": record["completions_generated"],
            "final_reward_mean": last.get("train/reward_mean"),
            "final_loss": last.get("train/loss"),
            "logged_steps": self.metrics_callback.rows,
            "settings": _jsonable(settings),
            "trainer_summary": _jsonable(self.metrics_callback.summary),
            "device": str(torch.device("cuda" if torch.cuda.is_available() else "cpu")),
            "torch_threads": torch.get_num_threads(),
        }
        if self.main:
            atomic_write_text(self.output_dir / "result.json", json.dumps(result, indent=2) + "\n")
        return result


def _jsonable(value: Any) -> Any:
    """Settings as JSON: dataclasses to dicts, paths to strings, unknown objects to their repr."""
    if hasattr(value, "__dataclass_fields__"):
        return _jsonable(asdict(value))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return repr(value)
