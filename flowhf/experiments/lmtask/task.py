"""The distribution-task file: prompts, enumerated answers with rewards, and the target.

    name: numbers-uniform
    prompts: ["Pick a random whole number from 1 to 50. Reply with the number only."]
    answers: {"1": 1.0, "2": 1.0}     # completion text -> reward r (shared by string prompts)
    other_reward: -8.0                # reward of every other completion
    beta: 10.0
    alpha: 0.0                        # target log R = beta * r + alpha * log p_ref; 0 or 1
    max_new_tokens: 6

A prompt may also be a mapping ``{prompt: TEXT, answers: {...}}`` with answers of its own.
Prompts get the tokenizer's chat template, exactly as in training.

The reward is defined on TOKEN SEQUENCES: a completion is an answer only if its ids equal the
answer's canonical tokenization (``tokenizer(text, add_special_tokens=False)``) followed by an
EOS id. A text-level reward would also pay every other tokenization of the same string
("San Francisco" as "San"+" Francisco", "S"+"an"+" Francisco", ...). At alpha 0 those
spellings have no prior to hold them back, so the target itself would move most of its
mass onto token sequences no tokenizer produces, and nothing in the exact partition
below would measure it. Keep rewards on canonical ids (`AnswerSetReward` does), or use
alpha = 1, where the reference's own probabilities keep odd spellings negligible.

alpha is restricted to 0 or 1: only then is the target mass of "everything else" exact (a
count of sequences, or one minus the reference's answer mass).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowhf.config.fields import Source, read_yaml_source
from flowhf.errors import ConfigError
from flowhf.sampling.prompts import completion_token_ids

KEYS = (
    "name",
    "description",
    "prompts",
    "answers",
    "other_reward",
    "beta",
    "alpha",
    "max_new_tokens",
)


class TaskError(ConfigError):
    """A task file that cannot be used; the message names the file, the line and the key (a
    ConfigError: the CLI prints it as one line, exit 2, before any model loads)."""

    default_hint = "fix the task file (format: flowhf/experiments/lmtask/task.py; shipped tasks: benchmarks/lm_tasks/)"


@dataclass(frozen=True)
class PromptAnswers:
    prompt: str
    answers: dict[str, float]  # answer text -> reward
    keys: tuple[str, ...] = ("answers",)  # where the answers mapping is in the file (for errors)


@dataclass(frozen=True)
class LMTask:
    name: str
    items: tuple[PromptAnswers, ...]
    other_reward: float
    beta: float
    alpha: float
    max_new_tokens: int
    description: str = ""
    source: str = "<task>"
    lines: Source | None = field(
        default=None, compare=False, repr=False
    )  # each key's line, for errors

    @property
    def prompts(self) -> list[str]:
        return [item.prompt for item in self.items]

    @property
    def answers_total(self) -> int:
        return sum(len(item.answers) for item in self.items)

    def canonical_ids(self, tokenizer) -> list[dict[str, list[int]]]:
        """Per prompt: answer text -> its canonical token ids (no EOS). Checked against the limit."""
        where = (self.lines or Source(self.source)).where
        out = []
        for i, item in enumerate(self.items):
            ids = {text: completion_token_ids(tokenizer, text) for text in item.answers}
            seen: dict[tuple[int, ...], str] = {}
            for text, seq in ids.items():
                if len(seq) + 1 > self.max_new_tokens:
                    raise TaskError(
                        f"{where(*item.keys, text)}: answers[{text!r}] of prompt {i + 1} is {len(seq)} tokens, so with EOS "
                        f"it needs max_new_tokens >= {len(seq) + 1} (have {self.max_new_tokens}); raise max_new_tokens"
                    )
                if not seq:
                    raise TaskError(
                        f"{where(*item.keys, text)}: answers[{text!r}] of prompt {i + 1} tokenizes to nothing"
                    )
                if tuple(seq) in seen:
                    raise TaskError(
                        f"{where(*item.keys, text)}: answers {seen[tuple(seq)]!r} and {text!r} of prompt {i + 1} have the "
                        "same token ids; keep one"
                    )
                seen[tuple(seq)] = text
            out.append(ids)
        return out


def load_task(path: str | Path) -> LMTask:
    """Read and check a task file (see the module docstring for the format). Errors name the
    file and the line of the key (`flowhf.config.fields.read_yaml_source`, as for every config)."""
    path = Path(path)
    if not path.is_file():
        raise TaskError(
            f"task file {path} does not exist",
            "check the path (shipped tasks are in benchmarks/lm_tasks/)",
        )
    try:
        data, lines = read_yaml_source(path, "task")
    except (
        ConfigError
    ) as err:  # syntax, encoding, top level not a mapping: the same errors as configs
        raise TaskError(str(err), err.hint) from None
    return task_from_dict(data, str(path), lines)


def task_from_dict(data: Any, source: str = "<task>", lines: Source | None = None) -> LMTask:
    """The checked task of a mapping; errors name ``source`` and, given ``lines``, the line of the key."""
    where = (lines or Source(source)).where
    if not isinstance(data, dict):
        raise TaskError(f"{source}: the top level must be a mapping with keys {', '.join(KEYS)}")
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise TaskError(
            f"{where(unknown[0])}: unknown key(s) {unknown}; valid keys are {', '.join(KEYS)}"
        )
    for key in ("prompts", "other_reward", "beta", "max_new_tokens"):
        if key not in data:
            raise TaskError(f"{source}: missing key {key!r}")
    shared = _answers(data["answers"], where, ("answers",)) if "answers" in data else None
    items = tuple(
        _prompt_item(p, shared, where, i) for i, p in enumerate(_list(data["prompts"], where))
    )
    alpha = _number(data.get("alpha", 0.0), where, "alpha")
    if alpha not in (0.0, 1.0):
        raise TaskError(
            f"{where('alpha')}: alpha={alpha}: use 0 (no prior) or 1 (KL-regularised); only these are exact"
        )
    max_new = data["max_new_tokens"]
    if isinstance(max_new, bool) or not isinstance(max_new, int) or max_new < 2:
        raise TaskError(
            f"{where('max_new_tokens')}: max_new_tokens must be an integer >= 2 (an answer token plus EOS), "
            f"got {max_new!r}"
        )
    name = data.get("name") or Path(source).stem
    return LMTask(
        name=str(name),
        items=items,
        other_reward=_number(data["other_reward"], where, "other_reward"),
        beta=_number(data["beta"], where, "beta"),
        alpha=alpha,
        max_new_tokens=max_new,
        description=str(data.get("description", "")),
        source=source,
        lines=lines,
    )


def _list(value: Any, where) -> list:
    if isinstance(value, str) or not isinstance(value, list) or not value:
        raise TaskError(
            f"{where('prompts')}: prompts must be a non-empty list of strings or {{prompt, answers}} mappings"
        )
    return value


def _prompt_item(value: Any, shared: dict | None, where, i: int) -> PromptAnswers:
    key, at = f"prompts[{i}]", ("prompts", str(i))
    keys = ("answers",)
    if isinstance(value, str):
        if shared is None:
            raise TaskError(
                f"{where(*at)}: {key} is a plain string but there is no top-level 'answers'"
            )
        text, answers = value, shared
    elif isinstance(value, dict):
        extra = sorted(set(value) - {"prompt", "answers"})
        if extra or "prompt" not in value:
            raise TaskError(
                f"{where(*at)}: {key} must have keys 'prompt' and optionally 'answers' (got {sorted(value)})"
            )
        text = value["prompt"]
        if "answers" in value:
            keys = (*at, "answers")
        answers = _answers(value["answers"], where, keys) if "answers" in value else shared
        if answers is None:
            raise TaskError(
                f"{where(*at)}: {key} has no 'answers' and there is no top-level 'answers'"
            )
    else:
        raise TaskError(
            f"{where(*at)}: {key} must be a string or a mapping, got {type(value).__name__}"
        )
    if not isinstance(text, str) or not text.strip():
        raise TaskError(f"{where(*at)}: {key} has an empty prompt")
    return PromptAnswers(text, answers, keys)


def _answers(value: Any, where, keys: tuple[str, ...]) -> dict[str, float]:
    key = keys[0] if len(keys) == 1 else f"prompts[{keys[1]}].answers"
    if not isinstance(value, dict) or not value:
        raise TaskError(
            f"{where(*keys)}: {key} must be a non-empty mapping of answer text -> reward"
        )
    out = {}
    for text, reward in value.items():
        if not isinstance(text, (str, int)) or isinstance(text, bool) or not str(text).strip():
            raise TaskError(
                f"{where(*keys, str(text))}: {key} has an empty or non-text answer {text!r}"
            )
        if str(text) in out:
            raise TaskError(
                f"{where(*keys, str(text))}: {key}: answer {str(text)!r} appears twice "
                "(YAML reads 1 and '1' as one text)"
            )
        out[str(text)] = _number(reward, where, *keys, str(text), name=f"{key}[{str(text)!r}]")
    return out


def _number(value: Any, where, *keys: str, name: str | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TaskError(
            f"{where(*keys)}: {name or '.'.join(keys)} must be a finite number, got {value!r}"
        )
    return float(value)


def spellings(text: str, tokenizer, max_tokens: int) -> int:
    """How many token sequences of at most `max_tokens` tokens spell `text` (canonical one included).

    Counts segmentations of `text` into the decoded strings of single non-special tokens, which
    is exact for byte-level BPE (a sequence decodes to the concatenation of its tokens). At
    alpha 0 a text-level reward pays every one of them, so the canonical sequence would get
    only 1/spellings of its answer's target mass.
    """
    special = set(tokenizer.all_special_ids)
    pieces: dict[str, int] = {}
    for i in range(len(tokenizer)):
        if i not in special:
            piece = tokenizer.decode([i])
            if piece and piece in text:
                pieces[piece] = pieces.get(piece, 0) + 1
    # ways[n][j]: sequences of n tokens spelling text[:j]
    ways = [[0] * (len(text) + 1) for _ in range(max_tokens + 1)]
    ways[0][0] = 1
    for n in range(max_tokens):
        for i, count in enumerate(ways[n]):
            if count:
                for j in range(i + 1, len(text) + 1):
                    ways[n + 1][j] += count * pieces.get(text[i:j], 0)
    return sum(ways[n][len(text)] for n in range(1, max_tokens + 1))
