"""A generic format warm start: answer a "name one X" question with the bare name, then EOS.

SmolLM2-135M-Instruct answers such questions with sentences; teacher-forced it puts 0.1-0.3%
of its mass on a bare name + EOS, so no sampler would find the answers. A short LoRA SFT on
`flowhf/data/shipped/short_answers.jsonl` (bare answers to questions from ~40 categories:
instruments, metals, painters, ...) teaches the FORMAT. That file contains no answer of any
shipped task and no digits (a test checks), so it cannot teach a task's distribution. The
adapter is merged and the folder cached like the converted default model: every method,
FlowHF and TRL alike, starts from it, and alpha = 1 targets use it as the reference.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import torch

from flowhf.io import build_folder_once
from flowhf.models.cache import cache_root
from flowhf.models.loading import _is_model_folder, load_policy, resolve_model_path
from flowhf.models.lora import LoraSettings
from flowhf.sampling import completion_log_probs
from flowhf.sampling.prompts import encode_completion, encode_prompts, left_pad
from flowhf.training.batch import completions_from_ids

DATA_FILE = "short_answers.jsonl"


@dataclass(frozen=True)
class WarmStartSettings:
    steps: int = 60
    batch_size: int = 16
    learning_rate: float = 1e-3
    lora_r: int = 16
    seed: int = 0


def short_answer_rows() -> list[dict]:
    text = resources.files("flowhf.data").joinpath("shipped", DATA_FILE).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def warm_start_dir(
    base: str = "smollm2", settings: WarmStartSettings = WarmStartSettings(), cache_dir=None
) -> Path:
    """The warm-started model folder for `base`, trained once and cached (locked, atomic)."""
    base_path = resolve_model_path(base, cache_dir)
    data = resources.files("flowhf.data").joinpath("shipped", DATA_FILE).read_bytes()
    key = hashlib.sha256(
        json.dumps([str(base_path), asdict(settings)]).encode() + data
    ).hexdigest()[:12]
    out_dir = cache_root(cache_dir) / f"warmstart-short-answers-{key}"
    return build_folder_once(
        out_dir, lambda tmp: train_warm_start(base_path, tmp, settings), _is_model_folder
    )


def train_warm_start(base_path: str, out_dir: Path, settings: WarmStartSettings) -> dict:
    """LoRA SFT on bare answers + EOS (loss on the answer tokens only), merged and saved."""
    torch.manual_seed(settings.seed)
    bundle = load_policy(
        base_path, lora=LoraSettings(r=settings.lora_r, alpha=2 * settings.lora_r, dropout=0.0)
    )
    tok, model = bundle.tokenizer, bundle.model
    rows = short_answer_rows()
    prompts = encode_prompts(tok, [r["prompt"] for r in rows], True)
    answers = [encode_completion(tok, r["answer"], tok.eos_token_id)[0] for r in rows]
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=settings.learning_rate
    )
    rng = random.Random(settings.seed)
    model.train()
    losses = []
    for _ in range(settings.steps):
        pick = rng.sample(range(len(rows)), settings.batch_size)
        pids, pmask = left_pad([prompts[i] for i in pick], tok.pad_token_id)
        comp = completions_from_ids(
            [answers[i] for i in pick], [True] * len(pick), tok.pad_token_id
        )
        log_pf = completion_log_probs(model, pids, pmask, comp.ids, comp.mask).log_pf  # [B, T]
        loss = -log_pf.sum(dim=1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    merged = model.merge_and_unload()
    merged.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    record = {
        "settings": asdict(settings),
        "base": str(base_path),
        "rows": len(rows),
        "loss_first": losses[0],
        "loss_last": losses[-1],
    }
    (out_dir / "warmstart.json").write_text(json.dumps(record, indent=2))
    return record
