"""Tests for flowhf.rewards: adapters against hand-computed values, registry, prefix rules,
and the one-pass prefix scoring of causal reward models against per-prefix model calls."""

from __future__ import annotations

import math
import os
import textwrap

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from flowhf.rewards import (  # noqa: E402
    ClassifierReward,
    CombinedReward,
    EmbeddingReward,
    PythonReward,
    Reward,
    RewardTransform,
    SentimentReward,
    ToxicityReward,
    TransformedReward,
    build_reward,
)
from flowhf.rewards.base import hold_values, pad_prefix_rows, prefix_positions  # noqa: E402

# -- helpers ---------------------------------------------------------------------------------


class LengthReward(Reward):
    """Reward = number of characters; makes prefix values easy to compute by hand."""

    name = "length"

    def score(self, prompts, completions, **columns):
        return torch.tensor([float(len(c)) for c in completions])


class CharTokenizer:
    """Policy tokenizer stand-in: token id i decodes to chr(97 + i); id 99 is a special EOS."""

    def decode(self, ids, skip_special_tokens=True):
        return "".join(
            "" if (i == 99 and skip_special_tokens) else ("<eos>" if i == 99 else chr(97 + i))
            for i in ids
        )


@pytest.fixture(scope="module")
def bpe_tokenizer():
    """A small byte-level BPE tokenizer trained in memory (no download), pad = <pad>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=["<pad>", "<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    corpus = [
        "the cat sat on the mat",
        "hello world, the weather is lovely today",
        "a quick brown fox jumps",
    ]
    tk.train_from_iterator(corpus * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="<eos>")


@pytest.fixture(scope="module")
def tiny_rm(bpe_tokenizer):
    """A randomly initialised LlamaForSequenceClassification with one label and a pad token."""
    from transformers import LlamaForSequenceClassification

    from flowhf.models.tiny import tiny_llama_config

    tok = bpe_tokenizer
    config = tiny_llama_config(
        len(tok), hidden_size=32, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id
    )
    config.num_labels = 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return LlamaForSequenceClassification(config).eval()


# -- sentiment / toxicity --------------------------------------------------------------------


def test_vader_sign_and_order():
    reward = SentimentReward()
    texts = [
        "I love this, it is wonderful and amazing!",
        "It is good.",
        "The box is on the table.",
        "It is bad.",
        "This is terrible, awful and I hate it.",
    ]
    r = reward(["p"] * 5, texts)
    assert r.dtype == torch.float32 and r.shape == (5,)
    assert r[0] > r[1] > 0 and r[2] == 0 and 0 > r[3] > r[4]
    # One lexicon word: compound = v / sqrt(v^2 + 15) with valences good = 1.9, bad = -2.5.
    assert r[1] == pytest.approx(1.9 / math.sqrt(1.9**2 + 15), abs=1e-4)
    assert r[3] == pytest.approx(-2.5 / math.sqrt(2.5**2 + 15), abs=1e-4)
    assert torch.all(r.abs() <= 1)
    assert float(reward([""], [""])) == 0.0


def test_toxicity_modes_by_hand():
    from profanity_check import predict_prob

    texts = ["have a lovely day", "you are a stupid idiot", "fuck you"]
    p = predict_prob(texts).astype(np.float64)
    log1m = ToxicityReward()(["x"] * 3, texts)
    expected = [math.log(max(1 - q, 1e-6)) for q in p]
    assert torch.allclose(log1m, torch.tensor(expected, dtype=torch.float32), atol=1e-6)
    assert log1m[0] > -0.5 and log1m[2] < -5  # clean vs offensive
    assert torch.allclose(
        ToxicityReward("neg_prob")(["x"] * 3, texts), torch.tensor(-p, dtype=torch.float32)
    )
    assert torch.allclose(
        ToxicityReward("prob")(["x"] * 3, texts), torch.tensor(p, dtype=torch.float32)
    )
    assert ToxicityReward()([], []).shape == (0,)
    with pytest.raises(ValueError, match="log1m"):
        ToxicityReward("nope")
    clamped = ToxicityReward(eps=1e-4)  # p = 1 gives log(eps), never -inf
    clamped.offensive_prob = lambda texts: np.ones(len(texts))
    assert float(clamped(["x"], ["y"])) == pytest.approx(math.log(1e-4), rel=1e-6)


# -- combine / transforms --------------------------------------------------------------------


def test_weighted_sum_exact():
    texts = ["I love it", "I hate it", "ok"]
    s, t = SentimentReward(), ToxicityReward("neg_prob")
    combined = CombinedReward([s, t], [0.7, -2.5])
    expected = 0.7 * s(["p"] * 3, texts) - 2.5 * t(["p"] * 3, texts)
    assert torch.allclose(combined(["p"] * 3, texts), expected, atol=1e-7)
    parts = combined.components(["p"] * 3, texts)
    assert set(parts) == {"sentiment", "toxicity:neg_prob"}


def test_running_normalisation_and_floor():
    transform = RewardTransform(normalize="running", clip=None)
    wrapped = TransformedReward(LengthReward(), transform)
    out = wrapped(["p"] * 4, ["a", "bb", "ccc", "dddd"])  # lengths 1..4: mean 2.5, var 1.25
    expected = (torch.tensor([1.0, 2, 3, 4]) - 2.5) / (1.25**0.5 + 1e-6)
    assert torch.allclose(out, expected, atol=1e-6)
    wrapped(["p"] * 2, ["a" * 9, "a" * 11])  # all six values 1,2,3,4,9,11: mean 5, var 82/6
    assert transform.mean == pytest.approx(5.0) and transform.var == pytest.approx(82 / 6)
    assert transform.count == 6
    clipped = TransformedReward(LengthReward(), RewardTransform(normalize="running", clip=1.0))
    assert float(clipped(["p"] * 3, ["a", "a", "a" * 30]).max()) == 1.0
    affine = TransformedReward(
        LengthReward(), RewardTransform(normalize="affine", scale=2.0, shift=-3.0, floor=0.0)
    )
    assert affine(["p"] * 3, ["a", "bb", "cccc"]).tolist() == [0.0, 1.0, 5.0]  # 2*1-3 = -1 floored


def test_transformed_prefixes_use_final_stats():
    wrapped = TransformedReward(LengthReward(), RewardTransform(normalize="running", clip=None))
    out = wrapped.score_prefixes(["p", "p"], [[0, 1], [2, 3, 4, 5]], CharTokenizer())
    mean, std = 3.0, 1.0  # finals are 2 and 4
    expected = (torch.tensor([[0, 1, 2, 2, 2], [0, 1, 2, 3, 4]], dtype=torch.float32) - mean) / (
        std + 1e-6
    )
    assert torch.allclose(out, expected, atol=1e-6)
    assert wrapped.transform.count == 2  # only the two full completions entered the stats


# -- prefix rules ----------------------------------------------------------------------------


def test_prefix_padding_rule_and_stride():
    rows = [torch.tensor([0.0, 1.0]), torch.tensor([5.0, 6.0, 7.0, 8.0])]
    assert pad_prefix_rows(rows).tolist() == [[0, 1, 1, 1], [5, 6, 7, 8]]
    assert prefix_positions(7, 3) == [0, 3, 6, 7]
    assert prefix_positions(6, 3) == [0, 3, 6]
    assert hold_values(7, [0, 3, 6, 7], [10, 13, 16, 17]).tolist() == [
        10,
        10,
        10,
        13,
        13,
        13,
        16,
        17,
    ]

    reward = LengthReward()
    tok = CharTokenizer()
    out = reward.score_prefixes(["p", "q"], [[0, 1, 99], [2, 3, 4, 5, 6]], tok)
    # EOS (id 99) decodes to "" so its prefix equals the previous one; row 0 padded with its final.
    assert out.tolist() == [[0, 1, 2, 2, 2, 2], [0, 1, 2, 3, 4, 5]]
    reward.set_prefix_stride(2)
    out = reward.score_prefixes(["p", "q"], [[0, 1, 99], [2, 3, 4, 5, 6]], tok)
    assert out.tolist() == [[0, 0, 2, 2, 2, 2], [0, 0, 2, 2, 4, 5]]


def test_prefix_columns_follow_rows():
    def ref_len(prompts, completions, reference):
        return [len(c) + 100 * len(r) for c, r in zip(completions, reference)]

    reward = PythonReward(ref_len)
    out = reward.score_prefixes(["p", "q"], [[0], [1, 2]], CharTokenizer(), reference=["x", "yy"])
    assert out.tolist() == [[100, 101, 101], [200, 201, 202]]


def test_bad_inputs_raise_clear_errors():
    reward = LengthReward()
    with pytest.raises(ValueError, match="2 prompts but 1 completions"):
        reward(["a", "b"], ["c"])
    with pytest.raises(ValueError, match="column 'reference' has 1 values"):
        reward(["a", "b"], ["c", "d"], reference=["x"])
    with pytest.raises(TypeError, match="policy tokenizer"):
        reward.score_prefixes(["a"], [[1]], None)


# -- python callable -------------------------------------------------------------------------


def test_python_callable_from_module_and_file(tmp_path, monkeypatch):
    source = textwrap.dedent(
        """
        def count_a(prompts, completions, bonus=None, **kw):
            return [c.count("a") + (bonus[i] if bonus else 0) for i, c in enumerate(completions)]

        def wrong_length(prompts, completions, **kw):
            return [1.0]

        def gives_none(prompts, completions, **kw):
            return [None for _ in completions]
        """
    )
    path = tmp_path / "my_rewards.py"
    path.write_text(source)
    from_file = build_reward(f"python:{path}:count_a")
    assert from_file(["p", "p"], ["banana", "xyz"], bonus=[0.5, 2]).tolist() == [3.5, 2.0]
    monkeypatch.syspath_prepend(str(tmp_path))
    from_module = build_reward("python:my_rewards:count_a")
    assert from_module(["p"], ["aa"]).tolist() == [2.0]
    with pytest.raises(ValueError, match=r"shape \(1,\), expected \(2,\)"):
        build_reward("python:my_rewards:wrong_length")(["p", "p"], ["a", "b"])
    with pytest.raises(TypeError, match="must return 1 numbers"):
        build_reward("python:my_rewards:gives_none")(["p"], ["a"])
    with pytest.raises(AttributeError, match="no attribute 'missing'"):
        build_reward("python:my_rewards:missing")
    with pytest.raises(ModuleNotFoundError, match="no_such_module"):
        build_reward("python:no_such_module:f")


# -- registry --------------------------------------------------------------------------------


def test_registry_parsing():
    assert isinstance(build_reward("sentiment"), SentimentReward)
    assert build_reward("toxicity:neg_prob").mode == "neg_prob"
    r = build_reward("0.7*sentiment + 0.3*toxicity")
    assert isinstance(r, CombinedReward) and r.weights == [0.7, 0.3]
    assert isinstance(r.rewards[1], ToxicityReward) and r.rewards[1].mode == "log1m"
    r = build_reward("sentiment + -0.5*toxicity:prob")
    assert r.weights == [1.0, -0.5]
    r = build_reward("embedding:answer@/some/model")
    assert isinstance(r, EmbeddingReward) and r.column == "answer" and r.model_name == "/some/model"
    r = build_reward(
        {"type": "toxicity", "mode": "prob", "weight": 2.0, "normalize": "running", "floor": -1}
    )
    assert isinstance(r, CombinedReward) and r.weights == [2.0]
    inner = r.rewards[0]
    assert isinstance(inner, TransformedReward) and inner.transform.normalize == "running"
    assert inner.transform.floor == -1.0
    r = build_reward(
        {"type": "sentiment", "normalize": {"scale": 2, "shift": 1}, "prefix_stride": 3}
    )
    assert r.transform.normalize == "affine" and r.transform.scale == 2 and r.prefix_stride == 3
    r = build_reward(["sentiment", {"type": "toxicity", "weight": 0.5}])
    assert isinstance(r, CombinedReward) and r.weights == [1.0, 0.5]
    assert build_reward(lambda prompts, completions: [1.0] * len(completions))(
        ["a"], ["b"]
    ).tolist() == [1.0]


def test_registry_errors():
    with pytest.raises(
        ValueError,
        match="unknown reward 'sentimant'.*classifier, embedding, python, sentiment, stackexchange-rm, toxicity",
    ):
        build_reward("sentimant")
    with pytest.raises(ValueError, match="unknown reward 'bleu'"):
        build_reward({"type": "bleu"})
    with pytest.raises(ValueError, match="needs an argument: embedding:COLUMN"):
        build_reward("embedding")
    with pytest.raises(ValueError, match="takes no argument"):
        build_reward("sentiment:x")
    with pytest.raises(ValueError, match="log1m"):
        build_reward("toxicity:wrong")
    with pytest.raises(ValueError, match="empty term"):
        build_reward("sentiment + ")
    with pytest.raises(ValueError, match="'type' key"):
        build_reward({"path": "x"})
    with pytest.raises(TypeError, match="reward 'sentiment'.*colour"):
        build_reward({"type": "sentiment", "colour": "red"})
    with pytest.raises(OSError, match="could not load the classifier '/no/such/folder'"):
        build_reward("classifier:/no/such/folder")


# -- embedding -------------------------------------------------------------------------------


# -- classifier and the one-pass prefix scoring ----------------------------------------------


def _rm(tiny_rm, tok, **kw) -> ClassifierReward:
    return ClassifierReward(model=tiny_rm, tokenizer=tok, batch_size=3, **kw)


def test_classifier_options_and_keyword_overrides(tiny_rm, bpe_tokenizer):
    from flowhf.rewards.classifier import ClassifierOptions

    options = ClassifierOptions(batch_size=5, prefix_mode="text")
    rm = ClassifierReward(
        model=tiny_rm, tokenizer=bpe_tokenizer, options=options, batch_size=2, name="rm"
    )
    assert (rm.batch_size, rm.prefix_mode, rm.name, rm.input_format) == (2, "text", "rm", "concat")
    with pytest.raises(ValueError, match="classifier output must be one of"):
        ClassifierReward(model=tiny_rm, tokenizer=bpe_tokenizer, output="nope")


def _direct(model, ids: list[int]) -> float:
    """The model's own forward on ONE unpadded sequence (the ground truth)."""
    with torch.no_grad():
        return float(model(input_ids=torch.tensor([ids])).logits[0, 0])


def test_one_pass_equals_per_prefix_calls(tiny_rm, bpe_tokenizer):
    tok = bpe_tokenizer
    rm = _rm(tiny_rm, tok)
    prompts = ["the cat", "hello world, the", "a", "quick brown"]
    g = torch.Generator().manual_seed(1)
    lengths = [7, 1, 12, 0]  # different lengths -> right-padded batches (batch_size 3 splits rows)
    completion_ids = [torch.randint(2, len(tok), (n,), generator=g).tolist() for n in lengths]
    completion_ids[0][-1] = tok.eos_token_id  # an EOS action at the end of a completion
    assert rm.prefix_route(tok) == ("one_pass", "auto")

    one_pass = rm.score_prefixes(prompts, completion_ids, tok)
    assert rm._one_pass_verified and rm._one_pass_problem is None  # no silent fallback
    per_prefix = rm.score_prefixes_token_ids(prompts, completion_ids)
    assert one_pass.shape == (4, 13) and one_pass.dtype == torch.float32
    assert torch.allclose(one_pass, per_prefix, atol=1e-5, rtol=0)

    contexts = rm.context_ids(prompts)
    for b, (ctx, ids) in enumerate(zip(contexts, completion_ids)):
        for t in range(13):
            expected = _direct(tiny_rm, ctx + ids[: min(t, len(ids))])
            assert abs(float(one_pass[b, t]) - expected) < 1e-5, (b, t)
    # The values really vary along the prefix (the test could fail).
    assert one_pass[2].std() > 1e-3


def test_one_pass_pad_equals_eos_and_truncation(bpe_tokenizer):
    """pad id == EOS: the model skips a trailing EOS; the one-pass route must do the same."""
    from transformers import LlamaForSequenceClassification

    from flowhf.models.tiny import tiny_llama_config

    tok = bpe_tokenizer
    config = tiny_llama_config(len(tok), hidden_size=32, pad_token_id=tok.eos_token_id)
    config.num_labels = 3
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        model = LlamaForSequenceClassification(config).eval()
    rm = ClassifierReward(
        model=model,
        tokenizer=tok,
        label=2,
        output="log_prob",
        max_length=9,
        batch_size=2,
        prefix_mode="one_pass",
    )
    prompts = ["the cat sat", "a"]
    completion_ids = [
        [40, 41, tok.eos_token_id, 42, tok.eos_token_id],
        [50, 51, 52, 53, 54, 55, 56, 57, 58, 59],
    ]
    one_pass = rm.score_prefixes(prompts, completion_ids, tok)  # raises if verification fails
    assert rm._one_pass_verified and rm._one_pass_problem is None
    assert torch.allclose(
        one_pass, rm.score_prefixes_token_ids(prompts, completion_ids), atol=1e-5, rtol=0
    )
    ctx = rm.context_ids(prompts)
    with torch.no_grad():
        for b in range(2):
            for t in range(len(completion_ids[b]) + 1):
                ids = (ctx[b] + completion_ids[b][:t])[:9]
                expected = model(input_ids=torch.tensor([ids])).logits.log_softmax(-1)[0, 2]
                assert abs(float(one_pass[b, t]) - float(expected)) < 1e-5, (b, t)


def test_classifier_labels_and_text_route(tiny_rm, bpe_tokenizer):
    tok = bpe_tokenizer
    rm = _rm(tiny_rm, tok)
    text_scores = rm(["the cat", "a"], [" sat on the mat", " quick fox"])
    ids = [tok("the cat sat on the mat")["input_ids"], tok("a quick fox")["input_ids"]]
    assert torch.allclose(text_scores, torch.tensor([_direct(tiny_rm, i) for i in ids]), atol=1e-5)
    # A different vocabulary forces the text route (decode + re-tokenise).
    other = type("OtherTok", (), {"get_vocab": lambda self: {"x": 0}, "decode": tok.decode})()
    assert rm.prefix_route(other)[0] == "text"
    with pytest.raises(ValueError, match="not possible"):
        _rm(tiny_rm, tok, prefix_mode="one_pass").prefix_route(other)
    config = tiny_rm.config
    config_labels = type(config)(
        **{**config.to_dict(), "num_labels": 2, "id2label": {0: "NEG", 1: "POS"}}
    )
    from flowhf.rewards.classifier import resolve_label

    assert resolve_label(config_labels, "pos") == 1 and resolve_label(config_labels, 0) == 0
    with pytest.raises(ValueError, match="2 labels \\(0=NEG, 1=POS\\)"):
        resolve_label(config_labels, None)
    with pytest.raises(ValueError, match="unknown label 'MAYBE'"):
        resolve_label(config_labels, "MAYBE")


def test_combined_prefixes_mix_routes(tiny_rm, bpe_tokenizer):
    tok = bpe_tokenizer
    rm = _rm(tiny_rm, tok)
    length = LengthReward()
    combined = CombinedReward([rm, length], [0.5, 2.0])
    prompts, ids = (
        ["the cat", "a"],
        [tok(" sat on")["input_ids"], tok(" quick brown fox")["input_ids"]],
    )
    expected = 0.5 * rm.score_prefixes(prompts, ids, tok) + 2.0 * length.score_prefixes(
        prompts, ids, tok
    )
    assert torch.allclose(combined.score_prefixes(prompts, ids, tok), expected, atol=1e-6)


def test_one_pass_verification_falls_back(tiny_rm, bpe_tokenizer, monkeypatch, caplog):
    """A model whose one-pass values disagree with its own forward is detected, not trusted."""
    from flowhf.rewards import classifier_prefix

    tok = bpe_tokenizer
    real = classifier_prefix.position_values
    monkeypatch.setattr(
        classifier_prefix, "position_values", lambda rm, batch: real(rm, batch) + 1.0
    )
    prompts, ids = ["the cat", "a"], [[40, 41, 42], [50]]
    rm = _rm(tiny_rm, tok)
    with caplog.at_level("WARNING"):
        out = rm.score_prefixes(prompts, ids, tok)
    assert "differ from the model's own forward" in caplog.text
    assert torch.allclose(out, rm.score_prefixes_token_ids(prompts, ids), atol=1e-6)
    assert rm.prefix_route(tok)[0] == "token_ids"
    with pytest.raises(RuntimeError, match="differ"):
        _rm(tiny_rm, tok, prefix_mode="one_pass").score_prefixes(prompts, ids, tok)
