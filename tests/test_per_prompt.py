"""Per-prompt diversity, judges (gold beside proxy) and length metrics: hand examples, then an
end-to-end evaluate_models run on tiny models."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from flowhf.config.evaluation import EvalArgs, GenerationSettings
from flowhf.evaluation.per_prompt import (
    PerPromptSettings,
    completion_level,
    distinct_answers,
    prompt_metrics,
    summarise,
)
from flowhf.evaluation.runner import EvalInputs, evaluate_models
from flowhf.evaluation.sampling import length_metrics
from tests.test_evaluation import FakeEmbedder, count_w1, tiny_model, word_tokenizer


def test_distinct_answers_counts_clusters_whose_every_pair_is_close():
    a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    near_a = np.array([1.0, 0.1])  # cosine distance to a: 1 - 1/sqrt(1.01) = 0.005
    assert distinct_answers(np.stack([a, a, near_a, b, b]), 0.15) == 2
    assert distinct_answers(np.stack([a, a, a]), 0.15) == 1
    # complete linkage: a chain a - mid - b where each step is close but a, b are far is split
    mid = np.array([1.0, 1.0])  # 0.29 from both
    assert distinct_answers(np.stack([a, mid, b]), 0.35) == 2
    assert distinct_answers(np.stack([a, b]), 0.15) == 2


def test_prompt_metrics_by_hand():
    texts = ["w1 w2", "w1 w2", "w3"]
    emb = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    out = prompt_metrics(texts, emb, ended=[True, True, False], lengths=[3, 3, 6], threshold=0.15)
    # ordered pairs: (0,1) distance 0 twice, (0,2), (1,2) distance 1 four times -> 4 / 6
    assert out["pairwise_distance"] == pytest.approx(4 / 6)
    assert out["distinct_1"] == pytest.approx(3 / 5) and out["distinct_2"] == pytest.approx(1 / 2)
    assert (
        out["distinct_answers"] == 2
        and out["eos_rate"] == pytest.approx(2 / 3)
        and out["mean_length"] == 4
    )


def test_summarise_means_over_prompts_and_skips_undefined_distinct_2():
    rows = [
        {"index": 0, "prompt": "p", "completions": ["a"], "distinct_2": math.nan, "reward": 1.0},
        {"index": 1, "prompt": "q", "completions": ["b"], "distinct_2": 0.5, "reward": 3.0},
    ]
    means, cis = summarise(rows, n_boot=200, seed=0)
    assert (
        means["reward"] == 2.0 and means["distinct_2"] == 0.5 and means["distinct_2_prompts"] == 1
    )
    assert (
        cis["reward"][0] >= 1.0 and cis["reward"][1] <= 3.0 and set(cis) == {"distinct_2", "reward"}
    )


def test_length_metrics_by_hand():
    out = length_metrics([1.0, 2.0, 3.0], [True, False, True], [2, 4, 6])
    assert out == {
        "eos_rate": pytest.approx(2 / 3),
        "mean_tokens": 4.0,
        "corr_reward_length": pytest.approx(1.0),
    }
    assert math.isnan(length_metrics([1.0, 1.0], [True, True], [2, 3])["corr_reward_length"])


def half_w1(prompts, completions, **columns):
    """A second judge: half of count_w1."""
    return 0.5 * count_w1(prompts, completions)


def test_evaluate_models_with_judge_and_per_prompt(tmp_path):
    tok = word_tokenizer()
    gen = GenerationSettings(temperature=0.5, max_new_tokens=5, batch_size=4)
    settings = PerPromptSettings(n_prompts=2, k=3, temperature=1.0)
    models = [("a", tiny_model(0), tok), ("b", tiny_model(1), tok)]
    evaluate_models(
        models,
        EvalInputs(["w1 w2", "w3", "w4"], count_w1, judges={"proxy": half_w1}),
        EvalArgs(tmp_path, n=3, k=2, generation=gen, seed=0, n_boot=20, per_prompt=settings),
        FakeEmbedder(),
    )
    records = [
        json.loads(line) for line in (tmp_path / "completions.jsonl").read_text().splitlines()
    ]
    for rec in records:  # the judge scored exactly the stored text; ended / length agree
        assert rec["proxy_reward"] == pytest.approx(0.5 * rec["reward"])
        assert rec["ended"] == (rec["length"] < 5) or rec["length"] == 5
    rows = [json.loads(line) for line in (tmp_path / "per_prompt.jsonl").read_text().splitlines()]
    assert [(r["model"], r["prompt"]) for r in rows] == [
        ("a", "w1 w2"),
        ("a", "w3"),
        ("b", "w1 w2"),
        ("b", "w3"),
    ]
    assert all(len(r["completions"]) == 3 and 1 <= r["distinct_answers"] <= 3 for r in rows)
    for r in rows:
        assert r["reward"] == pytest.approx(
            float(count_w1(None, r["completions"]).mean()), abs=1e-6
        )
        assert r["proxy_reward"] == pytest.approx(0.5 * r["reward"], abs=1e-6)
    meta = json.loads((tmp_path / "metrics.json").read_text())
    assert meta["judges"] == ["proxy"] and meta["per_prompt"]["k"] == 3
    for entry in meta["models"]:
        mine = [r for r in rows if r["model"] == entry["model"]]
        assert entry["metrics"]["pp_distinct_answers"] == pytest.approx(
            np.mean([r["distinct_answers"] for r in mine])
        )
        assert entry["metrics"]["eos_rate"] == pytest.approx(
            np.mean([r["ended"] for r in records if r["model"] == entry["model"]])
        )
        assert entry["metrics"]["proxy_reward"] == pytest.approx(
            0.5 * entry["metrics"]["mean_reward"], abs=1e-6
        )
    report = (tmp_path / "report.md").read_text()
    assert "## Per-prompt diversity" in report and "Proxy reward" in report and "EOS rate" in report


def test_generated_batch_marks_eos_and_cut_completions():
    from flowhf.evaluation.generation import generate_batch

    tok, model = word_tokenizer(), tiny_model(2)
    torch.manual_seed(0)
    batch = generate_batch(
        model,
        tok,
        ["w1"] * 16,
        GenerationSettings(temperature=1.0, max_new_tokens=4, batch_size=16),
    )
    for row, mask, n, ended in zip(
        batch.completion_ids, batch.completion_mask, batch.lengths, batch.ended
    ):
        assert n == int(mask.sum())
        assert ended == (int(row[n - 1]) == 3)  # [EOS] is id 3
        assert ended or n == 4
    assert any(batch.ended)


def test_completion_level_gap_and_length_correlations_by_hand():
    # two prompts x 2 completions; gold rises with length, proxy falls with it
    rows = [
        {
            "scores": {"reward": [1.0, 3.0], "proxy_reward": [4.0, 2.0]},
            "lengths": [10, 30],
            "ended": [True, False],
        },
        {
            "scores": {"reward": [2.0, 2.0], "proxy_reward": [3.0, 3.0]},
            "lengths": [20, 20],
            "ended": [True, True],
        },
    ]
    out = completion_level(rows, {"gold": (1.0, 2.0), "proxy": (2.0, 0.5)})
    assert out["gold_z"] == pytest.approx((2.0 - 1.0) / 2.0)  # mean gold 2.0
    assert out["proxy_z"] == pytest.approx((3.0 - 2.0) / 0.5)  # mean proxy 3.0
    assert out["gap"] == pytest.approx(2.0 - 0.5)
    assert out["corr_reward_length"] == pytest.approx(1.0) and out[
        "corr_proxy_length"
    ] == pytest.approx(-1.0)
    gold_only = completion_level(
        [{"scores": {"reward": [1.0, 2.0]}, "lengths": [5, 5], "ended": [True, True]}], {}
    )
    assert "gap" not in gold_only and math.isnan(
        gold_only["corr_reward_length"]
    )  # constant length: undefined
