"""Bradley-Terry reward-model training: ``flowhf reward train --config FILE [--set k=v]``.

A reward model r(x, y) is a sequence classifier with one output read at the last token of
``format_for_reward(x, y)``. Training minimises ``-log sigmoid(r(x, chosen) - r(x, rejected))``
over preference pairs and reports held-out pairwise accuracy.

Why a hand-written loop rather than TRL's ``RewardTrainer``: TRL appends EOS (which equals
the pad token for SmolLM2, so the head would read the token before it) and silently drops
pairs longer than ``max_length``; FlowHF never drops rows and must score exactly the text it
trained on. The loop also lets ``head_only`` run the frozen backbone once and fit the head on
cached features, turning CPU minutes per epoch into milliseconds. The saved folder is a plain
``AutoModelForSequenceClassification`` (LoRA merged in) that TRL and FlowHF both load;
``flowhf_reward.json`` beside it records the text template and truncation.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import json
import logging
import os
import random
import shutil
import sys
import time
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

from flowhf.data.loading import load_preference_pairs

logger = logging.getLogger(__name__)
REWARD_TEMPLATE = "Question: {prompt}\n\nAnswer: {completion}"
REWARD_META_FILE = "flowhf_reward.json"
DEFAULT_RM_FOLDER = "rm-stackexchange-smollm2"
MODES = ("lora", "head_only", "full")
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def format_for_reward(prompt: str, completion: str, template: str = REWARD_TEMPLATE) -> str:
    """The text a reward model sees; training and scoring must both use this."""
    return template.format(prompt=prompt, completion=completion)


def _opt(default, help_text: str):
    """A dataclass field with its help string (listed by `flowhf reward train --help`)."""
    return field(default=default, metadata={"help": help_text})


@dataclass
class RewardModelConfig:
    """Everything `train_reward_model` needs; loadable from YAML (`load_reward_config`)."""

    model: str = _opt(
        "smollm2", "Backbone: 'smollm2' (shipped default), Hub id, local folder or GGUF file.")
    train_data: str = _opt(
        "stackexchange:train", "Training pairs: shipped name, local file or 'hf:NAME' (see flowhf.data).")
    test_data: str | None = _opt(
        "stackexchange:test", "Held-out pairs for pairwise accuracy; null to skip evaluation.")
    data_split: str | None = _opt(
        None, "Split for train_data when it is a `datasets` spec (test_data then uses 'test').")
    columns: dict[str, str] | None = _opt(
        None, "Map our names prompt/chosen/rejected to your columns, e.g. {prompt: question}.")
    max_train_pairs: int | None = _opt(
        None, "Use only the first N training pairs (null = all).")
    mode: str = _opt(
        "lora", "What trains: 'lora' (adapters + head), 'head_only' (frozen backbone, linear head), 'full'.")
    lora_r: int = _opt(
        16, "LoRA rank (mode=lora).")
    lora_alpha: float = _opt(
        32.0, "LoRA scale numerator; updates are scaled by alpha / r.")
    lora_layers: int | None = _opt(
        None, "Put LoRA only on the top N decoder layers (cheaper backward); null = all layers.")
    learning_rate: float = _opt(
        2e-4, "AdamW learning rate (linear decay after 10% warm-up).")
    weight_decay: float = _opt(
        0.0, "AdamW weight decay.")
    epochs: int = _opt(
        2, "Passes over the training pairs (head_only passes are nearly free).")
    batch_size: int = _opt(
        8, "Pairs per optimisation step (2x sequences per forward).")
    max_length: int = _opt(
        256, "Token limit per formatted text; longer texts lose their START (the answer end is kept).")
    bf16: bool = _opt(
        True, "bfloat16 autocast for the backbone on CPU (faster with avx512_bf16); weights stay float32.")
    seed: int = _opt(
        0, "Seed for head init, shuffling and LoRA init.")
    output_dir: str = _opt(
        "outputs/reward_model", "Folder for the merged model, tokenizer, metrics.json and flowhf_reward.json.")
    template: str = _opt(
        REWARD_TEMPLATE, "Text template with {prompt} and {completion}; stored with the model for scoring.")
    log_every: int = _opt(
        10, "Log loss/accuracy every N steps.")

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        for name in ("lora_r", "epochs", "batch_size", "max_length", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("max_train_pairs", "lora_layers"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 or null, got {getattr(self, name)!r}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        try:
            format_for_reward("p", "c", self.template)
        except (KeyError, IndexError, ValueError) as err:
            raise ValueError(f"template must use only {{prompt}} and {{completion}} (double other braces): {err}") from None


def load_reward_config(path: str | os.PathLike | None = None, overrides: list[str] = ()) -> RewardModelConfig:
    """Read a YAML file (flat keys) and apply ``key=value`` overrides (values parsed as YAML)."""
    data: dict = {}
    if path is not None:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item!r}: expected key=value, e.g. --set epochs=3")
        data[key.strip()] = yaml.safe_load(value)
    hints = typing.get_type_hints(RewardModelConfig)
    for key, value in data.items():
        if key not in hints:
            close = difflib.get_close_matches(key, hints, n=1)
            raise ValueError(f"{path or '--set'}: unknown key {key!r}" + (f"; did you mean {close[0]!r}?" if close else f"; valid keys: {sorted(hints)}"))
        data[key] = _coerce(key, value, hints[key])
    return RewardModelConfig(**data)


def _coerce(key: str, value, hint):
    """Type-check a YAML value against the field's annotation (ints accepted for floats)."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    allowed = typing.get_args(hint) if union else (hint,)
    for kind in allowed:
        base = typing.get_origin(kind) or kind
        if value is None and kind is type(None):
            return None
        if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if base in (int, str, bool, dict, list) and isinstance(value, base) and not (base is int and isinstance(value, bool)):
            return value
    expected = getattr(hint, "__name__", str(hint))
    raise ValueError(f"config key {key!r}: expected {expected}, got {value!r} ({type(value).__name__})")


def train_reward_model(config: RewardModelConfig) -> dict:
    """Train, evaluate and save a reward model; returns the metrics also written to metrics.json."""
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    test_split = "test" if config.data_split else None
    train_pairs = load_preference_pairs(config.train_data, columns=config.columns, split=config.data_split, limit=config.max_train_pairs)
    test_pairs = load_preference_pairs(config.test_data, columns=config.columns, split=test_split) if config.test_data else []
    model, tokenizer = _load_backbone(config)
    started = time.perf_counter()
    train_ids = _tokenize_pairs(tokenizer, train_pairs, config)
    if config.mode == "head_only":
        stats = _train_head(model, train_ids, config)
    else:
        model = _prepare_trainable(model, config)
        stats = _train_model(model, train_ids, config)
        model = model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
    train_time = time.perf_counter() - started
    metrics = {"train/n_pairs": len(train_pairs), "train/time_s": round(train_time, 1), **stats,
               "mode": config.mode, "model": config.model}
    if test_pairs:
        started = time.perf_counter()
        chosen, rejected = _score_pairs(model, _tokenize_pairs(tokenizer, test_pairs, config), config)
        metrics.update({"eval/accuracy": (chosen > rejected).float().mean().item(),
                        "eval/margin": (chosen - rejected).mean().item(), "eval/n_pairs": len(test_pairs),
                        "eval/time_s": round(time.perf_counter() - started, 1)})
    _save(model, tokenizer, config, metrics)
    logger.info("reward model saved to %s: %s", config.output_dir, metrics)
    return metrics


def _load_backbone(config: RewardModelConfig):
    """Sequence-classification model (1 output) and tokenizer, pad token set for pooling."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = config.model
    if not Path(path).is_dir():
        from flowhf.models.loading import resolve_model_path

        path = resolve_model_path(config.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:  # the head finds the last token as the rightmost non-pad id
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side, tokenizer.truncation_side = "right", "left"
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch.float32)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def _tokenize_pairs(tokenizer, pairs: list[dict], config: RewardModelConfig) -> list[tuple[list[int], list[int]]]:
    def encode(prompt: str, completion: str) -> list[int]:
        text = format_for_reward(prompt, completion, config.template)
        return tokenizer(text, truncation=True, max_length=config.max_length)["input_ids"]

    return [(encode(p["prompt"], p["chosen"]), encode(p["prompt"], p["rejected"])) for p in pairs]


def _prepare_trainable(model, config: RewardModelConfig):
    """Freeze/adapt parameters for the mode; the score head always trains."""
    if config.mode == "full":
        return model
    from peft import LoraConfig, get_peft_model

    layers = None
    if config.lora_layers is not None:
        total = model.config.num_hidden_layers
        layers = list(range(max(0, total - config.lora_layers), total))
    lora = LoraConfig(task_type="SEQ_CLS", r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=0.0,
                      target_modules=LORA_TARGETS, layers_to_transform=layers)
    return get_peft_model(model, lora)


def _batches(n: int, batch_size: int, rng: random.Random | None, ids: list | None) -> list[list[int]]:
    """Index batches, shuffled when ``rng`` is given. With ``ids`` they are grouped by length
    (less padding): all sorted for scoring, sorted within random chunks for training."""
    order = list(range(n))
    if rng is not None:
        rng.shuffle(order)
    if ids is not None:
        span = n if rng is None else batch_size * 8
        order = [i for s in range(0, n, span) for i in sorted(order[s:s + span], key=lambda i: len(ids[i][0] + ids[i][1]))]
    batches = [order[k:k + batch_size] for k in range(0, n, batch_size)]
    if rng is not None:
        rng.shuffle(batches)
    return batches


def _collate(pairs: list[tuple[list[int], list[int]]], pad_id: int):
    """Right-padded [chosen..., rejected...] input ids and attention mask."""
    seqs = [c for c, _ in pairs] + [r for _, r in pairs]
    width = max(map(len, seqs))
    input_ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    for row, seq in enumerate(seqs):
        input_ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    return input_ids, mask


def _autocast(enabled: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


def _rewards(model, input_ids, mask, bf16: bool) -> torch.Tensor:
    with _autocast(bf16):
        return model(input_ids=input_ids, attention_mask=mask).logits[:, 0].float()


def _fit(params, n_pairs: int, pair_rewards, config: RewardModelConfig, ids: list | None = None) -> dict:
    """Mini-batch Bradley-Terry training: ``pair_rewards(batch) -> (r_chosen, r_rejected)``."""
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    rng = random.Random(config.seed)
    total = -(-n_pairs // config.batch_size) * config.epochs
    warmup = max(1, total // 10)  # linear warm-up, then linear decay to 0
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup))))
    step, started = 0, time.perf_counter()
    for epoch in range(config.epochs):
        losses, accs = [], []
        for batch in _batches(n_pairs, config.batch_size, rng, ids):
            chosen, rejected = pair_rewards(batch)
            loss = -F.logsigmoid(chosen - rejected).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            accs.append((chosen > rejected).float().mean().item())
            step += 1
            if step % config.log_every == 0:
                logger.info("%s epoch %d step %d/%d loss %.4f acc %.3f (%.0fs)", config.mode, epoch + 1, step,
                            total, losses[-1], accs[-1], time.perf_counter() - started)
    return {"train/loss": sum(losses) / len(losses), "train/accuracy": sum(accs) / len(accs)}


def _train_model(model, train_ids: list, config: RewardModelConfig) -> dict:
    """lora / full: BT training of every parameter that requires grad (LoRA + head, or all)."""
    def pair_rewards(batch):
        input_ids, mask = _collate([train_ids[i] for i in batch], model.config.pad_token_id)
        return _rewards(model, input_ids, mask, config.bf16).chunk(2)

    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    stats = _fit(params, len(train_ids), pair_rewards, config, train_ids)
    model.eval()
    return stats


@torch.no_grad()
def _last_token_features(model, ids: list, config: RewardModelConfig) -> torch.Tensor:
    """Backbone state at the token the head reads, for every sequence: [N, 2, hidden]."""
    model.eval()
    backbone, pad_id = getattr(model, model.base_model_prefix), model.config.pad_token_id
    features = torch.empty(len(ids), 2, model.config.hidden_size)
    for done, batch in enumerate(_batches(len(ids), config.batch_size, None, ids), start=1):
        input_ids, mask = _collate([ids[i] for i in batch], pad_id)
        with _autocast(config.bf16):
            hidden = backbone(input_ids=input_ids, attention_mask=mask).last_hidden_state.float()
        # same rule as the model's own pooling: the rightmost token that is not the pad id
        positions = torch.arange(input_ids.shape[1])
        last = (positions * (input_ids != pad_id)).argmax(-1)
        pooled = hidden[torch.arange(len(last)), last]
        features[batch] = torch.stack(pooled.chunk(2), dim=1)
        if done % config.log_every == 0:
            logger.info("features: %d/%d pairs", min(done * config.batch_size, len(ids)), len(ids))
    return features


def _train_head(model, train_ids: list, config: RewardModelConfig) -> dict:
    """head_only: one frozen-backbone pass, then BT epochs of the linear head on cached features."""
    features = _last_token_features(model, train_ids, config)

    def pair_rewards(batch):
        return model.score(features[batch]).squeeze(-1).unbind(1)

    return _fit(list(model.score.parameters()), len(train_ids), pair_rewards, config)


@torch.no_grad()
def _score_pairs(model, ids: list, config: RewardModelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Rewards of every chosen and rejected text, in input order."""
    model.eval()
    chosen, rejected = torch.empty(len(ids)), torch.empty(len(ids))
    for batch in _batches(len(ids), config.batch_size, None, ids):
        input_ids, mask = _collate([ids[i] for i in batch], model.config.pad_token_id)
        chosen[batch], rejected[batch] = _rewards(model, input_ids, mask, config.bf16).chunk(2)
    return chosen, rejected


def _save(model, tokenizer, config: RewardModelConfig, metrics: dict) -> None:
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    (out / "reward_config.yaml").write_text(yaml.safe_dump(dataclasses.asdict(config), sort_keys=False), encoding="utf-8")
    meta = {"format": "flowhf-reward/1", "template": config.template, "max_length": config.max_length,
            "truncation_side": "left", "bf16": config.bf16, "base_model": config.model, "mode": config.mode}
    (out / REWARD_META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")  # last: marks complete


def read_reward_meta(path: str | os.PathLike) -> dict:
    """The scoring contract saved with a model: template, max_length, truncation side, bf16."""
    meta_path = Path(path) / REWARD_META_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} not found: {path} is not a FlowHF-trained reward model folder")
    return json.loads(meta_path.read_text(encoding="utf-8"))


def default_reward_model_dir() -> Path:
    """The default StackExchange reward model, trained on first use and cached.

    Cache: ``$FLOWHF_CACHE_DIR`` else ``~/.cache/flowhf``, folder ``rm-stackexchange-smollm2``.
    Training writes into a temporary folder renamed into place, so a killed run never
    leaves a half model that later calls would trust.
    """
    root = Path(os.environ.get("FLOWHF_CACHE_DIR") or Path.home() / ".cache" / "flowhf")
    target = root / DEFAULT_RM_FOLDER
    if (target / REWARD_META_FILE).is_file():
        return target
    partial = root / f".{DEFAULT_RM_FOLDER}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    logger.warning("training the default reward model into %s (first use only; several CPU minutes)", target)
    train_reward_model(RewardModelConfig(output_dir=str(partial)))
    try:
        shutil.rmtree(target, ignore_errors=True)  # an incomplete folder without the meta file
        os.replace(partial, target)
    except OSError:  # another process finished first; its folder is as good as ours
        shutil.rmtree(partial, ignore_errors=True)
    return target


def _add_train_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML file of RewardModelConfig keys (e.g. configs/reward_model.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key (repeatable)")
    parser.epilog = "config keys:\n" + "\n".join(
        f"  {f.name} (default {f.default!r}): {f.metadata['help']}" for f in dataclasses.fields(RewardModelConfig))
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.set_defaults(func=run_reward_train)


def add_reward_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``reward train`` on the ``flowhf`` CLI; ``args.func(args)`` returns the exit code."""
    reward = subparsers.add_parser("reward", help="reward-model tools")
    commands = reward.add_subparsers(dest="reward_command", required=True)
    _add_train_args(commands.add_parser("train", help="train a Bradley-Terry reward model on preference pairs"))
    return reward


def run_reward_train(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        metrics = train_reward_model(load_reward_config(args.config, args.set))
    except (ValueError, FileNotFoundError) as err:  # DataError is a ValueError
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(metrics, indent=2))
    return 0


def train_reward_cli(argv: list[str] | None = None) -> int:
    """``flowhf reward train`` as a function: ``argv`` is what follows ``train``."""
    parser = argparse.ArgumentParser(prog="flowhf reward train", description="Train a Bradley-Terry reward model.")
    _add_train_args(parser)
    return run_reward_train(parser.parse_args(argv))
