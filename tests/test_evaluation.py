"""Evaluation package: every metric against hand-computed values, statistics, report layout,
and an end-to-end evaluate_models run on tiny random models (no download)."""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from scipy import stats as sps
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from flowhf.cli import evaluate as eval_cli
from flowhf.config.evaluation import EvalArgs
from flowhf.evaluation.compare import compare_evaluations
from flowhf.evaluation.embeddings import Embedder, shipped_minilm_path
from flowhf.evaluation.generation import (
    GeneratedBatch,
    GenerationSettings,
    completion_logprobs,
)
from flowhf.evaluation.metrics import (
    compute_metrics,
    distinct_n,
    mean_length,
    novelty,
    pairwise_cosine_distance_mean,
    per_token_kl,
    reward_stats,
    top_k_indices,
)
from flowhf.evaluation.plots import plot_score_distributions, plot_training_curves
from flowhf.evaluation.report import (
    ReportInfo,
    write_completions_jsonl,
    write_metrics_json,
    write_report_md,
)
from flowhf.evaluation.runner import EvalInputs, evaluate_models
from flowhf.evaluation.stats import CompletionSample, bootstrap_ci, metric_cis, welch_one_sided
from flowhf.evaluation.tasks import task_inputs
from flowhf.models.tiny import tiny_llama
from flowhf.sampling.prompts import completion_mask, left_padding, prompt_batch as encode_prompts

HEADER = "| Model | Mean Reward | Std Reward | Top K Mean | Top K Std | Diversity | Novelty |"
WORDS = [f"w{i}" for i in range(24)]


# ----------------------------------------------------------------------------- fixtures


def word_tokenizer() -> PreTrainedTokenizerFast:
    """Word-level tokenizer: [PAD]=0 [UNK]=1 [BOS]=2 [EOS]=3, then w0..w23."""
    vocab = {tok: i for i, tok in enumerate(["[PAD]", "[UNK]", "[BOS]", "[EOS]", *WORDS])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="[PAD]",
        unk_token="[UNK]",
        bos_token="[BOS]",
        eos_token="[EOS]",
    )


def tiny_model(seed: int):
    return tiny_llama(
        4 + len(WORDS), seed=seed, hidden_size=32, bos_token_id=2, eos_token_id=3, pad_token_id=0
    )


class FakeEmbedder:
    """Bag-of-words embedding (deterministic, no model); counts cached reference calls."""

    name = "fake-bow"

    def __init__(self) -> None:
        self.cached_calls = 0

    def embed(self, texts):
        out = np.zeros((len(texts), 32), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.split():
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % 32] += 1.0
            out[row, 31] += 0.5  # never an all-zero row (empty completions)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def embed_cached(self, texts):
        self.cached_calls += 1
        return self.embed(texts)


def count_w1(prompts, completions, **columns):
    """Python reward: how many times the word w1 appears, plus 0.1 per word."""
    return torch.tensor(
        [c.split().count("w1") + 0.1 * len(c.split()) for c in completions], dtype=torch.float32
    )


# ----------------------------------------------------------------------------- metrics


def test_reward_stats_by_hand():
    stats = reward_stats([1, 2, 3, 4, 10], k=2)
    assert stats["topk_mean"] == pytest.approx(7.0)  # top 2 = {10, 4}
    assert stats["topk_std"] == pytest.approx(3.0)  # population std of {10, 4}
    assert stats["mean_reward"] == pytest.approx(4.0)
    assert stats["std_reward"] == pytest.approx(math.sqrt((9 + 4 + 1 + 0 + 36) / 5))


def test_top_k_indices_stable_ties_and_errors():
    assert top_k_indices([5, 1, 5, 3], 2).tolist() == [0, 2]
    assert top_k_indices([5, 1, 5, 3], 3).tolist() == [0, 2, 3]
    with pytest.raises(ValueError, match="larger than"):
        top_k_indices([1, 2], 3)
    with pytest.raises(ValueError, match="non-finite"):
        reward_stats([1.0, float("nan")], 1)


def test_pairwise_cosine_distance_known_angles():
    # 0, 90, 180 degrees (lengths vary: normalisation must not matter): distances 1, 2, 1.
    assert pairwise_cosine_distance_mean([[2, 0], [0, 3], [-0.5, 0]]) == pytest.approx(4 / 3)
    # 0, 60, 120 degrees: cosines 0.5, -0.5, 0.5 -> distances 0.5, 1.5, 0.5.
    angles = np.deg2rad([0, 60, 120])
    emb = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    assert pairwise_cosine_distance_mean(emb) == pytest.approx(2.5 / 3)
    # Brute force over i != j agrees on random data.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 5))
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    brute = np.mean([1 - u[i] @ u[j] for i in range(7) for j in range(7) if i != j])
    assert pairwise_cosine_distance_mean(x) == pytest.approx(brute)
    with pytest.warns(UserWarning, match="at least 2"):
        assert math.isnan(pairwise_cosine_distance_mean([[1.0, 0.0]]))
    with pytest.raises(ValueError, match="all zeros"):
        pairwise_cosine_distance_mean([[1.0, 0.0], [0.0, 0.0]])


def test_novelty_hand_made_d0():
    d0 = [[1.0, 0.0], [0.5, math.sqrt(3) / 2]]  # 0 and 60 degrees
    # (1, 0) is in D0 (distance 0); (0, 1) is 30 degrees from the second row.
    expected = (0.0 + (1 - math.sqrt(3) / 2)) / 2
    assert novelty([[1.0, 0.0], [0.0, 1.0]], d0) == pytest.approx(expected)
    with pytest.warns(UserWarning, match="reference"):
        assert math.isnan(novelty([[1.0, 0.0]], None))


def test_distinct_n_and_length_by_hand():
    texts = ["a b a", "b a c"]
    assert distinct_n(texts, 1) == pytest.approx(3 / 6)  # {a, b, c} of a b a b a c
    assert distinct_n(texts, 2) == pytest.approx(3 / 4)  # (a b) (b a) (b a) (a c)
    assert mean_length(["w1 w2", "w3 w4 w5", ""]) == pytest.approx(5 / 3)
    assert mean_length(["w1 w2", "w3 w4 w5"], tokenizer=word_tokenizer()) == pytest.approx(2.5)


def test_per_token_kl_by_hand():
    lp = [[-1.0, -2.0, 0.0], [-0.5, 0.0, 0.0]]
    lr = [[-2.0, -1.0, -9.0], [-1.0, 0.0, 0.0]]
    mask = [[1, 1, 0], [1, 0, 0]]
    # diffs on real tokens: 1, -1, 0.5 -> 0.5 / 3
    assert per_token_kl(lp, lr, mask) == pytest.approx(1 / 6)


def test_compute_metrics_keys_and_topk_embedding_selection():
    rewards = [0.0, 5.0, 1.0, 4.0]
    emb = [[1, 0], [0, 1], [1, 0], [0, -1]]  # top 2 = rows 1, 3: opposite directions
    m = compute_metrics(rewards, ["a b", "c d", "a b", "e"], emb, [[0, 1]], k=2, kl_per_token=0.25)
    assert m["diversity"] == pytest.approx(2.0)
    assert m["novelty"] == pytest.approx((0.0 + 2.0) / 2)
    assert m["diversity_all"] == pytest.approx((1 + 0 + 1 + 1 + 2 + 1) / 6)
    assert m["topk_mean"] == pytest.approx(4.5) and m["kl_per_token"] == 0.25
    assert set(m) == {
        "mean_reward",
        "std_reward",
        "topk_mean",
        "topk_std",
        "diversity",
        "novelty",
        "diversity_all",
        "distinct_1",
        "distinct_2",
        "mean_length",
        "kl_per_token",
    }


# ----------------------------------------------------------------------------- statistics


def test_welch_one_sided_matches_hand_formula():
    a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.0, 0.0, 1.0, 1.0])
    va, vb = a.var(ddof=1) / 4, b.var(ddof=1) / 4  # 5/12, 1/12
    t = (a.mean() - b.mean()) / math.sqrt(va + vb)  # 2 / sqrt(0.5)
    df = (va + vb) ** 2 / (va**2 / 3 + vb**2 / 3)
    res = welch_one_sided(a, b)
    assert res["t"] == pytest.approx(2 * math.sqrt(2)) and t == pytest.approx(res["t"])
    assert res["df"] == pytest.approx(df) and df == pytest.approx(0.25 / ((25 / 144 + 1 / 144) / 3))
    assert res["p"] == pytest.approx(sps.t.sf(t, df))
    assert welch_one_sided(b, a)["p"] == pytest.approx(1 - res["p"])


def test_bootstrap_ci_covers_mean_and_shrinks():
    rng = np.random.default_rng(0)
    small = bootstrap_ci(rng.normal(3.0, 1.0, 50), np.mean, n_boot=500, seed=1)
    large = bootstrap_ci(rng.normal(3.0, 1.0, 800), np.mean, n_boot=500, seed=1)
    for ci in (small, large):
        assert ci["low"] < 3.0 < ci["high"] and ci["low"] < ci["estimate"] < ci["high"]
    assert (large["high"] - large["low"]) < 0.5 * (small["high"] - small["low"])
    assert bootstrap_ci([1.0, 2.0, 3.0], seed=4) == bootstrap_ci([1.0, 2.0, 3.0], seed=4)


def test_metric_cis_recomputes_topk_per_resample():
    # Rewards 0..9, K=1: each resample's top-1 is its max, so the interval lies inside [5, 9]
    # and reaches 9 (a fixed top-K set would give the degenerate interval [9, 9]).
    rewards = np.arange(10.0)
    emb = np.eye(10)
    sample = CompletionSample(rewards, emb, completions=[f"w{i} x" for i in range(10)])
    cis = metric_cis(sample, emb[:2], 1, n_boot=400, seed=0)
    low, high = cis["topk_mean"]
    assert high == 9.0 and 5.0 <= low < 9.0
    assert cis["mean_reward"][0] < 4.5 < cis["mean_reward"][1]
    assert {"diversity", "novelty", "distinct_1", "distinct_2", "mean_length"} <= set(cis)


# ----------------------------------------------------------------------------- report and plots


def _result(name, value):
    metrics = {
        "mean_reward": value,
        "std_reward": 1.0,
        "topk_mean": 7.0,
        "topk_std": 3.0,
        "diversity": 0.5,
        "novelty": float("nan"),
        "diversity_all": 0.4,
        "distinct_1": 0.3,
        "distinct_2": 0.6,
        "mean_length": 12.0,
    }
    return {"model": name, "metrics": metrics, "ci": {"topk_mean": [6.0, 8.0]}}


def test_report_md_layout(tmp_path):
    tests = [
        {
            "model": "tb",
            "baseline": "sft",
            "metric": "reward",
            "alternative": "greater",
            "t": 2.5,
            "df": 30.2,
            "p": 0.009,
        }
    ]
    path = write_report_md(
        [_result("sft", 1.0), _result("tb", 2.0)],
        tmp_path / "r.md",
        ReportInfo("stackexchange", "sft", tests),
    )
    text = path.read_text()
    assert "Table 1" in text and HEADER in text
    assert "| tb | 2.000 | 1.000 | 7.000 [6.000, 8.000] | 3.000 | 0.500 | n/a |" in text
    assert "Distinct-1" in text and "t = 2.500, df = 30.2, p = 0.009" in text
    assert (
        "Table 2"
        in write_report_md(
            [_result("a", 1.0)], tmp_path / "t.md", ReportInfo("toxicity")
        ).read_text()
    )


def test_plots_write_files_and_skip_missing_keys(tmp_path):
    png = plot_score_distributions(
        {"a": [0.1, 0.5, 0.7], "b": [2.0, 2.0, 2.0]}, tmp_path / "s.png", "t"
    )
    assert png.stat().st_size > 1000
    for name, keys in (
        ("r1", {"train/loss": 1.0, "train/log_z": 0.1}),
        ("r2", {"train/loss": 2.0}),
    ):
        (tmp_path / name).mkdir()
        rows = [{"step": s, **{k: v / (s + 1) for k, v in keys.items()}} for s in range(5)]
        (tmp_path / name / "metrics.jsonl").write_text(
            "\n".join(json.dumps(r) for r in rows) + "\n"
        )
    runs = {"r1": tmp_path / "r1", "r2": tmp_path / "r2"}
    assert plot_training_curves(runs, tmp_path / "c.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="none of the runs"):
        plot_training_curves(runs, tmp_path / "d.png", keys=("train/absent",))
    (tmp_path / "r2" / "metrics.jsonl").write_text('{"step": 0}\nnot json\n')
    with pytest.raises(ValueError, match="line 2"):
        plot_training_curves(runs, tmp_path / "e.png")


def test_compare_merges_dirs(tmp_path):
    for name, rewards in (("sft", [0.0, 1.0, 0.5]), ("tb", [2.0, 3.0, 2.5])):
        d = tmp_path / name
        write_metrics_json(
            {
                "task": "toxicity",
                "n": 3,
                "k": 2,
                "models": [_result(name, float(np.mean(rewards)))],
            },
            d / "metrics.json",
        )
        write_completions_jsonl(
            [{"model": name, "prompt": "p", "completion": "c", "reward": r} for r in rewards],
            d / "completions.jsonl",
        )
    out = compare_evaluations(
        [tmp_path / "sft", tmp_path / "tb"], tmp_path / "merged.md", baseline="sft"
    )
    text = out["report"].read_text()
    assert "Table 2" in text and "| sft |" in text and "| tb |" in text
    p = welch_one_sided([2.0, 3.0, 2.5], [0.0, 1.0, 0.5])["p"]
    assert f"p = {p:.3g}" in text and out["score_distributions"].is_file()
    with pytest.raises(ValueError, match="appears in both"):
        compare_evaluations([tmp_path / "sft", tmp_path / "sft"], tmp_path / "dup.md")


def test_task_inputs_from_files(tmp_path):
    rows = [{"prompt": "w1", "topic": "a"}, {"prompt": "w2", "topic": "b"}]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "d0.txt").write_text("w3 w4\nw5\n")
    inputs = task_inputs("toxicity", str(tmp_path / "p.jsonl"), str(tmp_path / "d0.txt"))
    assert inputs.prompts == ["w1", "w2"] and inputs.reward_columns == {"topic": ["a", "b"]}
    assert inputs.reference_completions == ["w3 w4", "w5"]
    (tmp_path / "bad.txt").write_text("w1\n\nw2\n")
    with pytest.raises(ValueError, match="line 2"):
        task_inputs("toxicity", str(tmp_path / "bad.txt"))


# ----------------------------------------------------------------------------- embeddings


def test_embed_cached_reuses_disk_cache(tmp_path):
    class Counting(Embedder):
        calls = 0

        def embed(self, texts):
            Counting.calls += 1
            return FakeEmbedder().embed(texts)

    first = Counting("some-model", cache_dir=tmp_path).embed_cached(["a b", "c"])
    again = Counting("some-model", cache_dir=tmp_path).embed_cached(["a b", "c"])
    other = Counting("other-model", cache_dir=tmp_path).embed_cached(["a b", "c"])
    assert Counting.calls == 2 and np.array_equal(first, again) and np.array_equal(first, other)
    assert len(list(tmp_path.glob("*.npy"))) == 2


@pytest.mark.slow
def test_shipped_minilm_embeds_offline():
    assert (shipped_minilm_path() / "model.safetensors").is_file()
    emb = Embedder(batch_size=4).embed(
        ["A cat sat on the mat.", "A kitten is sitting on a rug.", "Bond yields rose."]
    )
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.2


# ----------------------------------------------------------------------------- generation


def test_completion_mask_and_chat_template():
    mask = completion_mask(torch.tensor([[5, 3, 7, 3], [5, 6, 7, 8]]), [3])
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    tok = word_tokenizer()
    tok.chat_template = "{% for m in messages %}[BOS] {{ m['content'] }}{% endfor %}{% if add_generation_prompt %} w0{% endif %}"
    with left_padding(tok):
        enc = encode_prompts(tok, ["w5 w6", "w7"], use_chat_template=True)
        raw = encode_prompts(tok, ["w5 w6"], use_chat_template=False)
    assert enc["input_ids"].tolist() == [[2, 9, 10, 4], [0, 2, 11, 4]]  # left-padded, one BOS
    assert raw["input_ids"].tolist() == [[9, 10]] and tok.padding_side == "right"
    with pytest.raises(ValueError, match="temperature"):
        GenerationSettings(temperature=0.0)


def test_completion_logprobs_ignore_left_padding():
    model, tok = tiny_model(0), word_tokenizer()
    with left_padding(tok):
        enc = tok(["w1 w2 w3", "w4"], return_tensors="pt", padding=True)
    comp = torch.tensor([[5, 6, 3], [7, 3, 0]])
    batch = GeneratedBatch(
        enc["input_ids"], enc["attention_mask"], comp, completion_mask(comp, [3]), ["", ""]
    )
    batched = completion_logprobs(model, batch)
    alone = torch.tensor([[8, 7, 3]])  # "w4" (id 8) then completion [7, 3]
    logp = torch.log_softmax(model(input_ids=alone).logits[0, :-1].float(), -1)
    expected = [logp[0, 7].item(), logp[1, 3].item()]
    assert batched[1, :2].tolist() == pytest.approx(expected, abs=1e-5) and batched[1, 2] == 0


# ----------------------------------------------------------------------------- end to end


def test_evaluate_models_end_to_end(tmp_path):
    tok = word_tokenizer()
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(
        "".join(json.dumps({"step": s, "train/loss": 1 / (s + 1)}) + "\n" for s in range(4))
    )
    embedder = FakeEmbedder()
    prompts = ["w1 w2", "w3", "w4 w5 w6", "w7 w8"]  # fewer than n: cycled
    gen = GenerationSettings(temperature=1.0, max_new_tokens=6, batch_size=3)
    base, policy = ("base", tiny_model(0), tok), ("policy", tiny_model(1), tok)
    with pytest.warns(UserWarning, match="cycling"):
        results = evaluate_models(
            [base, policy],
            EvalInputs(prompts, count_w1, reference_completions=["w1 w2 w3", "w9 w10"]),
            EvalArgs(
                tmp_path / "out",
                n=6,
                k=3,
                generation=gen,
                seed=0,
                run_dirs={"tb": run},
                baseline="base",
                task="toxicity",
                n_boot=50,
            ),
            embedder,
            reference_model=("ref", base[1], tok),
        )
    out = tmp_path / "out"
    for name in (
        "metrics.json",
        "completions.jsonl",
        "report.md",
        "score_distributions.png",
        "training_curves.png",
    ):
        assert (out / name).is_file(), name
    records = [json.loads(line) for line in (out / "completions.jsonl").read_text().splitlines()]
    assert len(records) == 12 and records[4]["prompt"] == "w1 w2"  # prompt 4 = prompt 0 again
    meta = json.loads((out / "metrics.json").read_text())
    assert meta["n"] == 6 and meta["k"] == 3 and meta["seeds"]["generation"] == 0
    assert meta["generation"]["temperature"] == 1.0 and embedder.cached_calls == 1
    for res, entry in zip(results, meta["models"]):
        recs = [r for r in records if r["model"] == res["model"]]
        rewards = np.array([r["reward"] for r in recs])
        # Stored rewards are the reward of the stored text; metrics follow from them by hand.
        assert rewards == pytest.approx(count_w1(None, [r["completion"] for r in recs]).numpy())
        assert entry["metrics"]["mean_reward"] == pytest.approx(rewards.mean())
        assert entry["metrics"]["topk_mean"] == pytest.approx(np.sort(rewards)[-3:].mean())
        assert entry["ci"]["mean_reward"][0] <= rewards.mean() <= entry["ci"]["mean_reward"][1]
    # The reference model is the baseline itself: its KL to the reference is exactly 0.
    assert meta["models"][0]["metrics"]["kl_per_token"] == pytest.approx(0.0, abs=1e-6)
    assert meta["models"][1]["metrics"]["kl_per_token"] != pytest.approx(0.0, abs=1e-3)
    assert [t["model"] for t in meta["tests"]] == ["policy"]
    report = (out / "report.md").read_text()
    assert "Table 2" in report and HEADER in report and "policy vs base" in report


def test_cli_eval_parser_and_run(tmp_path, monkeypatch):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    eval_cli.add_eval_parser(sub)
    eval_cli.add_compare_parser(sub)
    model_dir = tmp_path / "tiny"
    tiny_model(2).save_pretrained(model_dir)
    word_tokenizer().save_pretrained(model_dir)
    (tmp_path / "p.txt").write_text("w1 w2\nw3\n")
    args = parser.parse_args(
        [
            "eval",
            "--model",
            str(model_dir),
            "--task",
            "toxicity",
            "--reward",
            "fake",
            "--n",
            "2",
            "--top-k",
            "2",
            "--output-dir",
            str(tmp_path / "o"),
            "--prompts",
            str(tmp_path / "p.txt"),
            "--max-new-tokens",
            "4",
            "--n-boot",
            "20",
            "--run-dir",
            "a=" + str(tmp_path),
        ]
    )
    assert args.temperature == 0.1 and args.run_dir == [("a", str(tmp_path))]
    assert parser.parse_args(["compare", "x", "y"]).output.name == "report.md"
    monkeypatch.setattr(eval_cli, "build_reward_from_spec", lambda spec: count_w1)
    monkeypatch.setattr("flowhf.evaluation.embeddings.Embedder", lambda *a, **k: FakeEmbedder())
    args.run_dir = []
    assert args.func(args) == 0
    meta = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert meta["reward"] == "fake" and meta["models"][0]["model"] == str(model_dir)
    with pytest.raises(SystemExit):
        parser.parse_args(
            ["eval", "--model", "m", "--task", "toxicity", "--output-dir", "o", "--run-dir", "bad"]
        )
