"""TRL baselines: budget, metric mapping, reward adapters, and 2-step SFT / GRPO / PPO runs on a
tiny random LLaMA with a word-level tokenizer (pad == EOS, like SmolLM2)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    LlamaForSequenceClassification,
    PreTrainedTokenizerFast,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)

from flowhf.config.baselines import apply_override, check_config
from flowhf.experiments.baselines import (
    RUNNERS,
    Budget,
    BudgetCallback,
    BudgetExhausted,
    TokenCounter,
    run_grpo,
    run_ppo,
    run_sft,
)
from flowhf.experiments.baselines.common import encode_prompt
from flowhf.experiments.baselines.metrics import map_logs
from flowhf.experiments.baselines.ppo_models import ensure_distinct_pad
from flowhf.experiments.baselines.reward_adapters import (
    PPOTextReward,
    PromptIndex,
    grpo_reward_function,
)
from flowhf.models.lora import LoraSettings
from flowhf.models.tiny import tiny_llama, tiny_llama_config

WORDS = (
    "user assistant how do i sort a list in python use sorted it returns new what is good bad "
    "great day the weather today nice . ? ,"
).split()
CHAT = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
QUESTIONS = [
    "how do i sort a list in python ?",
    "what is a good day ?",
    "how is the weather today ?",
]
LORA = LoraSettings(r=4, alpha=8, dropout=0.0)


def make_tokenizer(spare: bool = True) -> PreTrainedTokenizerFast:
    """Word-level tokenizer with a chat template and pad == EOS (<|im_end|>), like SmolLM2."""
    specials = ["<unk>", "<|im_start|>", "<|im_end|>"] + (["<|spare|>"] if spare else [])
    vocab = {t: i for i, t in enumerate(specials + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        additional_special_tokens=specials[3:],
    )
    tok.chat_template = CHAT
    tok.padding_side = "left"
    return tok


def make_policy(tok, seed: int = 0):
    return tiny_llama(
        len(tok), seed=seed, hidden_size=32, bos_token_id=1, eos_token_id=2, pad_token_id=2
    )


def good_fraction(prompts, completions, **columns):
    """Share of words equal to 'good' (a reward with hand-checkable values)."""
    return torch.tensor([c.split().count("good") / max(1, len(c.split())) for c in completions])


class Recording:
    """A FlowHF reward that remembers every batch it scored."""

    name = "recording"

    def __init__(self):
        self.calls = []

    def __call__(self, prompts, completions, **columns):
        scores = good_fraction(prompts, completions) + 0.1 * torch.tensor(
            [len(c.split()) for c in completions]
        )
        self.calls.append(
            {
                "prompts": list(prompts),
                "completions": list(completions),
                "columns": columns,
                "scores": scores,
            }
        )
        return scores


@pytest.fixture(autouse=True)
def _single_thread(monkeypatch):
    """Tiny ops on 2 shared, busy cores are >10x slower with 2 OpenMP threads (spin contention)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture()
def se_file(tmp_path: Path) -> Path:
    path = tmp_path / "se.jsonl"
    rows = [
        {
            "qid": str(i),
            "question": QUESTIONS[i % 3],
            "response_j": "use sorted . it returns a new list .",
            "response_k": "bad",
        }
        for i in range(6)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def state_at(step: int) -> TrainerState:
    state = TrainerState()
    state.global_step = step
    return state


# -- budget ------------------------------------------------------------------------------------


def test_budget_needs_a_positive_limit():
    with pytest.raises(ValueError, match="at least one limit"):
        Budget()
    with pytest.raises(ValueError, match="max_steps"):
        Budget(max_steps=0)
    with pytest.raises(ValueError, match="unknown budget key"):
        Budget.coerce({"steps": 3})
    assert Budget.coerce({"seconds": 5}).to_dict() == {
        "seconds": 5,
        "generated_tokens": None,
        "completions": None,
        "max_steps": None,
    }


def test_budget_callback_stops_on_seconds(tmp_path):
    times = iter([100.0, 100.4, 101.2])  # train begin, step 1, step 2
    cb = BudgetCallback(
        Budget(seconds=1.0), record_path=tmp_path / "b.json", clock=lambda: next(times)
    )
    args, control = TrainingArguments(output_dir=str(tmp_path), report_to="none"), TrainerControl()
    cb.on_train_begin(args, state_at(0), control)
    cb.on_step_end(args, state_at(1), control)
    assert not control.should_training_stop
    cb.on_step_end(args, state_at(2), control)
    assert control.should_training_stop
    record = json.loads((tmp_path / "b.json").read_text())
    assert record["stopped_by"] == "seconds" and record["steps"] == 2
    assert record["elapsed_seconds"] == pytest.approx(1.2)


def test_budget_callback_stops_on_tokens_and_can_raise(tmp_path):
    counter = TokenCounter()
    cb = BudgetCallback(Budget(generated_tokens=10, max_steps=100), counter, raise_on_stop=True)
    args, control = TrainingArguments(output_dir=str(tmp_path), report_to="none"), TrainerControl()
    cb.on_train_begin(args, state_at(0), control)
    counter.add([3, 4])
    cb.on_step_end(args, state_at(1), control)  # 7 < 10
    counter.add([2, 1])
    with pytest.raises(BudgetExhausted, match="generated_tokens"):
        cb.on_step_end(args, state_at(2), control)
    assert cb.record()["tokens_generated"] == 10 and cb.record()["completions_generated"] == 4


def test_budget_callback_stops_on_scored_completions(tmp_path):
    counter = TokenCounter()
    cb = BudgetCallback(Budget(completions=8, seconds=1e9), counter)
    args, control = TrainingArguments(output_dir=str(tmp_path), report_to="none"), TrainerControl()
    cb.on_train_begin(args, state_at(0), control)
    counter.add([5, 5, 5, 5])
    assert not cb.on_step_end(args, state_at(1), control).should_training_stop  # 4 < 8
    counter.add([5, 5, 5, 5])
    assert cb.on_step_end(args, state_at(2), control).should_training_stop
    assert cb.record()["stopped_by"] == "completions" and cb.record()["completions_generated"] == 8


# -- metric names, reward adapters, pad token, config --------------------------------------------


def test_map_logs_grpo_and_ppo_names():
    metrics, summary = map_logs(
        {
            "loss": 0.5,
            "reward": 0.25,
            "kl": 0.01,
            "completions/mean_length": 7.0,
            "rewards/good/mean": 0.25,
            "train_runtime": 3.0,
            "epoch": 1.0,
            "note": None,
        }
    )
    assert metrics == {
        "train/loss": 0.5,
        "train/reward_mean": 0.25,
        "train/kl_per_token": 0.01,
        "train/completion_length_mean": 7.0,
        "train/rewards/good/mean": 0.25,
        "train/epoch": 1.0,
    }
    assert summary == {"train_runtime": 3.0}
    ppo, _ = map_logs(
        {
            "objective/scores": 0.3,
            "objective/kl": 2.0,
            "loss/policy_avg": -0.2,
            "loss/value_avg": 0.5,
            "lr": 1e-4,
        },
        vf_coef=0.1,
    )
    assert (
        ppo["train/reward_mean"] == 0.3
        and ppo["train/kl"] == 2.0
        and ppo["train/learning_rate"] == 1e-4
    )
    assert ppo["train/loss"] == pytest.approx(-0.2 + 0.1 * 0.5)


def test_grpo_reward_function_unwraps_conversations_and_counts_tokens():
    reward, counter = Recording(), TokenCounter()
    fn = grpo_reward_function(reward, counter)
    prompts = [[{"role": "user", "content": "what is good ?"}]] * 2
    completions = [
        [{"role": "assistant", "content": "good day"}],
        [{"role": "assistant", "content": "bad"}],
    ]
    out = fn(
        prompts,
        completions,
        completion_ids=[[5, 6, 2], [7]],
        trainer_state=object(),
        log_metric=print,
        topic=["a", "b"],
    )
    assert out == pytest.approx([0.5 + 0.2, 0.0 + 0.1])
    call = reward.calls[0]
    assert call["prompts"] == ["what is good ?"] * 2 and call["completions"] == ["good day", "bad"]
    assert call["columns"] == {"topic": ["a", "b"]}  # TRL's own kwargs removed
    assert counter.total == 4 and counter.completions == 2
    assert fn.__name__ == "recording"


def test_ppo_text_reward_through_trl_get_reward():
    from trl.experimental.utils import get_reward

    tok = make_tokenizer()
    ensure_distinct_pad(tok, make_policy(tok))
    pad = tok.pad_token_id
    prompts = [
        "what is good ?",
        "what is good ? good",
    ]  # plain text: the first is a token prefix of the second
    prompt_ids = [encode_prompt(tok, p, False) for p in prompts]
    assert prompt_ids[1][: len(prompt_ids[0])] == prompt_ids[0]
    reward, counter = Recording(), TokenCounter()
    module = PPOTextReward(reward, tok, prompts, prompt_ids, {"topic": ["x", "y"]}, counter)
    ids = lambda text: tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    rows = [(prompt_ids[0], ids("good good day") + [tok.eos_token_id]), (prompt_ids[1], ids("bad"))]
    width_q = max(len(q) for q, _ in rows)
    width_r = max(len(r) for _, r in rows)
    batch = torch.tensor(
        [[pad] * (width_q - len(q)) + q + r + [pad] * (width_r - len(r)) for q, r in rows]
    )
    _, scores, _ = get_reward(module, batch, pad, width_q)
    assert scores.tolist() == pytest.approx([2 / 3 + 0.3, 0.0 + 0.1])
    assert reward.calls[0]["prompts"] == prompts  # the longer prompt was not cut at the shorter one
    assert reward.calls[0]["completions"] == ["good good day", "bad"]
    assert reward.calls[0]["columns"] == {"topic": ["x", "y"]}
    assert counter.total == 4 + 1  # EOS counts as a generated token


def test_prompt_index_uses_the_batch_wide_prompt_end_and_refuses_ambiguity():
    index = PromptIndex([[5, 6], [5, 6, 7]])
    ids = torch.tensor([[0, 5, 6, 7, 8], [5, 6, 7, 9, 0]])  # row 0 is ambiguous on its own
    mask = torch.tensor([[0, 1, 1, 1, 1], [1, 1, 1, 1, 0]])
    assert index.split_batch(ids, mask) == [(0, [7, 8]), (1, [9])]
    with pytest.raises(ValueError, match="cannot tell where the prompts end"):
        index.split_batch(torch.tensor([[5, 6, 7, 8]]), torch.ones(1, 4))
    with pytest.raises(ValueError, match="no known training prompt"):
        index.split_batch(torch.tensor([[4, 6]]), torch.ones(1, 2))


def test_distinct_pad_reuses_a_spare_special_token_or_adds_one():
    tok = make_tokenizer(spare=True)
    model = make_policy(tok)
    info = ensure_distinct_pad(tok, model)
    assert info == {"pad_token": "<|spare|>", "pad_token_id": 3, "how": "reused"}
    assert model.get_input_embeddings().num_embeddings == len(tok)
    bare = make_tokenizer(spare=False)
    model = make_policy(bare)
    rows = model.get_input_embeddings().num_embeddings
    info = ensure_distinct_pad(bare, model)
    assert (
        info["how"] == "added"
        and info["pad_token_id"] == rows
        and bare.pad_token_id != bare.eos_token_id
    )
    assert model.get_input_embeddings().num_embeddings == rows + 1
    assert ensure_distinct_pad(bare, model)["how"] == "kept"


def test_config_checks_keys_and_overrides():
    config = {
        "method": "grpo",
        "model": "smollm2",
        "prompts_source": "x",
        "reward_spec": "sentiment",
        "output_dir": "o",
        "budget": {"max_steps": 3},
    }
    apply_override(config, "budget.max_steps=2")
    apply_override(config, "lora=null")
    method, kwargs = check_config(config)
    assert (
        RUNNERS[method].__name__ == "run_grpo"
        and kwargs["budget"] == {"max_steps": 2}
        and kwargs["lora"] is None
    )
    with pytest.raises(ValueError, match="unknown key"):
        check_config({**config, "num_generation": 4})
    with pytest.raises(ValueError, match="missing required"):
        check_config({"method": "ppo", "model": "m"})


def test_shipped_configs_are_valid():
    root = Path(__file__).resolve().parents[1] / "configs" / "baselines"
    from flowhf.config.baselines import load_config

    methods = {
        RUNNERS[check_config(load_config(p))[0]].__name__ for p in sorted(root.glob("*.yaml"))
    }
    assert methods == {"run_sft", "run_grpo", "run_ppo"}


# -- end to end on tiny models -------------------------------------------------------------------


def completion_nll(model, tok, question: str, answer: str) -> float:
    """Mean NLL of the answer tokens (chat-formatted) under ``model``."""
    prompt = encode_prompt(tok, question, True)
    full = tok.apply_chat_template(
        [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
        tokenize=True,
    )["input_ids"]
    ids = torch.tensor([full])
    with torch.no_grad():
        logp = (
            model(input_ids=ids).logits.log_softmax(-1)[0, :-1].gather(-1, ids[0, 1:, None])[:, 0]
        )
    return float(-logp[len(prompt) - 1 :].mean())


def test_sft_two_steps(tmp_path, se_file):
    tok = make_tokenizer()
    policy = make_policy(tok)
    before = completion_nll(policy, tok, QUESTIONS[0], "use sorted . it returns a new list .")
    result = run_sft(
        make_policy(tok),
        se_file,
        tmp_path / "sft",
        budget={"max_steps": 2},
        tokenizer=tok,
        lora=LORA,
        batch_size=4,
        lr=1e-2,
    )
    assert (
        result["steps"] == 2
        and result["stopped_by"] == "max_steps"
        and result["tokens_generated"] == 0
    )
    rows = read_jsonl(tmp_path / "sft" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2] and all(math.isfinite(r["train/loss"]) for r in rows)
    assert (
        json.loads((tmp_path / "sft" / "result.json").read_text())["final_loss"]
        == rows[-1]["train/loss"]
    )
    trained = AutoModelForCausalLM.from_pretrained(result["model_dir"])
    saved_tok = AutoTokenizer.from_pretrained(result["model_dir"])
    after = completion_nll(trained, saved_tok, QUESTIONS[0], "use sorted . it returns a new list .")
    assert after < before - 0.01  # two steps at lr 1e-2 fit the training answer better


def test_grpo_two_steps_logs_the_rewards_it_computed(tmp_path, se_file):
    tok, reward = make_tokenizer(), Recording()
    result = run_grpo(
        make_policy(tok),
        se_file,
        reward,
        tmp_path / "grpo",
        budget={"max_steps": 2},
        tokenizer=tok,
        lora=LORA,
        num_generations=4,
        max_completion_length=6,
        lr=1e-2,
    )
    rows = read_jsonl(tmp_path / "grpo" / "metrics.jsonl")
    assert result["steps"] == 2 and [r["step"] for r in rows] == [1, 2] and len(reward.calls) == 2
    for row, call in zip(rows, reward.calls):
        assert call["prompts"][0] in QUESTIONS and len(call["completions"]) == 4
        assert row["train/reward_mean"] == pytest.approx(float(call["scores"].mean()), abs=1e-6)
    expected_tokens = sum(4 * r["train/completion_length_mean"] for r in rows)
    assert (
        result["tokens_generated"] == pytest.approx(expected_tokens)
        and rows[-1]["train/tokens_generated"] == result["tokens_generated"]
    )
    assert result["final_reward_mean"] == rows[-1]["train/reward_mean"]
    original = make_policy(tok)
    trained = AutoModelForCausalLM.from_pretrained(result["model_dir"])
    diff = max(
        (a - b).abs().max().item() for a, b in zip(trained.parameters(), original.parameters())
    )
    assert diff > 0  # LoRA merged into the saved weights


@pytest.mark.parametrize(
    "budget,reason",
    [
        ({"seconds": 1e-3, "max_steps": 5}, "seconds"),
        ({"generated_tokens": 1, "max_steps": 5}, "generated_tokens"),
    ],
)
def test_grpo_budget_stops_after_one_step(tmp_path, se_file, budget, reason):
    tok = make_tokenizer()
    result = run_grpo(
        make_policy(tok),
        se_file,
        good_fraction,
        tmp_path / "g",
        budget=budget,
        tokenizer=tok,
        lora=LORA,
        num_generations=2,
        max_completion_length=4,
    )
    assert result["steps"] == 1 and result["stopped_by"] == reason
    assert json.loads((tmp_path / "g" / "budget.json").read_text())["stopped_by"] == reason


def test_ppo_two_steps_with_a_python_reward(tmp_path, se_file):
    tok, reward = make_tokenizer(), Recording()
    policy = make_policy(tok)
    policy.generation_config.eos_token_id = [
        2
    ]  # TRL rewrites it to 2 for the rollouts; the run restores it
    result = run_ppo(
        policy,
        se_file,
        reward,
        tmp_path / "ppo",
        budget={"max_steps": 2},
        tokenizer=tok,
        lora=LORA,
        batch_size=4,
        max_completion_length=6,
        lr=1e-2,
        num_ppo_epochs=1,
    )
    rows = read_jsonl(tmp_path / "ppo" / "metrics.jsonl")
    assert result["steps"] == 2 and [r["step"] for r in rows] == [1, 2] and len(reward.calls) == 2
    for row, call in zip(rows, reward.calls):
        assert set(call["prompts"]) <= set(QUESTIONS) and len(call["completions"]) == 4
        assert row["train/reward_mean"] == pytest.approx(float(call["scores"].mean()), abs=1e-6)
    assert 2 * 4 <= result["tokens_generated"] <= 2 * 4 * 6
    assert result["settings"]["pad"]["how"] == "reused"
    assert {"train/loss", "train/kl", "train/value_loss"} <= set(rows[-1])
    saved_tok = AutoTokenizer.from_pretrained(result["model_dir"])
    assert saved_tok.pad_token_id == saved_tok.eos_token_id  # the caller's tokenizer, unchanged
    assert tok.pad_token_id == tok.eos_token_id
    assert GenerationConfig.from_pretrained(result["model_dir"]).eos_token_id == [2]
    AutoModelForCausalLM.from_pretrained(result["model_dir"])


def test_ppo_native_classifier_rm_stops_on_tokens(tmp_path, se_file):
    tok = make_tokenizer()
    config = tiny_llama_config(len(tok), hidden_size=32, pad_token_id=2)
    config.num_labels = 1
    torch.manual_seed(0)
    rm = LlamaForSequenceClassification(config)
    result = run_ppo(
        make_policy(tok),
        se_file,
        rm,
        tmp_path / "ppo",
        budget={"generated_tokens": 1, "max_steps": 4},
        tokenizer=tok,
        lora=LORA,
        batch_size=4,
        max_completion_length=4,
        num_ppo_epochs=1,
    )
    assert result["steps"] == 1 and result["stopped_by"] == "generated_tokens"
    assert result["settings"]["reward_route"] == "native_classifier"
    assert 4 <= result["tokens_generated"] <= 16
    assert len(read_jsonl(tmp_path / "ppo" / "metrics.jsonl")) == 1
