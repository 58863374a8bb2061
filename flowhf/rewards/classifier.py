"""Classifier / reward-model reward: any `AutoModelForSequenceClassification`.

The model is a local folder, a Hub id, a ``.gguf`` file, or an already built model + tokenizer.
The reward is one output of the classification head, chosen by `label` (index or label name,
required when the model has several labels) and `output`:

- ``logit``:    the raw head output (reward models with one label: the scalar reward)
- ``prob``:     softmax probability of the label (sigmoid for multi-label models)
- ``log_prob``: its log
- ``auto``:     ``logit`` for one-label models, ``prob`` otherwise

What the model reads (`input_format`): ``concat`` = prompt + completion as one text (as TRL's
examples do), ``completion`` = the completion alone, ``pair`` = (prompt, completion) as a text pair
(cross-encoders), ``template`` = ``template.format(prompt=..., completion=...)``. A reward model
trained by `flowhf reward train` carries its template in ``flowhf_reward.json``; it is used
automatically (input_format=None means: the saved template if there is one, else ``concat``).
Chat templates are not applied; format the prompt beforehand if the RM needs one.

Prefix scoring has three routes (`prefix_mode`), see `flowhf.rewards.classifier_prefix`:
``one_pass`` (causal RMs: exact, one forward per batch), ``token_ids`` (one forward per prefix, fed
the policy's token ids), ``text`` (decode each prefix, re-tokenise it: the generic path).
``auto`` picks the first that applies.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, fields, replace
from typing import Any

import torch

from flowhf.rewards import classifier_prefix as cp
from flowhf.rewards.base import Reward, check_batch, score_prefixes_by_text

logger = logging.getLogger(__name__)

OUTPUTS = ("auto", "logit", "prob", "log_prob")
INPUT_FORMATS = ("concat", "completion", "pair", "template")
PREFIX_MODES = ("auto", "one_pass", "token_ids", "text")


def load_classifier(path: str, dtype: Any, trust_remote_code: bool) -> tuple[Any, Any]:
    """Load (model, tokenizer) from a folder, a Hub id or a .gguf file, with a clear error."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    source = path
    if path.endswith(".gguf"):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"classifier GGUF file not found: {path}")
        source, kwargs["gguf_file"] = os.path.split(os.path.abspath(path))
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        model = AutoModelForSequenceClassification.from_pretrained(source, dtype=dtype, **kwargs)
    except (OSError, ValueError) as exc:  # ValueError: not a valid Hub id either
        raise OSError(
            f"could not load the classifier '{path}': it is neither a local folder/.gguf file with a "
            f"config and weights nor reachable on the Hugging Face Hub "
            f"(HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', '0')}). Cause: {exc}"
        ) from exc
    return model, tokenizer


def resolve_label(config: Any, label: int | str | None) -> int:
    """Index of the head output to use, from an index, a label name, or None (one-label models)."""
    n = int(config.num_labels)
    names = {int(i): str(name) for i, name in (config.id2label or {}).items()}
    listing = ", ".join(f"{i}={names.get(i, '?')}" for i in range(n))
    if label is None:
        if n == 1:
            return 0
        raise ValueError(
            f"the classifier has {n} labels ({listing}); choose one with label=INDEX_OR_NAME "
            "(string spec: classifier:PATH#LABEL)"
        )
    if isinstance(label, str) and label.lstrip("-").isdigit():
        label = int(label)
    if isinstance(label, int):
        if not 0 <= label < n:
            raise ValueError(
                f"label index {label} is out of range for a classifier with labels {listing}"
            )
        return label
    for i, name in names.items():
        if name == label:
            return i
    for i, name in names.items():
        if name.casefold() == str(label).casefold():
            return i
    raise ValueError(f"unknown label {label!r}; the classifier's labels are {listing}")


@dataclass
class ClassifierOptions:
    """How a classifier's head output becomes the reward, and how the classifier is run (see the
    module docstring). ``max_length`` left at 512 takes a saved reward model's own."""

    label: int | str | None = None
    output: str = "auto"
    input_format: str | None = None
    template: str | None = None
    batch_size: int = 16
    max_length: int = 512
    device: str | torch.device | None = None
    dtype: Any = None
    trust_remote_code: bool = False
    prefix_mode: str = "auto"
    verify_one_pass: bool = True

    def resolved(self, meta: dict[str, Any]) -> ClassifierOptions:
        """These options with a saved reward model's ``meta`` (template, max length) filled in,
        checked."""
        template = self.template or meta.get("template")
        input_format = self.input_format
        if input_format is None:
            input_format = "template" if template else "concat"
        if input_format == "template" and (not template or not template.endswith("{completion}")):
            raise ValueError(
                "input_format='template' needs a template ending with '{completion}', "
                "e.g. 'Question: {prompt}\n\nAnswer: {completion}'"
            )
        max_length = self.max_length
        if meta.get("max_length") and max_length == 512:
            max_length = int(meta["max_length"])
        for value, allowed, key in (
            (self.output, OUTPUTS, "output"),
            (input_format, INPUT_FORMATS, "input_format"),
            (self.prefix_mode, PREFIX_MODES, "prefix_mode"),
        ):
            if value not in allowed:
                raise ValueError(f"classifier {key} must be one of {allowed}, got {value!r}")
        return replace(self, input_format=input_format, template=template, max_length=max_length)


_OPTION_NAMES = frozenset(f.name for f in fields(ClassifierOptions))


class ClassifierReward(Reward):
    """Sequence-classifier reward (see the module docstring for the options)."""

    def __init__(
        self,
        path: str | None = None,
        *,
        model: Any = None,
        tokenizer: Any = None,
        options: ClassifierOptions | None = None,
        **kwargs: Any,
    ) -> None:
        """``kwargs``: any `ClassifierOptions` field (over ``options``), then the `Reward` base's
        keywords (``name``, ``prefix_stride``, ...)."""
        picked = {key: kwargs.pop(key) for key in list(kwargs) if key in _OPTION_NAMES}
        meta = _saved_meta(path)
        opts = replace(options or ClassifierOptions(), **picked).resolved(meta)
        if (path is None) == (model is None):
            raise ValueError(
                "pass either path= (folder, Hub id or .gguf file) or model= and tokenizer="
            )
        if model is not None and tokenizer is None:
            raise ValueError("a prebuilt classifier model needs its tokenizer= too")
        device = opts.device
        if path is not None:
            model, tokenizer = load_classifier(path, _dtype(opts.dtype), opts.trust_remote_code)
            device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        kwargs.setdefault("name", f"classifier:{path or type(model).__name__}")
        super().__init__(**kwargs)
        if device is not None:
            model = model.to(device)
        self.model, self.tokenizer = model.eval(), tokenizer
        self._set_options(opts, meta)

    def _set_options(self, opts: ClassifierOptions, meta: dict[str, Any]) -> None:
        """The scoring attributes the rest of the class reads."""
        config = self.model.config
        self.label_index = resolve_label(config, opts.label)
        self.output = (
            opts.output
            if opts.output != "auto"
            else ("logit" if config.num_labels == 1 else "prob")
        )
        self.input_format, self.template = opts.input_format, opts.template
        if meta.get("truncation_side"):
            self.tokenizer.truncation_side = meta["truncation_side"]  # as at training time
        self.batch_size, self.max_length = opts.batch_size, opts.max_length
        self.prefix_mode, self.verify_one_pass = opts.prefix_mode, opts.verify_one_pass
        self.pad_id = self._ensure_pad_token()
        self._vocab_match: dict[int, bool] = {}
        self._one_pass_verified = False
        self._one_pass_problem: str | None = None  # set if verification finds a mismatch

    # -- setup ------------------------------------------------------------------------------

    def _ensure_pad_token(self) -> int:
        """Give the tokenizer and model config a pad token (batching needs one); return its id.

        Causal classifiers read the score at the rightmost token that is not the pad id, so the
        padding we add must use the MODEL's pad id.
        """
        tok, cfg = self.tokenizer, self.model.config
        from flowhf.models.loading import prepare_tokenizer  # (rewards import no peft at load)

        prepare_tokenizer(tok, None, f"reward '{self.name}': the tokenizer")
        if getattr(cfg, "pad_token_id", None) is None:
            logger.warning(
                "reward '%s': model config has no pad_token_id; using the tokenizer's (%s)",
                self.name,
                tok.pad_token_id,
            )
            cfg.pad_token_id = tok.pad_token_id
        return int(cfg.pad_token_id)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # -- scoring ----------------------------------------------------------------------------

    def select(self, logits: torch.Tensor) -> torch.Tensor:
        """Reduce head outputs [..., num_labels] to the reward [...] (label + output kind)."""
        logits = logits.float()
        multi_label = (
            getattr(self.model.config, "problem_type", None) == "multi_label_classification"
        )
        if self.output == "prob":
            probs = logits.sigmoid() if multi_label else logits.softmax(-1)
            return probs[..., self.label_index]
        if self.output == "log_prob":
            logp = torch.nn.functional.logsigmoid(logits) if multi_label else logits.log_softmax(-1)
            return logp[..., self.label_index]
        return logits[..., self.label_index]

    def score(self, prompts: list[str], completions: list[str], **columns: Any) -> torch.Tensor:
        """Text path: the RM tokenizes the texts itself (right-truncated to max_length)."""
        if not completions:
            return torch.zeros(0)
        if self.input_format == "pair":
            enc = self.tokenizer(
                list(prompts), list(completions), truncation=True, max_length=self.max_length
            )
        else:
            texts = [self.format_text(p, c) for p, c in zip(prompts, completions)]
            enc = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)
        features = [
            {k: enc[k][i] for k in ("input_ids", "token_type_ids") if k in enc}
            for i in range(len(prompts))
        ]
        return self._forward_features(features)

    def format_text(self, prompt: str, completion: str) -> str:
        """The text the model reads for one (prompt, completion) in the concat/completion/template formats."""
        if self.input_format == "completion":
            return completion
        if self.input_format == "template":
            return self.template.format(prompt=prompt, completion=completion)
        return prompt + completion

    def score_token_ids(self, sequences: list[list[int]]) -> torch.Tensor:
        """Reward of each token-id sequence exactly as given (right-truncated to max_length).

        Unlike `__call__`, nothing is re-tokenised: these are the ids the RM sees. Re-tokenising a
        decoded prefix can merge tokens across the cut (or across prompt | completion), so the text
        path and this path can legitimately differ on the same prefix.
        """
        return self._forward_features([{"input_ids": [int(i) for i in s]} for s in sequences])

    def _forward_features(self, features: list[dict[str, list[int]]]) -> torch.Tensor:
        """Run the model's own forward on right-padded, length-sorted batches; [N] float32 on CPU."""
        out = torch.empty(len(features), dtype=torch.float32)
        order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            batch = cp.collate(
                [features[i] for i in idx], self.pad_id, self.max_length, self.device
            )
            with torch.inference_mode():
                logits = self.model(**batch).logits
            out[idx] = self.select(logits).float().cpu()
        return out

    # -- prefixes ---------------------------------------------------------------------------

    def score_prefixes(
        self, prompts: list[str], completion_ids: list[list[int]], tokenizer: Any, **columns: Any
    ) -> torch.Tensor:
        """Prefix rewards through the first route that applies (see `prefix_route`)."""
        check_batch(prompts, completion_ids, columns, self.name)
        route, reason = self.prefix_route(tokenizer)
        if route == "one_pass":
            return self.score_prefixes_one_pass(prompts, completion_ids)
        if route == "token_ids":
            return self.score_prefixes_token_ids(prompts, completion_ids)
        logger.info("reward '%s': scoring prefixes as re-tokenised text (%s)", self.name, reason)
        return score_prefixes_by_text(self, prompts, completion_ids, tokenizer, columns)

    def prefix_route(self, policy_tokenizer: Any) -> tuple[str, str]:
        """(route, why): the prefix route for this policy tokenizer, honouring `prefix_mode`."""
        blockers = {
            "token_ids": cp.token_route_blocker(self, policy_tokenizer),
        }
        blockers["one_pass"] = blockers["token_ids"] or cp.one_pass_blocker(self)
        if self.prefix_mode != "auto":
            why = blockers.get(self.prefix_mode)
            if why:
                raise ValueError(
                    f"reward '{self.name}': prefix_mode={self.prefix_mode!r} is not possible: {why}"
                )
            return self.prefix_mode, "requested"
        for route in ("one_pass", "token_ids"):
            if not blockers[route]:
                return route, "auto"
        return "text", blockers["token_ids"]

    def context_ids(self, prompts: list[str]) -> list[list[int]]:
        """RM token ids placed before the completion: leading special tokens (+ prompt for concat)."""
        prefix, _ = cp.special_affixes(self.tokenizer)
        if self.input_format == "completion":
            return [list(prefix) for _ in prompts]
        contexts = [self.format_text(p, "") for p in prompts]  # everything before the completion
        enc = self.tokenizer(contexts, add_special_tokens=False)["input_ids"]
        return [list(prefix) + list(ids) for ids in enc]

    def score_prefixes_token_ids(
        self, prompts: list[str], completion_ids: list[list[int]]
    ) -> torch.Tensor:
        """One model call per prefix (batched), fed context ids + the policy's completion ids."""
        return cp.per_prefix_token_scores(self, self.context_ids(prompts), completion_ids)

    def score_prefixes_one_pass(
        self, prompts: list[str], completion_ids: list[list[int]]
    ) -> torch.Tensor:
        """Every prefix reward from ONE forward per batch (causal RMs; exact, see classifier_prefix)."""
        contexts = self.context_ids(prompts)
        values = cp.one_pass_prefix_scores(self, contexts, completion_ids)
        if self.verify_one_pass and not self._one_pass_verified:
            problem = cp.verify_one_pass(self, contexts, completion_ids, values)
            if problem:
                self._one_pass_problem = problem
                if self.prefix_mode == "one_pass":
                    raise RuntimeError(
                        f"reward '{self.name}': {problem}; use prefix_mode='token_ids'"
                    )
                logger.warning(
                    "reward '%s': %s; using per-prefix scoring instead", self.name, problem
                )
                return self.score_prefixes_token_ids(prompts, completion_ids)
            self._one_pass_verified = True
        return values


def _saved_meta(path: str | None) -> dict:
    """The scoring contract saved beside a FlowHF-trained reward model ({} if none)."""
    from pathlib import Path

    from flowhf.config.reward_model import REWARD_META_FILE, read_reward_meta

    if path is None or not (Path(path) / REWARD_META_FILE).is_file():
        return {}
    return read_reward_meta(path)


def _dtype(dtype: Any) -> Any:
    """torch dtype from a name ('bfloat16'), a dtype, or None (float32: exact, CPU-friendly)."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, str) and dtype != "auto":
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ValueError(
                f"unknown dtype {dtype!r}; use e.g. float32, bfloat16, float16 or auto"
            )
        return getattr(torch, dtype)
    return dtype
