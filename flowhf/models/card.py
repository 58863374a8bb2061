"""The model card of a saved run: the README.md a Hugging Face Hub page shows.

Every folder `flowhf.models.saved_run.save_policy` writes gets one (it replaces the README.md
PEFT writes in ``save_pretrained``). The front matter is huggingface_hub's ``ModelCardData``
and the card is rendered by ``ModelCard.from_template``, so the file is what the Hub parses.
Nothing is uploaded.

``base_model`` is a Hub id, never a local path: a shipped alias maps to its Hub id
(``smollm2`` -> HuggingFaceTB/SmolLM2-135M-Instruct); a local folder is asked what it records
(a FlowHF run's source, a model card's base_model, an adapter's base, ``config.json``'s
``_name_or_path``); where nothing names a Hub id, base_model is left out and the body says so.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData
from huggingface_hub.utils import HFValidationError, validate_repo_id

from flowhf.models.loading import default_model_path

CARD_FILE = "README.md"
# Shipped model names -> their Hub id (None: a model that exists on no Hub page).
SHIPPED_BASE_MODELS = {
    "smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "default": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "tiny-random": None,
}
BUDGET_KEYS = ("max_steps", "num_train_epochs", "max_seconds", "max_completions")
_MAX_DEPTH = 3  # folders followed from one to the folder it was trained from

_TEMPLATE = """---
{{ card_data }}
---

# {{ title }}

A policy fine-tuned with FlowHF (GFlowNet fine-tuning of a
causal LM toward the target distribution below; {{ kind }}).

## Base model

{{ base_line }}

## Objective and target

- objective: `{{ objective }}`
- target: log R(y|x) = beta * r(x, y) + alpha * log p_ref(y|x), with beta = {{ beta }} and
  alpha = {{ alpha }}
- reward: `{{ reward }}`
{%- if dataset %}
- training prompts: `{{ dataset }}`
{%- endif %}

## Budget

{{ budget }}

## Final training metrics

{{ metrics }}

## How to load

With FlowHF (the policy, its tokenizer and the GFlowNet heads):

```python
from flowhf.models import load_trained

trained = load_trained("{{ folder }}")
model, tokenizer = trained.model, trained.tokenizer
```

{% if lora -%}
With PEFT alone (this folder is a LoRA adapter{% if base_model %} on `{{ base_model }}`{% endif %}):

```python
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

base = AutoModelForCausalLM.from_pretrained("{{ base_model or 'BASE_MODEL' }}")
model = PeftModel.from_pretrained(base, "{{ folder }}")
tokenizer = AutoTokenizer.from_pretrained("{{ folder }}")
```
{%- else -%}
With transformers alone (this folder is a full model):

```python
from transformers import AutoModelForCausalLM, AutoTokenizer

model = AutoModelForCausalLM.from_pretrained("{{ folder }}")
tokenizer = AutoTokenizer.from_pretrained("{{ folder }}")
```
{%- endif %}

Measure its diversity beside other models with `flowhf eval --model {{ folder }} ...`.
"""


@dataclass
class RunSummary:
    """What a card says beyond the saved meta: the last logged metrics and the reward's name
    (when the reward was passed as functions, not as a config spec)."""

    metrics: dict = field(default_factory=dict)
    reward: str | None = None


def hub_base_model(source: str | os.PathLike | None, depth: int = 0) -> str | None:
    """The Hub id ``source`` (a model spec or folder) stands for, or None: never a local path."""
    if not source:
        return None
    spec = os.fspath(source).strip()
    if spec.lower() in SHIPPED_BASE_MODELS:
        return SHIPPED_BASE_MODELS[spec.lower()]
    path = Path(spec).expanduser()
    if path.is_dir():
        if _is_default_folder(path):
            return SHIPPED_BASE_MODELS["smollm2"]
        return _recorded_base(path, depth) if depth < _MAX_DEPTH else None
    return spec if _is_hub_id(spec) and not path.exists() else None


def _is_default_folder(path: Path) -> bool:
    """Whether ``path`` is the converted default model (SmolLM2), in the default cache."""
    return path.resolve() == default_model_path().resolve()


def _is_hub_id(spec: str) -> bool:
    if spec.lower().endswith(".gguf"):
        return False
    try:
        validate_repo_id(spec)
    except HFValidationError:
        return False
    return True


def _recorded_base(folder: Path, depth: int) -> str | None:
    """The first Hub id among the names a model folder records of where it came from."""
    for candidate in _recorded_names(folder):
        found = hub_base_model(candidate, depth + 1)
        if found:
            return found
    return None


def _recorded_names(folder: Path) -> list[str]:
    """Names a folder records: FlowHF's source, a card's base_model, an adapter's base, the config's
    ``_name_or_path`` (unreadable files are skipped)."""
    names: list = []
    for file, read in (
        ("flowhf_heads.json", lambda d: d.get("meta", {}).get("source")),
        ("adapter_config.json", lambda d: d.get("base_model_name_or_path")),
        ("config.json", lambda d: d.get("_name_or_path")),
    ):
        try:
            names.append(read(json.loads((folder / file).read_text())))
        except (OSError, ValueError, AttributeError):
            continue
    if (folder / CARD_FILE).is_file():
        try:
            base = ModelCard.load(folder / CARD_FILE).data.base_model
        except Exception:  # any card the Hub library cannot read: nothing recorded
            base = None
        names.insert(1, base[0] if isinstance(base, list) and base else base)
    return [str(n) for n in names if isinstance(n, str) and n]


def hub_dataset(spec: str | None) -> str | None:
    """The Hub dataset id of a ``data.dataset`` spec (``hf:NAME[:CONFIG]``), else None."""
    if not isinstance(spec, str) or not spec.startswith("hf:"):
        return None
    name = spec[3:].split(":", 1)[0]
    return name if _is_hub_id(name) else None


def build_model_card(folder: str | os.PathLike, meta: dict, summary: RunSummary | None = None):
    """The ``ModelCard`` of the run saved in ``folder`` (``meta``: save_policy's, with the
    objective, the config, the source spec and whether it is an adapter)."""
    summary = summary or RunSummary()
    config = meta.get("config") or {}
    target = config.get("target", {})
    objective = meta.get("objective") or config.get("objective", {}).get("objective", "unknown")
    base = hub_base_model(meta.get("source") or meta.get("base_model"))
    dataset = config.get("data", {}).get("dataset")
    lora = bool(meta.get("lora"))
    data = ModelCardData(
        base_model=base,
        library_name="peft" if lora else "transformers",
        tags=["flowhf", "gflownet", objective] + (["lora"] if lora else []),
        pipeline_tag="text-generation",
        datasets=[hub_dataset(dataset)] if hub_dataset(dataset) else None,
    )
    reward = target.get("reward") if isinstance(target.get("reward"), str) else None
    return ModelCard.from_template(
        data,
        template_str=_TEMPLATE,
        title=f"{Path(folder).resolve().name} ({objective}, FlowHF)",
        kind="a LoRA adapter" if lora else "a full model",
        base_line=_base_line(base),
        objective=objective,
        beta=target.get("beta", "?"),
        alpha=target.get("alpha", "?"),
        reward=reward or summary.reward or "not recorded",
        dataset=dataset if isinstance(dataset, str) else None,
        budget=_budget(config.get("optim", {}), summary.metrics),
        metrics=_metrics_table(summary.metrics),
        folder=Path(folder).resolve().name,
        lora=lora,
    )


def write_model_card(
    folder: str | os.PathLike,
    meta: dict,
    summary: RunSummary | None = None,
    into: str | os.PathLike | None = None,
) -> Path:
    """Write the card of ``folder`` as ``README.md`` (replacing PEFT's default card) in ``into``
    (default: ``folder``; save_policy writes into a temporary folder renamed to ``folder``)."""
    path = Path(into if into is not None else folder) / CARD_FILE
    build_model_card(folder, meta, summary).save(path)
    return path


def _base_line(base: str | None) -> str:
    if base:
        return f"[`{base}`](https://huggingface.co/{base})"
    return (
        "Not recorded: the run started from a local or in-memory model that names no Hugging "
        "Face Hub id, so `base_model` is left out of the metadata."
    )


def _budget(optim: dict, metrics: dict) -> str:
    lines = [f"- {key}: {optim[key]}" for key in BUDGET_KEYS if optim.get(key) is not None]
    if "step" in metrics:
        lines.append(f"- steps run: {metrics['step']}")
    return "\n".join(lines) or "- not recorded"


def _metrics_table(metrics: dict) -> str:
    """The last logged row as a Markdown table (``train/...`` keys; non-finite shown as such)."""
    nonfinite = metrics.get("nonfinite") or {}
    rows = []
    for key, value in metrics.items():
        if not key.startswith("train/"):
            continue
        if key in nonfinite:
            value = nonfinite[key]
        elif isinstance(value, float) and math.isfinite(value):
            value = f"{value:.4g}"
        elif not isinstance(value, int):
            continue
        rows.append(f"| `{key}` | {value} |")
    if not rows:
        return "None logged."
    step = f"At step {metrics['step']}:\n\n" if "step" in metrics else ""
    return step + "| metric | value |\n| --- | --- |\n" + "\n".join(rows)
