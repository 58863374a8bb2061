"""TRL's `reward_funcs`, called TRL's way: one item or a list, weighted, None = "does not apply".

    FlowHFTrainer(model, reward_funcs=[accuracy, "sentiment", "path/to/reward_model"], ...)

Items (`reward_item`):
- a function, sync or async, called with keywords as TRL's GRPOTrainer calls it:
      fn(prompts=..., completions=..., completion_ids=..., **every other dataset column,
         trainer_state=..., log_extra=..., log_metric=...) -> one number or None per sample
  prompts and completions come in the dataset's format: texts, or for conversational prompts
  the messages and ``[{"role": "assistant", "content": text}]``.
- a FlowHF reward: a `flowhf.rewards` spec (str / dict) or a `Reward`, called by the Reward
  contract (plain texts, the columns named in data.reward_columns).
- a sequence-classification model, as an object or a local folder: its logit of label 0 for
  the prompt + completion text (`ClassifierReward`).

A sample's reward is sum_i w_i r_i over the items that returned a number for it (TRL's
nansum; w = target.reward_weights, 1 each by default). None is not NaN: a NaN or inf stays
what target.nonfinite_reward says. A sample that every item skipped is an error naming its
dataset row.

Prefix rewards (FL, DB, SubTB with energies) add up each item's prefix rewards the same way.
A function has no prefix route of its own, so it is called on the decoded text of every
prefix of every completion (deduplicated per row, one call per step): about
max_new_tokens / target.prefix_stride times the samples of the full-completion call.
target.prefix_stride=k scores every k-th prefix and holds the value in between.
"""

from __future__ import annotations

import asyncio
import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from flowhf.errors import ConfigError, RewardError
from flowhf.rewards.base import (
    Reward,
    as_reward_tensor,
    hold_values,
    pad_prefix_rows,
    prefix_positions,
)
from flowhf.rewards.combine import weighted_sum
from flowhf.sampling.prompts import as_completion, is_conversation, message_text

# Keywords the trainer passes itself; a dataset column of one of these names would be ambiguous.
RESERVED = ("prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric")


@dataclass
class RewardBatch:
    """One batch as reward functions see it."""

    prompts: list  # as in the dataset: texts or lists of chat messages
    completions: list[str]  # decoded texts
    completion_ids: list[list[int]]  # action ids, EOS included when the completion ended with one
    columns: dict[str, list]  # every other dataset column, one value per sample
    row_numbers: list[
        int | None
    ]  # 1-based dataset row of each sample (for errors; None: not a dataset row)

    @property
    def conversational(self) -> bool:
        return bool(self.prompts) and is_conversation(self.prompts[0])

    def trl_completions(self) -> list:
        """Completions in the prompts' format (TRL: one assistant message for conversations)."""
        return (
            [as_completion(c) for c in self.completions]
            if self.conversational
            else list(self.completions)
        )

    def text_prompts(self) -> list[str]:
        return [message_text(p, "user") for p in self.prompts]

    def take(
        self, rows: list[int], completions: list[str], completion_ids: list[list[int]]
    ) -> RewardBatch:
        """Other completions (prefixes) of the given rows, with those rows' prompts and columns."""
        return RewardBatch(
            [self.prompts[r] for r in rows],
            completions,
            completion_ids,
            {k: [v[r] for r in rows] for k, v in self.columns.items()},
            [self.row_numbers[r] for r in rows],
        )

    def describe(self, i: int) -> str:
        where = (
            f"dataset row {self.row_numbers[i]}"
            if self.row_numbers[i] is not None
            else f"sample {i + 1}"
        )
        return (
            f"{where} (prompt {message_text(self.prompts[i], 'user')[:80]!r}, completion "
            f"{self.completions[i][:80]!r}, columns { ({k: v[i] for k, v in self.columns.items()})!r:.200})"
        )


class FunctionItem:
    """A TRL-style reward function (see the module docstring)."""

    def __init__(self, fn: Callable[..., Any], context: dict[str, Any]) -> None:
        self.fn, self.context = fn, context
        self.name = getattr(fn, "__name__", type(fn).__name__)
        call = getattr(fn, "__call__", None)  # noqa: B004 (an object with an async __call__)
        self.is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)

    def call(self, batch: RewardBatch, quiet: bool = False):
        """The function's raw output (a coroutine for an async function). ``quiet``: its
        log_extra / log_metric do nothing (prefix calls are not the step's samples)."""
        context = (
            dict(self.context, log_extra=_ignore, log_metric=_ignore) if quiet else self.context
        )
        return self.fn(
            prompts=batch.prompts,
            completions=batch.trl_completions(),
            completion_ids=batch.completion_ids,
            **batch.columns,
            **context,
        )

    def values(self, out: Any, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(values [n], applies [n] bool) from the function's output; None = does not apply."""
        if isinstance(out, (list, tuple)):
            if len(out) != n:
                raise RewardError(
                    f"reward function {self.name!r} returned {len(out)} values for {n} completions",
                    "return one number (or None) per completion",
                )
            bad = [
                v
                for v in out
                if v is not None and (isinstance(v, (str, bytes)) or not _is_number(v))
            ]
            if bad:
                raise RewardError(
                    f"reward function {self.name!r} returned {bad[0]!r} ({type(bad[0]).__name__}); "
                    "expected a number or None per completion",
                    "return floats (None: does not apply)",
                )
            applies = torch.tensor([v is not None for v in out], dtype=torch.bool)
            return torch.tensor([float("nan") if v is None else float(v) for v in out]), applies
        values = as_reward_tensor(out, n, self.name)
        return values, torch.ones(n, dtype=torch.bool)

    def score(self, batch: RewardBatch) -> tuple[torch.Tensor, torch.Tensor]:
        return self.values(_resolve(self.call(batch)), len(batch.completions))

    def score_prefixes(
        self, batch: RewardBatch, tokenizer: Any, stride: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, T+1] values and applies of every prefix (decoded text, deduplicated per row)."""
        rows, texts, ids_list, plans = [], [], [], []
        for b, ids in enumerate(batch.completion_ids):
            positions, seen, slots = prefix_positions(len(ids), stride), {}, []
            for t in positions:
                text = tokenizer.decode(ids[:t], skip_special_tokens=True)
                if text not in seen:
                    seen[text] = len(texts)
                    rows.append(b)
                    texts.append(text)
                    ids_list.append(list(ids[:t]))
                slots.append(seen[text])
            plans.append((len(ids), positions, slots))
        values, applies = self.values(
            _resolve(self.call(batch.take(rows, texts, ids_list), quiet=True)), len(texts)
        )
        held = [
            (
                hold_values(n, pos, values[s].tolist()),
                hold_values(n, pos, applies[s].float().tolist()),
            )
            for n, pos, s in plans
        ]
        return pad_prefix_rows([v for v, _ in held]), pad_prefix_rows([a for _, a in held]) > 0.5


class RewardItem:
    """A FlowHF `Reward` among TRL-style items: plain texts, its own prefix route."""

    def __init__(self, reward: Reward, columns: list[str]) -> None:
        self.reward, self.columns, self.is_async = reward, columns, False
        self.name = getattr(reward, "name", type(reward).__name__)

    def _columns(self, batch: RewardBatch) -> dict[str, list]:
        columns = {c: batch.columns[c] for c in self.columns}
        if getattr(self.reward, "uses_completion_ids", False):
            columns["completion_ids"] = batch.completion_ids
        return columns

    def score(self, batch: RewardBatch) -> tuple[torch.Tensor, torch.Tensor]:
        values = self.reward(batch.text_prompts(), batch.completions, **self._columns(batch))
        values = torch.as_tensor(values, dtype=torch.float32).cpu()
        return values, torch.ones(len(values), dtype=torch.bool)

    def score_prefixes(
        self, batch: RewardBatch, tokenizer: Any, stride: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        columns = {c: batch.columns[c] for c in self.columns}
        values = (
            self.reward.score_prefixes(
                batch.text_prompts(), batch.completion_ids, tokenizer, **columns
            )
            .float()
            .cpu()
        )
        return values, torch.ones(values.shape, dtype=torch.bool)


def reward_item(
    item: Any,
    *,
    columns: list[str],
    context: dict,
    processing_class: Any = None,
    trust_remote_code: bool = False,
):
    """One `reward_funcs` item as a FunctionItem or RewardItem (see the module docstring)."""
    if isinstance(item, Reward):
        return RewardItem(item, columns)
    if isinstance(item, torch.nn.Module):
        return RewardItem(_model_reward(item, processing_class, trust_remote_code), columns)
    if isinstance(item, (str, Path)) and (Path(item) / "config.json").is_file():
        return RewardItem(_model_reward(str(item), processing_class, trust_remote_code), columns)
    if isinstance(item, (str, dict)):
        from flowhf.rewards.registry import build_reward

        return RewardItem(_spec_reward(build_reward, item), columns)
    if callable(item):
        return FunctionItem(item, context)
    raise TypeError(
        f"reward_funcs item {item!r:.80} is not a function, a flowhf.rewards spec, a Reward or a "
        "sequence-classification model (object or local folder)"
    )


def _spec_reward(build: Callable[[Any], Reward], spec: Any) -> Reward:
    try:
        return build(spec)
    except ValueError as err:
        if isinstance(spec, str) and "/" in spec and "unknown reward" in str(err):
            raise ValueError(
                f"reward_funcs item {spec!r} is neither a local model folder (no config.json there) nor a "
                f"flowhf.rewards spec; for a Hub reward model use 'classifier:{spec}'"
            ) from None
        raise


def _model_reward(model: Any, processing_class: Any, trust_remote_code: bool) -> Reward:
    """A sequence classifier scored as TRL scores it: logit 0 of prompt + completion."""
    from flowhf.rewards.classifier import ClassifierReward

    options = {"label": 0, "output": "logit", "trust_remote_code": trust_remote_code}
    if isinstance(model, str):
        return ClassifierReward(model, **options)
    tokenizer = processing_class
    if tokenizer is None:
        source = getattr(model.config, "_name_or_path", None)
        if not source or not Path(source).is_dir():
            raise ValueError(
                f"reward model {type(model).__name__} needs its tokenizer: pass "
                "reward_processing_classes=[tokenizer] (one per reward_funcs item, None for the others)"
            )
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    return ClassifierReward(model=model, tokenizer=tokenizer, input_format="concat", **options)


class RewardLog:
    """What reward functions log through TRL's ``log_metric`` / ``log_extra`` keywords."""

    def __init__(self) -> None:
        self.logged: dict[str, list[float]] = {}

    def log_metric(self, name: str, value: float) -> None:
        """A scalar, averaged over the step and logged as train/NAME (as TRL logs it as NAME)."""
        self.logged.setdefault(name, []).append(float(value))

    def log_extra(self, column: str, values: list) -> None:
        """TRL adds these to its completions table; FlowHF keeps no such table, and says so once."""
        warn_once(
            f"log_extra({column!r}, ...): FlowHF logs metrics, not a completions table; these values are not "
            "stored (log_metric logs scalars)"
        )

    def pop(self) -> dict[str, float]:
        """Means of the values logged since the last call (then forgotten)."""
        logged, self.logged = self.logged, {}
        return {name: sum(v) / len(v) for name, v in logged.items()}


class RewardFunctions:
    """The items of `reward_funcs` and their weighted sum (see the module docstring)."""

    def __init__(
        self, items: list, weights: list[float] | None = None, log: RewardLog | None = None
    ) -> None:
        weights = [1.0] * len(items) if weights is None else [float(w) for w in weights]
        if len(weights) != len(items):
            raise ConfigError(
                f"target.reward_weights has {len(weights)} weights but there are {len(items)} reward "
                f"functions ({', '.join(i.name for i in items)})",
                "give one weight per reward function",
            )
        self.items, self.weights, self.log = items, weights, log or RewardLog()
        self.name = " + ".join(i.name for i in items)
        self.prefix_stride = 1
        self.last_means: dict[
            str, float
        ] = {}  # each item's mean over the samples it scored, last call

    @classmethod
    def build(
        cls,
        spec: Any,
        *,
        weights: list[float] | None,
        columns: list[str],
        trainer_state: Any,
        processing_classes: Any = None,
        trust_remote_code: bool = False,
    ) -> RewardFunctions:
        """From `reward_funcs` (one item or a list); ``columns``: what FlowHF rewards receive;
        ``processing_classes``: the tokenizer of each model item (TRL's reward_processing_classes)."""
        specs = list(spec) if isinstance(spec, (list, tuple)) else [spec]
        if not specs:
            raise ValueError("reward_funcs is an empty list; give at least one reward function")
        tokenizers = (
            list(processing_classes)
            if isinstance(processing_classes, (list, tuple))
            else [processing_classes] * len(specs)
        )
        if len(tokenizers) != len(specs):
            raise ValueError(
                f"reward_processing_classes has {len(tokenizers)} entries for {len(specs)} reward_funcs items; "
                "give one per item (None where it is not a model)"
            )
        log = RewardLog()
        context = {
            "trainer_state": trainer_state,
            "log_extra": log.log_extra,
            "log_metric": log.log_metric,
        }
        items = [
            reward_item(
                s,
                columns=columns,
                context=context,
                processing_class=t,
                trust_remote_code=trust_remote_code,
            )
            for s, t in zip(specs, tokenizers)
        ]
        return cls(items, weights, log)

    def set_prefix_stride(self, stride: int) -> None:
        self.prefix_stride = stride
        for item in self.items:
            if isinstance(item, RewardItem) and hasattr(item.reward, "set_prefix_stride"):
                item.reward.set_prefix_stride(stride)

    def allow_nonfinite(self) -> None:
        """NaN / inf come back to the trainer, which floors and counts them (target.nonfinite_reward=floor)."""
        for item in self.items:
            if isinstance(item, RewardItem) and hasattr(item.reward, "allow_nonfinite"):
                item.reward.allow_nonfinite = True

    def __call__(self, batch: RewardBatch) -> torch.Tensor:
        """[B] rewards: sum of w_i r_i over the items that apply to each sample."""
        scored = _score_all(self.items, batch)
        self.last_means = {
            i.name: float(v[a].mean()) if a.any() else float("nan")
            for i, (v, a) in zip(self.items, scored)
        }
        return self._combine(scored, batch, None)

    def score_prefixes(self, batch: RewardBatch, tokenizer: Any) -> torch.Tensor:
        """[B, T+1] prefix rewards, combined as the full ones are."""
        width = max((len(ids) for ids in batch.completion_ids), default=0) + 1
        scored = [item.score_prefixes(batch, tokenizer, self.prefix_stride) for item in self.items]
        return self._combine([(v[:, :width], a[:, :width]) for v, a in scored], batch, "prefix")

    def _combine(self, scored: list, batch: RewardBatch, what: str | None) -> torch.Tensor:
        total = weighted_sum(
            [torch.where(a, v, torch.zeros_like(v)) for v, a in scored], self.weights
        )
        none = ~torch.stack([a for _, a in scored]).any(0)
        if none.any():
            row = int(none.reshape(len(none), -1).any(1).nonzero()[0])
            at = f" on a prefix of {int(none[row].nonzero()[0])} tokens" if what else ""
            raise RewardError(
                f"every reward function ({self.name}) returned None{at} for {batch.describe(row)}",
                "None means 'this function does not apply'; at least one function must score each "
                "sample: return a number for it, or remove the row from the dataset",
            )
        return total


def _score_all(items: list, batch: RewardBatch) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every item's (values, applies); async functions run together, as TRL runs them."""
    results: dict[int, tuple] = {}
    pending = [(i, item) for i, item in enumerate(items) if item.is_async]
    for i, item in enumerate(items):
        if not item.is_async:
            results[i] = item.score(batch)
    if pending:
        outputs = _run(lambda: asyncio.gather(*(item.call(batch) for _, item in pending)))
        for (i, item), out in zip(pending, outputs):
            results[i] = item.values(out, len(batch.completions))
    return [results[i] for i in range(len(items))]


def _resolve(out: Any) -> Any:
    """An async function's result (its coroutine run to the end); anything else as is."""
    return _run(lambda: out) if inspect.isawaitable(out) else out


def _run(make: Callable[[], Any]) -> Any:
    """Run the awaitable ``make()`` gives to its end, in a fresh event loop (on a worker thread
    when the caller is already inside one, e.g. a notebook)."""

    async def main():
        return await make()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, main()).result()


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _ignore(*args: Any, **kwargs: Any) -> None:
    return None


_WARNED: set[str] = set()


def warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        warnings.warn(message, stacklevel=3)
