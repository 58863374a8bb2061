"""Saved runs carry a Hub model card (README.md) made with huggingface_hub's ModelCard."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from flowhf.config.training import FlowHFConfig
from flowhf.models.card import RunSummary, build_model_card, hub_base_model, hub_dataset
from flowhf.models.loading import load_policy
from flowhf.models.saved_run import save_policy
from flowhf.models.tiny import tiny_model_dir
from flowhf.run_dir import RUN_FILES
from flowhf.training.trainer import FlowHFTrainer

ROOT = Path(__file__).resolve().parents[1]
SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_smoke_run_card_parses_with_hub_metadata(tmp_path: Path):
    out = tmp_path / "smoke"
    config = FlowHFConfig.from_yaml(
        ROOT / "configs" / "smoke.yaml",
        [f"logging.output_dir={out}", "optim.max_steps=2", "logging.save_steps=0"],
    )
    FlowHFTrainer(args=config).train()
    card = ModelCard.load(out / "README.md")
    data = card.data.to_dict()
    assert data["library_name"] == "peft" and data["pipeline_tag"] == "text-generation"
    assert {"flowhf", "gflownet", "subtb"} <= set(data["tags"])
    assert "base_model" not in data  # tiny-random is on no Hub page: left out, and said so
    assert "names no Hugging Face Hub id" in card.text
    assert "`subtb`" in card.text and "beta = 5.0" in card.text and "alpha = 1.0" in card.text
    assert "python:flowhf.rewards.toy:letter_share" in card.text
    assert "max_steps: 2" in card.text and "At step 2:" in card.text
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert f"| `train/loss` | {last['train/loss']:.4g} |" in card.text
    assert "load_trained" in card.text and "PeftModel.from_pretrained" in card.text


def test_full_model_card_from_a_folder_that_records_its_hub_id(tmp_path: Path):
    base = tmp_path / "base"
    shutil.copytree(tiny_model_dir(), base)
    ModelCard(f"---\nbase_model: {SMOLLM2}\n---\n\nsaved elsewhere\n").save(base / "README.md")
    bundle = load_policy(str(base), lora=None)
    meta = {
        "objective": "tb",
        "config": {"target": {"beta": 2.0, "alpha": 0.5}, "data": {"dataset": "hf:org/prompts"}},
    }
    save_policy(bundle, tmp_path / "run", meta=meta, summary=RunSummary({"step": 3}, "my_reward"))
    card = ModelCard.load(tmp_path / "run" / "README.md")
    data = card.data.to_dict()
    assert data["base_model"] == SMOLLM2 and data["library_name"] == "transformers"
    assert data["datasets"] == ["org/prompts"] and {"flowhf", "gflownet", "tb"} <= set(data["tags"])
    assert "`my_reward`" in card.text and "AutoModelForCausalLM.from_pretrained" in card.text
    assert "steps run: 3" in card.text and "None logged." in card.text


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("smollm2", SMOLLM2),
        ("default", SMOLLM2),
        ("tiny-random", None),
        ("Qwen/Qwen2.5-0.5B", "Qwen/Qwen2.5-0.5B"),
        ("/no/such/folder", None),
        ("./model.gguf", None),
        ("model.gguf", None),
        (None, None),
    ],
)
def test_hub_base_model_is_a_hub_id_never_a_path(source, expected):
    assert hub_base_model(source) == expected


def test_hub_base_model_follows_what_a_folder_records(tmp_path: Path):
    adapter, config, nothing = tmp_path / "adapter", tmp_path / "full", tmp_path / "bare"
    for folder in (adapter, config, nothing):
        folder.mkdir()
    (adapter / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": str(config)})
    )
    (config / "config.json").write_text(json.dumps({"_name_or_path": "org/model"}))
    (nothing / "config.json").write_text(json.dumps({"_name_or_path": str(tmp_path / "gone")}))
    assert hub_base_model(adapter) == "org/model"  # adapter -> its base folder -> the config's id
    assert hub_base_model(nothing) is None
    assert hub_dataset("hf:org/data:cfg") == "org/data" and hub_dataset("sentiment_prompts") is None


def test_the_converted_default_model_and_what_starts_from_it_name_smollm2(tmp_path, monkeypatch):
    default = tmp_path / "smollm2-folder"
    default.mkdir()
    monkeypatch.setenv("FLOWHF_DEFAULT_MODEL_DIR", str(default))
    sft = tmp_path / "sft-model"  # as reproduce's SFT stage: a model trained from that folder
    sft.mkdir()
    (sft / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(default)}))
    assert hub_base_model(default) == SMOLLM2 and hub_base_model(sft) == SMOLLM2


def test_card_shows_nonfinite_metrics_and_no_base():
    card = build_model_card(
        "run",
        {"objective": "fl", "lora": True, "config": {}},
        RunSummary({"step": 1, "train/loss": None, "nonfinite": {"train/loss": "nan"}}),
    )
    assert "| `train/loss` | nan |" in card.text and "BASE_MODEL" in card.text


def test_saved_policy_files_name_the_card():
    assert "README.md" in RUN_FILES  # a run folder may hold its card
