"""Bradley-Terry reward training on a tiny random LLaMA: learns, saves, reloads, same scores."""

from __future__ import annotations

import dataclasses
import json
import random

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from flowhf.cli.reward import train_reward_cli
from flowhf.config.reward_model import (
    REWARD_META_FILE,
    RewardModelConfig,
    format_for_reward,
    load_reward_config,
    read_reward_meta,
)
from flowhf.models.tiny import tiny_llama_config
from flowhf.reward_model.train import train_reward_model

FILLER = [f"w{i}" for i in range(30)]
MARKER = "excellent"  # present in every chosen answer, absent from every rejected one
SPECIAL = ["<pad>", "<unk>", "<eos>"]
TEMPLATE_WORDS = ["Question:", "Answer:"]


def _tiny_backbone(folder) -> str:
    """Save a tiny random LLaMA and a word-level tokenizer whose pad id equals eos (as SmolLM2)."""
    vocab = {tok: i for i, tok in enumerate(SPECIAL + TEMPLATE_WORDS + FILLER + [MARKER])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="<unk>", eos_token="<eos>", pad_token="<eos>"
    )
    config = tiny_llama_config(len(vocab), hidden_size=32, eos_token_id=2, pad_token_id=2)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def _pairs(n: int, seed: int, marker_at_end: bool) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = rng.choices(FILLER, k=6)
        chosen = list(words)
        chosen.insert(len(words) if marker_at_end else rng.randrange(len(words)), MARKER)
        rows.append(
            {
                "qid": i,
                "question": " ".join(rng.choices(FILLER, k=4)),
                "good": " ".join(chosen),
                "bad": " ".join(words + [rng.choice(FILLER)]),
            }
        )  # same length as chosen
    return rows


def _write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _config(tmp_path, marker_at_end: bool = False, **overrides) -> RewardModelConfig:
    values = dict(
        model=_tiny_backbone(tmp_path / "backbone"),
        train_data=_write_jsonl(tmp_path / "train.jsonl", _pairs(40, 1, marker_at_end)),
        test_data=_write_jsonl(tmp_path / "test.jsonl", _pairs(30, 2, marker_at_end)),
        columns={"prompt": "question", "chosen": "good", "rejected": "bad"},
        mode="lora",
        lora_r=8,
        lora_alpha=16,
        learning_rate=1e-2,
        epochs=8,
        batch_size=8,
        max_length=64,
        bf16=False,
        seed=0,
        output_dir=str(tmp_path / "rm"),
    )
    values.update(overrides)
    return RewardModelConfig(**values)


def _score(folder, prompts, completions) -> torch.Tensor:
    """Score with a plain reload (as TRL / FlowHF would), batched with right padding."""
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    meta = read_reward_meta(folder)
    texts = [format_for_reward(p, c, meta["template"]) for p, c in zip(prompts, completions)]
    enc = tokenizer(
        texts, padding=True, truncation=True, max_length=meta["max_length"], return_tensors="pt"
    )
    with torch.no_grad():
        return model(**enc).logits[:, 0]


@pytest.mark.parametrize("mode", ["lora", "head_only", "full"])
def test_reward_model_learns_marker_and_reloads_identically(tmp_path, mode):
    # head_only cannot train the backbone, so the marker sits at the token the head reads
    overrides = {
        "head_only": dict(head_learning_rate=1e-2, head_epochs=30),
        "full": dict(learning_rate=3e-3),
    }.get(mode, {})
    config = _config(tmp_path, marker_at_end=mode == "head_only", mode=mode, **overrides)
    metrics = train_reward_model(config)
    assert metrics["eval/accuracy"] > 0.9, metrics
    assert metrics["train/n_pairs"] == 40 and metrics["eval/n_pairs"] == 30

    test = _pairs(30, 2, mode == "head_only")
    prompts = [r["question"] for r in test]
    chosen = _score(config.output_dir, prompts, [r["good"] for r in test])
    rejected = _score(config.output_dir, prompts, [r["bad"] for r in test])
    # the reloaded plain model reproduces the trained model's held-out numbers
    assert (chosen > rejected).float().mean().item() == pytest.approx(metrics["eval/accuracy"])
    assert (chosen - rejected).mean().item() == pytest.approx(metrics["eval/margin"], abs=1e-4)
    # batched (padded) scores equal one-at-a-time scores: the head reads the last real token
    single = torch.cat(
        [
            _score(config.output_dir, [p], [c])
            for p, c in zip(prompts[:4], [r["good"] for r in test[:4]])
        ]
    )
    torch.testing.assert_close(single, chosen[:4], atol=1e-5, rtol=1e-5)
    # the recorded reward scale is the std of the reloaded model's scores on the TRAINING answers
    train = _pairs(40, 1, mode == "head_only")
    train_scores = torch.cat(
        [
            _score(config.output_dir, [r["question"] for r in train], [r[k] for r in train])
            for k in ("good", "bad")
        ]
    )
    assert metrics["train/score_std"] == pytest.approx(train_scores.std().item(), rel=1e-3)
    assert metrics["train/score_mean"] == pytest.approx(train_scores.mean().item(), abs=1e-3)


def test_saved_folder_records_scoring_contract(tmp_path):
    config = _config(tmp_path, epochs=1)
    train_reward_model(config)
    meta = json.loads((tmp_path / "rm" / REWARD_META_FILE).read_text())
    assert meta["template"] == "Question: {prompt}\n\nAnswer: {completion}"
    assert meta["max_length"] == 64 and meta["truncation_side"] == "left"
    saved = json.loads((tmp_path / "rm" / "config.json").read_text())
    assert (
        saved["pad_token_id"] == 2 and saved["num_labels"] == 1 if "num_labels" in saved else True
    )
    assert saved["architectures"] == ["LlamaForSequenceClassification"]
    assert not (tmp_path / "rm" / "adapter_config.json").exists()  # LoRA was merged
    metrics = json.loads((tmp_path / "rm" / "metrics.json").read_text())
    assert set(metrics) >= {"eval/accuracy", "train/time_s", "train/n_pairs", "eval/n_pairs"}


def test_format_for_reward_and_truncation_keeps_answer_end(tmp_path):
    assert format_for_reward("Q?", "A.") == "Question: Q?\n\nAnswer: A."
    assert format_for_reward("{x}", "{y}") == "Question: {x}\n\nAnswer: {y}"  # user braces are data
    config = _config(tmp_path, epochs=1, max_length=5)
    train_reward_model(config)
    assert (
        json.loads((tmp_path / "rm" / "tokenizer_config.json").read_text())["truncation_side"]
        == "left"
    )
    tokenizer = AutoTokenizer.from_pretrained(config.output_dir)
    ids = tokenizer("Question: w1 w2 Answer: w3 w4 w5 excellent", truncation=True, max_length=5)[
        "input_ids"
    ]
    assert tokenizer.convert_ids_to_tokens(ids) == ["Answer:", "w3", "w4", "w5", "excellent"]


def test_config_yaml_unknown_key_and_types(tmp_path):
    path = tmp_path / "rm.yaml"
    path.write_text("mode: head_only\nepochs: 3\nlearning_rate: 1\ncolumns: {prompt: question}\n")
    config = load_reward_config(path, ["batch_size=4", "test_data=null"])
    assert (config.mode, config.epochs, config.learning_rate, config.batch_size) == (
        "head_only",
        3,
        1.0,
        4,
    )
    assert config.columns == {"prompt": "question"} and config.test_data is None
    path.write_text("epoch: 3\n")
    with pytest.raises(ValueError, match=r"unknown key 'epoch'.*did you mean 'epochs'"):
        load_reward_config(path)
    with pytest.raises(ValueError, match="epochs=.*: expected int"):
        load_reward_config(None, ["epochs=two"])
    with pytest.raises(ValueError, match="mode=.ppo.: must be one of"):
        load_reward_config(None, ["mode=ppo"])
    with pytest.raises(ValueError, match="expected key=value"):
        load_reward_config(None, ["epochs"])


def test_cli_reports_bad_data_with_row_and_key(tmp_path, capsys):
    config = _config(tmp_path)
    bad = _pairs(3, 0, False)
    del bad[1]["bad"]
    data = _write_jsonl(tmp_path / "bad.jsonl", bad)
    code = train_reward_cli(
        [
            "--set",
            f"model={config.model}",
            "--set",
            f"train_data={data}",
            "--set",
            "columns={prompt: question, chosen: good, rejected: bad}",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "bad.jsonl: row 2: missing key 'bad'" in err and "'rejected'" in err


def test_default_reward_model_dir_trains_once_into_cache(tmp_path, monkeypatch):
    from flowhf.reward_model import train as training

    calls = []

    def fake_train(
        config,
    ):  # the real default trains SmolLM2 for minutes; the caching is what is tested
        calls.append(config)
        out = tmp_path / "cache" / config.output_dir.split("/")[-1]
        assert out.name.startswith(".tmp-rm-stackexchange-smollm2-")  # never the final folder
        out.mkdir(parents=True, exist_ok=True)
        (out / REWARD_META_FILE).write_text("{}")
        return {}

    monkeypatch.setenv("FLOWHF_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(training, "train_reward_model", fake_train)
    first = training.default_reward_model_dir()
    assert (
        first == tmp_path / "cache" / "rm-stackexchange-smollm2"
        and (first / REWARD_META_FILE).is_file()
    )
    assert training.default_reward_model_dir() == first and len(calls) == 1
    assert calls[0].model == "smollm2" and calls[0].train_data == "stackexchange:train"
    # the final folder and build_folder_once's lock file, no temporary folder left
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [
        ".rm-stackexchange-smollm2.lock",
        "rm-stackexchange-smollm2",
    ]


def test_add_reward_parser_wires_reward_train():
    import argparse

    from flowhf.cli.reward import add_reward_parser, run_reward_train

    parser = argparse.ArgumentParser(prog="flowhf")
    add_reward_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["reward", "train", "--config", "c.yaml", "--set", "epochs=2", "--set", "seed=3"]
    )
    assert (
        args.func is run_reward_train
        and args.config == "c.yaml"
        and args.set == ["epochs=2", "seed=3"]
    )
    with pytest.raises(SystemExit):
        parser.parse_args(["reward"])  # the sub-command is required


def test_feature_cache_shared_by_two_head_only_models_changes_nothing(tmp_path, monkeypatch):
    from flowhf.reward_model import train as training

    config = _config(
        tmp_path, marker_at_end=True, mode="head_only", head_learning_rate=1e-2, head_epochs=30
    )
    alone = train_reward_model(config)
    embedded = []
    real = training._score_seqs
    monkeypatch.setattr(
        training,
        "_score_seqs",
        lambda model, seqs, *a, **k: embedded.append(len(seqs)) or real(model, seqs, *a, **k),
    )
    cache = training.FeatureCache()
    shared = train_reward_model(dataclasses.replace(config, output_dir=str(tmp_path / "a")), cache)
    again = train_reward_model(
        dataclasses.replace(config, output_dir=str(tmp_path / "b"), seed=1), cache
    )
    assert len(embedded) == 2  # train texts, then test texts, once for both models
    for key in ("eval/accuracy", "eval/margin", "train/score_std"):
        assert shared[key] == pytest.approx(alone[key], abs=1e-5)
    assert again["eval/n_pairs"] == alone["eval/n_pairs"] and again["eval/accuracy"] > 0.9
    with pytest.raises(ValueError, match="one per backbone"):
        cache.features(None, [], dataclasses.replace(config, bf16=True))
