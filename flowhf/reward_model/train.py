"""Bradley-Terry reward-model training (``flowhf reward train``, flags in `flowhf.cli.reward`).

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

import contextlib
import dataclasses
import json
import logging
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

from flowhf.config.reward_model import (
    DEFAULT_RM_FOLDER,
    LORA_TARGETS,
    REWARD_META_FILE,
    RewardModelConfig,
    format_for_reward,
)
from flowhf.data.loading import load_preference_pairs
from flowhf.io import atomic_files
from flowhf.models.modes import eval_mode

logger = logging.getLogger(__name__)


class FeatureCache:
    """head_only: frozen-backbone features by token ids, shared by reward models on one backbone
    (the proxy and gold of `flowhf reproduce` embed their common texts once)."""

    def __init__(self) -> None:
        self.backbone: tuple | None = None
        self.store: dict[tuple, torch.Tensor] = {}

    def features(self, model, ids: list, config: RewardModelConfig) -> torch.Tensor:
        """[N, 2, hidden] features of every (chosen, rejected) pair of ``ids``."""
        backbone = (config.model, config.bf16)
        if self.backbone not in (None, backbone):
            raise ValueError(
                f"a FeatureCache holds features of {self.backbone}, not {backbone}: use one per backbone"
            )
        self.backbone = backbone
        missing = list(
            dict.fromkeys(tuple(s) for pair in ids for s in pair if tuple(s) not in self.store)
        )
        if missing:
            self.store.update(
                zip(
                    missing,
                    _score_seqs(model, [list(s) for s in missing], config, _last_token_state),
                )
            )
        return torch.stack([torch.stack([self.store[tuple(s)] for s in pair]) for pair in ids])


def train_reward_model(config: RewardModelConfig, features: FeatureCache | None = None) -> dict:
    """Train, evaluate and save a reward model; returns the metrics also written to metrics.json.
    ``features``: a cache of backbone features shared with other head_only models (same backbone)."""
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    train_pairs, test_pairs = _load_pairs(config)
    model, tokenizer = _load_backbone(config)
    started = time.perf_counter()
    train_ids = _tokenize_pairs(tokenizer, train_pairs, config)
    features = features if features is not None else FeatureCache()
    if config.mode == "head_only":
        stats, train_scores = _train_head(
            model, features.features(model, train_ids, config), train_ids, config
        )
    else:
        model = _prepare_trainable(model, config)
        stats = _train_model(model, train_ids, config)
        model = model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
        train_scores = _score_texts(model, train_ids, config)
    # Scale of the reward on the TRAINING answers (chosen and rejected): a GFlowNet target's beta
    # is only meaningful relative to it (`flowhf reproduce` sets beta = config beta / score_std).
    stats = {
        **stats,
        "train/score_mean": train_scores.mean().item(),
        "train/score_std": train_scores.std().item(),
    }
    metrics = {
        "train/n_pairs": len(train_pairs),
        "train/time_s": round(time.perf_counter() - started, 1),
        **stats,
        "mode": config.mode,
        "model": config.model,
    }
    if test_pairs:
        metrics.update(_evaluate(model, tokenizer, test_pairs, features, config))
    _save(model, tokenizer, config, metrics)
    logger.info("reward model saved to %s: %s", config.output_dir, metrics)
    return metrics


def _load_pairs(config: RewardModelConfig) -> tuple[list[dict], list[dict]]:
    """(training pairs, held-out pairs), the extra ones appended to each."""
    cols = config.columns
    train_pairs = load_preference_pairs(
        config.train_data, columns=cols, split=config.train_split, limit=config.max_train_pairs
    )
    test_pairs = (
        load_preference_pairs(config.test_data, columns=cols, split=config.test_split)
        if config.test_data
        else []
    )
    train_pairs += load_preference_pairs(config.extra_train_data) if config.extra_train_data else []
    test_pairs += load_preference_pairs(config.extra_test_data) if config.extra_test_data else []
    return train_pairs, test_pairs


def _evaluate(
    model, tokenizer, test_pairs: list[dict], features: FeatureCache, config: RewardModelConfig
) -> dict:
    """Held-out pairwise accuracy and margin, overall and per rejected kind."""
    started = time.perf_counter()
    test_ids = _tokenize_pairs(tokenizer, test_pairs, config)
    if config.mode == "head_only":  # the head on cached features is the model's own score
        with torch.no_grad():
            chosen, rejected = (
                model.score(features.features(model, test_ids, config)).squeeze(-1).unbind(1)
            )
    else:
        chosen, rejected = _score_texts(model, test_ids, config).unbind(1)
    return {
        "eval/accuracy": (chosen > rejected).float().mean().item(),
        "eval/margin": (chosen - rejected).mean().item(),
        "eval/n_pairs": len(test_pairs),
        "eval/time_s": round(time.perf_counter() - started, 1),
        **accuracy_by_kind(test_pairs, chosen > rejected),
    }


def accuracy_by_kind(pairs: list[dict], correct: torch.Tensor) -> dict:
    """``eval/accuracy/KIND`` and ``eval/n_pairs/KIND`` for the pairs that carry a kind."""
    out = {}
    for kind in sorted({p["kind"] for p in pairs if "kind" in p}):
        rows = [i for i, p in enumerate(pairs) if p.get("kind") == kind]
        out[f"eval/accuracy/{kind}"] = correct[rows].float().mean().item()
        out[f"eval/n_pairs/{kind}"] = len(rows)
    return out


def _load_backbone(config: RewardModelConfig):
    """Sequence-classification model (1 output) and tokenizer, pad id set for last-token pooling."""
    from transformers import (  # here: `flowhf --help` stays fast
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    from flowhf.models.loading import prepare_tokenizer, resolve_model_path

    path = config.model
    if not Path(path).is_dir():
        path = resolve_model_path(config.model)
    # init kwargs (not attributes) so the saved tokenizer_config.json keeps the sides for scorers
    tokenizer = AutoTokenizer.from_pretrained(path, padding_side="right", truncation_side="left")
    prepare_tokenizer(tokenizer, None)  # the head reads the rightmost token that is not the pad id
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=1, dtype=torch.float32
    )
    model.config.pad_token_id = (
        tokenizer.pad_token_id
    )  # SmolLM2: pad == eos; our texts never end in EOS
    return model, tokenizer


def _tokenize_pairs(
    tokenizer, pairs: list[dict], config: RewardModelConfig
) -> list[tuple[list[int], list[int]]]:
    """(chosen ids, rejected ids) per pair; too-long texts lose their start, never the answer end."""
    texts = [
        format_for_reward(p["prompt"], p[key], config.template)
        for p in pairs
        for key in ("chosen", "rejected")
    ]
    ids = tokenizer(texts, truncation=True, max_length=config.max_length)["input_ids"]
    return list(zip(ids[0::2], ids[1::2]))


def _prepare_trainable(model, config: RewardModelConfig):
    """lora: wrap with PEFT (the score head trains in full); full: every weight trains."""
    if config.mode == "full":
        return model
    from peft import get_peft_model

    from flowhf.models.lora import LoraSettings, build_lora_config

    total, top = model.config.num_hidden_layers, config.lora_layers
    layers = None if top is None else list(range(max(0, total - top), total))
    settings = LoraSettings(config.lora_r, config.lora_alpha, 0.0, LORA_TARGETS)
    lora = build_lora_config(settings, "SEQ_CLS", layers_to_transform=layers)
    return get_peft_model(model, lora)


def _collate(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded input ids and attention mask."""
    input_ids = torch.full((len(seqs), max(map(len, seqs))), pad_id, dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    for row, seq in enumerate(seqs):
        input_ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    return input_ids, mask


def _autocast(enabled: bool):  # bf16 matmuls on CPU (avx512_bf16); parameters stay float32
    return torch.autocast("cpu", dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


def _rewards(model, input_ids: torch.Tensor, mask: torch.Tensor, bf16: bool) -> torch.Tensor:
    """The model's own forward, as any scorer would call it: [B] float32."""
    with _autocast(bf16):
        return model(input_ids=input_ids, attention_mask=mask).logits[:, 0].float()


def _last_token_state(
    model, input_ids: torch.Tensor, mask: torch.Tensor, bf16: bool
) -> torch.Tensor:
    """Backbone output at the token the head reads: [B, hidden]. Same rule as the model's
    pooling (rightmost token that is not the pad id), so head(state) equals its reward."""
    backbone = getattr(model, model.base_model_prefix)
    with _autocast(bf16):
        hidden = backbone(input_ids=input_ids, attention_mask=mask).last_hidden_state.float()
    last = (torch.arange(input_ids.shape[1]) * (input_ids != model.config.pad_token_id)).argmax(-1)
    return hidden[torch.arange(len(last)), last]


def _score_texts(model, ids: list, config: RewardModelConfig, fn=_rewards) -> torch.Tensor:
    """``fn`` over every chosen and rejected text: [N, 2, ...]."""
    out = _score_seqs(model, [seq for pair in ids for seq in pair], config, fn)
    return out.view(len(ids), 2, *out.shape[1:])


@torch.no_grad()
def _score_seqs(model, seqs: list, config: RewardModelConfig, fn=_rewards) -> torch.Tensor:
    """``fn`` over every token sequence: [N, ...]. Texts are batched by their own length (not by
    pair), which on the StackExchange data cuts padding from ~40% to ~1%. Scored in eval mode,
    the model's training mode restored after."""
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    outputs, width, started = {}, 2 * config.batch_size, time.perf_counter()
    with eval_mode(model):
        for number, start in enumerate(range(0, len(seqs), width), start=1):
            batch = order[start : start + width]
            values = fn(
                model, *_collate([seqs[i] for i in batch], model.config.pad_token_id), config.bf16
            )
            outputs.update(zip(batch, values))
            if number % config.log_every == 0:
                logger.info(
                    "scored %d/%d texts (%.0fs)",
                    start + len(batch),
                    len(seqs),
                    time.perf_counter() - started,
                )
    return torch.stack([outputs[i] for i in range(len(seqs))])


def _fit(
    params, ids: list, pair_rewards, config: RewardModelConfig, epochs: int, lr: float
) -> dict:
    """Mini-batch Bradley-Terry training: ``pair_rewards(batch) -> (r_chosen, r_rejected)``.
    Batches are random; within chunks of 8 batches pairs are grouped by length (less padding)."""
    from transformers import get_linear_schedule_with_warmup

    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=config.weight_decay)
    total = -(-len(ids) // config.batch_size) * epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, max(1, total // 10), total)
    rng, step, started, span = (
        random.Random(config.seed),
        0,
        time.perf_counter(),
        config.batch_size * 8,
    )
    for epoch in range(epochs):
        order = list(range(len(ids)))
        rng.shuffle(order)
        order = [
            i
            for s in range(0, len(order), span)
            for i in sorted(order[s : s + span], key=lambda i: len(ids[i][0]) + len(ids[i][1]))
        ]
        batches = [
            order[k : k + config.batch_size] for k in range(0, len(order), config.batch_size)
        ]
        rng.shuffle(batches)
        losses, accs = [], []
        for batch in batches:
            chosen, rejected = pair_rewards(batch)
            loss = -F.logsigmoid(chosen - rejected).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            accs.append((chosen > rejected).float().mean().item())
            step += 1
            if (
                step % config.log_every == 0 and config.mode != "head_only"
            ):  # head steps take microseconds
                logger.info(
                    "%s epoch %d step %d/%d loss %.4f acc %.3f (%.0fs)",
                    config.mode,
                    epoch + 1,
                    step,
                    total,
                    losses[-1],
                    accs[-1],
                    time.perf_counter() - started,
                )
        logger.info(
            "%s epoch %d/%d: mean loss %.4f, mean accuracy %.3f",
            config.mode,
            epoch + 1,
            epochs,
            sum(losses) / len(losses),
            sum(accs) / len(accs),
        )
    return {"train/loss": sum(losses) / len(losses), "train/accuracy": sum(accs) / len(accs)}


def _train_model(model, train_ids: list, config: RewardModelConfig) -> dict:
    """lora / full: BT training of every parameter that requires grad (adapters + head, or all)."""

    def pair_rewards(batch):
        seqs = [train_ids[i][0] for i in batch] + [train_ids[i][1] for i in batch]
        return _rewards(model, *_collate(seqs, model.config.pad_token_id), config.bf16).chunk(2)

    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    stats = _fit(params, train_ids, pair_rewards, config, config.epochs, config.learning_rate)
    model.eval()
    return stats


def _train_head(
    model, features: torch.Tensor, train_ids: list, config: RewardModelConfig
) -> tuple[dict, torch.Tensor]:
    """head_only: BT epochs of the linear head on the frozen backbone's ``features`` [N, 2, hidden]."""

    def pair_rewards(batch):
        return model.score(features[batch]).squeeze(-1).unbind(1)

    params = list(model.score.parameters())
    stats = _fit(
        params, train_ids, pair_rewards, config, config.head_epochs, config.head_learning_rate
    )
    with torch.no_grad():
        scores = model.score(features).squeeze(-1)  # [N, 2] the fitted head on every training text
    return stats, scores


def _save(model, tokenizer, config: RewardModelConfig, metrics: dict) -> None:
    """Model, tokenizer, metrics.json, config and scoring contract, written to a temporary folder
    and renamed into output_dir (its lock and other files stay), the contract last: it marks a
    complete model, and a kill never leaves half of one."""
    meta = {
        "format": "flowhf-reward/1",
        "template": config.template,
        "max_length": config.max_length,
        "truncation_side": "left",
        "bf16": config.bf16,
        "base_model": config.model,
        "mode": config.mode,
    }
    with atomic_files(Path(config.output_dir), last=(REWARD_META_FILE,)) as out:
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        (out / "reward_config.yaml").write_text(
            yaml.safe_dump(dataclasses.asdict(config), sort_keys=False), encoding="utf-8"
        )
        (out / REWARD_META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def default_reward_model_dir() -> Path:
    """The default StackExchange RM (`RewardModelConfig()`), trained on first use and cached in
    ``$FLOWHF_CACHE_DIR`` (else ``~/.cache/flowhf``) / ``rm-stackexchange-smollm2``, built once
    (`build_folder_once`: under a lock, into a temporary folder renamed into place), so neither a
    killed run nor two processes at once leave a half model behind."""
    from flowhf.io import build_folder_once
    from flowhf.models.cache import cache_root  # $FLOWHF_CACHE_DIR else ~/.cache/flowhf

    def build(tmp: Path) -> None:
        logger.warning(
            "training the default reward model into %s (first use only; several CPU minutes)",
            target,
        )
        train_reward_model(RewardModelConfig(output_dir=str(tmp)))

    target = cache_root() / DEFAULT_RM_FOLDER
    return build_folder_once(target, build, lambda folder: (folder / REWARD_META_FILE).is_file())
