"""Distribution tasks on a real-LM code path, checked on a tiny character-level model.

The tiny model's actions are 7 tokens (3 specials + a, b, c, q), so answers such as "a" + EOS
carry a few percent of its mass: the exact masses can be checked by hand, against a plain
chain-rule loop and against samples.
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from flowhf.experiments.lmtask import TaskError, load_task
from flowhf.experiments.lmtask.exact import ExactTarget, log_other_count, partition_metrics
from flowhf.experiments.lmtask.reward import AnswerSetReward
from flowhf.experiments.lmtask.task import task_from_dict

TASKS_DIR = Path(__file__).resolve().parents[1] / "benchmarks" / "lm_tasks"
CHARS = ["a", "b", "c", "q"]
TASK = {
    "name": "tiny",
    "prompts": ["q"],
    "answers": {"a": 1.0, "b": 1.0, "ab": 0.0},
    "other_reward": -5.0,
    "beta": 1.0,
    "alpha": 0.0,
    "max_new_tokens": 3,
}


def char_tokenizer():
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    vocab = {
        "<|endoftext|>": 0,
        "<|im_start|>": 1,
        "<|im_end|>": 2,
        **{c: 3 + i for i, c in enumerate(CHARS)},
    }
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.decoder = decoders.Fuse()  # decode = concatenation, as byte-level BPE
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    fast.padding_side = "left"
    return fast


@pytest.fixture(scope="module")
def tiny():
    from flowhf.models.tiny import tiny_llama

    tok = char_tokenizer()
    model = tiny_llama(
        7, seed=3, hidden_size=32, num_layers=2, eos_token_id=2, pad_token_id=0, bos_token_id=1
    )
    return model.eval(), tok


@pytest.fixture()
def tiny_dir(tiny, tmp_path):
    model, tok = tiny
    model.save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def test_char_tokenizer_is_one_token_per_char(tiny):
    _, tok = tiny
    assert tok("ab", add_special_tokens=False)["input_ids"] == [3, 4]
    assert tok.eos_token_id == 2


# -- task files --------------------------------------------------------------------------------


def test_shipped_tasks_load_and_meet_the_issue(tmp_path):
    tasks = {p.stem: load_task(p) for p in TASKS_DIR.glob("*.yaml")}
    assert len(tasks) >= 4
    uniform0 = [
        t
        for t in tasks.values()
        if t.alpha == 0 and all(len(set(i.answers.values())) == 1 for i in t.items)
    ]
    assert any(t.answers_total >= 40 for t in uniform0)
    assert any(
        t.alpha == 1 and t.answers_total >= 8 and len(set(t.items[0].answers.values())) > 1
        for t in tasks.values()
    )
    assert any(len(t.items) > 1 for t in tasks.values())


@pytest.mark.parametrize(
    "change, message",
    [
        ({"beta": None}, "missing key 'beta'"),
        ({"alpha": 0.5}, "alpha=0.5"),
        ({"answers": ["a"]}, "answers must be a non-empty mapping"),
        ({"answers": {"a": "high"}}, "answers['a'] must be a finite number"),
        ({"answer": {"a": 1}}, "unknown key(s) ['answer']"),
        ({"max_new_tokens": 1}, "max_new_tokens must be an integer >= 2"),
        ({"prompts": "q"}, "prompts must be a non-empty list"),
        ({"prompts": [{"prompt": "q", "answer": {}}]}, "prompts[0] must have keys"),
    ],
)
def test_bad_task_files_name_the_key(tmp_path, change, message):
    data = {**TASK, **change}
    data = {k: v for k, v in data.items() if v is not None}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(TaskError) as err:
        load_task(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_top_level_list_and_syntax_error_are_named(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(TaskError, match="line 1: expected a mapping of task keys"):
        load_task(path)
    path.write_text("prompts: [unclosed\n")
    with pytest.raises(TaskError, match="line 2: YAML syntax error"):
        load_task(path)


TASK_FILE = """name: lines
prompts:
  - q
  - prompt: r
    answers:
      a: 1.0
      b: {b}
answers: {{a: 1.0}}
other_reward: -5.0
beta: {beta}
alpha: {alpha}
max_new_tokens: 3
"""


@pytest.mark.parametrize(
    "values, message",
    [
        ({"beta": "high"}, "line 10: beta must be a finite number, got 'high'"),
        ({"alpha": 0.5}, "line 11: alpha=0.5: use 0"),
        ({"b": "x"}, "line 7: prompts[1].answers['b'] must be a finite number, got 'x'"),
    ],
)
def test_task_errors_name_the_line(tmp_path, values, message):
    """Errors name the file and the line of the key (the line table of flowhf.config.fields, as configs)."""
    path = tmp_path / "task.yaml"
    path.write_text(TASK_FILE.format(**{"beta": 1.0, "alpha": 0.0, "b": 2.0, **values}))
    with pytest.raises(TaskError) as err:
        load_task(path)
    assert str(err.value).startswith(f"{path}, {message}"), str(err.value)


def test_answer_too_long_names_its_line(tmp_path, tiny):
    _, tok = tiny
    path = tmp_path / "task.yaml"
    path.write_text(TASK_FILE.format(beta=1.0, alpha=0.0, b=2.0).replace("      b:", "      abc:"))
    with pytest.raises(
        TaskError, match=rf"^{path}, line 7: answers\['abc'\] of prompt 2 is 3 tokens"
    ):
        load_task(path).canonical_ids(tok)


def test_answer_too_long_for_the_limit_and_duplicates(tiny):
    _, tok = tiny
    with pytest.raises(TaskError, match=r"answers\['abc'\].*max_new_tokens >= 4"):
        task_from_dict({**TASK, "answers": {"abc": 1.0}}).canonical_ids(tok)

    def same_ids(text, add_special_tokens=False):  # two spellings, one token sequence
        return {"input_ids": [3]}

    with pytest.raises(TaskError, match="same token ids"):
        task_from_dict({**TASK, "answers": {"a": 1.0, "A": 1.0}}).canonical_ids(same_ids)
    with pytest.raises(TaskError, match="appears twice"):
        task_from_dict({**TASK, "answers": {1: 1.0, "1": 2.0}})


# -- the reward on ids -------------------------------------------------------------------------


def test_reward_pays_only_canonical_ids_followed_by_eos(tiny):
    _, tok = tiny
    reward = AnswerSetReward(task_from_dict(TASK), tok, [2])
    ids = [[3, 2], [3], [3, 4, 2], [4, 3, 2], [2]]
    got = reward(["q"] * 5, ["a", "a", "ab", "ba", ""], completion_ids=ids)
    assert got.tolist() == [1.0, -5.0, 0.0, -5.0, -5.0]
    with pytest.raises(ValueError, match="completion_ids"):
        reward(["q"], ["a"])
    prefixes = reward.score_prefixes(["q"], [[3, 4, 2]], tok)  # "", "a", "ab", "ab"+EOS
    assert prefixes.tolist() == [[-5.0, 1.0, 0.0, 0.0]]


# -- exact masses ------------------------------------------------------------------------------


def test_other_count_by_hand():
    # V = 7 actions, one EOS, at most 3 actions: 1 + 6 + 36 EOS-ended + 216 forced = 259; minus 3 answers
    assert math.isclose(log_other_count(7, 1, 3, 3), math.log(256), rel_tol=1e-12)
    assert math.isclose(log_other_count(10, 2, 2, 1), math.log(2 * (1 + 8) + 64 - 2), rel_tol=1e-12)


def test_exact_target_by_hand_alpha0(tiny):
    model, tok = tiny
    target = ExactTarget.build(task_from_dict(TASK), model, tok, chat_template=False)
    e = math.e
    expected = np.array([e, e, 1.0, 256 * e**-5])
    assert np.allclose(np.exp(target.target_log[0]), expected / expected.sum(), atol=1e-12)


def test_exact_target_alpha1_uses_the_reference(tiny):
    model, tok = tiny
    task = task_from_dict({**TASK, "alpha": 1.0})
    target = ExactTarget.build(task, model, tok, chat_template=False)
    q = np.exp(target.model_log(model)[0])  # the reference itself
    tilted = q * np.exp(np.array([1.0, 1.0, 0.0, -5.0]))
    assert np.allclose(np.exp(target.target_log[0]), tilted / tilted.sum(), atol=1e-10)


def chain_rule_log_prob(model, prompt: list[int], seq: list[int]) -> float:
    """log p(seq | prompt) by one forward per step: independent of completion_log_probs."""
    total, ids = 0.0, list(prompt)
    with torch.no_grad():
        for token in seq:
            logits = model(input_ids=torch.tensor([ids])).logits[0, -1].double()
            total += float(torch.log_softmax(logits, -1)[token])
            ids.append(token)
    return total


def test_model_answer_probabilities_match_the_chain_rule(tiny):
    model, tok = tiny
    target = ExactTarget.build(task_from_dict(TASK), model, tok, chat_template=False)
    got = np.exp(target.model_log(model)[0])
    prompt = target.prompt_ids[0]
    for a, seq in enumerate([[3, 2], [4, 2], [3, 4, 2]]):
        assert math.isclose(got[a], math.exp(chain_rule_log_prob(model, prompt, seq)), rel_tol=1e-5)
    assert math.isclose(got.sum(), 1.0, rel_tol=1e-9) and got[-1] > 0


def test_partition_metrics_by_hand():
    p = np.log(np.array([0.5, 0.5, 0.0 + 1e-300]))
    q = np.log(np.array([0.7, 0.2, 0.1]))
    m = partition_metrics(p, q)
    assert math.isclose(m.tv, 0.3, abs_tol=1e-12)
    assert m.coverage == 1 and m.answers_total == 2
    assert math.isclose(m.answer_mass, 0.9) and math.isclose(m.top_share, 0.7 / 0.9)
    assert math.isclose(m.kl, 0.5 * math.log(0.5 / 0.7) + 0.5 * math.log(0.5 / 0.2), rel_tol=1e-9)


def test_exact_figures_agree_with_2000_samples(tiny):
    model, tok = tiny
    target = ExactTarget.build(task_from_dict(TASK), model, tok, chat_template=False)
    check = target.sampling_check(model, max_new_tokens=3, n=2000, seed=0)
    row = check["per_prompt"][0]
    assert sum(row["frequencies"][:3]) > 0.02  # the answers are actually drawn
    assert check["max_abs_z"] < 4.0 and check["min_chi2_p"] > 1e-3
    # and a wrong "exact" distribution is rejected by the same statistic
    counts = np.array(row["frequencies"]) * 2000
    wrong = np.array(row["exact"]) * np.array([2.0, 0.5, 1.0, 1.0])
    wrong /= wrong.sum()
    z = np.abs(counts - 2000 * wrong) / np.sqrt(2000 * wrong * (1 - wrong))
    assert z.max() > 4.0


def test_short_training_run_lowers_tv(tiny_dir, tmp_path):
    from flowhf.experiments.lmtask.methods import RunSpec, StartModel, train_method

    task = task_from_dict(TASK)
    from flowhf.models.loading import load_causal_lm

    start, tok = load_causal_lm(str(tiny_dir), dtype="float32")
    target = ExactTarget.build(task, start, tok, chat_template=False)
    before = target.evaluate(start)["tv"]
    from flowhf.experiments.lmtask.exact import ExactTrace

    trace = ExactTrace(target, every=10)
    spec = RunSpec(
        "recommended",
        seconds=1e9,
        seed=0,
        output_dir=tmp_path / "run",
        overrides=(
            "model.chat_template=false",
            "optim.max_steps=30",
            "optim.max_seconds=null",
            "model.lora=false",
            "optim.learning_rate=0.01",
        ),
        callbacks=(trace,),
    )
    trained = train_method(task, StartModel(start, tok, tiny_dir, target.eos_ids), spec)
    after = target.evaluate(trained.model)
    assert trained.steps == 30
    assert after["tv"] < 0.5 * before, (before, after["tv"])
    # the learning curve: steps 10, 20, 30, the last point being the trained model itself
    assert [p["step"] for p in trace.points] == [10, 20, 30]
    assert abs(trace.points[-1]["tv"] - after["tv"]) < 1e-6
    assert trace.points[-1]["model"][0] == after["per_prompt"][0]["distribution"]["model"]


def test_cli_runs_every_kind_of_method_and_writes_table_and_plot(tmp_path):
    """`flowhf bench lm-target --all` as a subprocess: FlowHF, TRL GRPO and PPO on the tiny model."""
    import subprocess
    import sys

    task = tmp_path / "letters.yaml"
    task.write_text(
        yaml.safe_dump(
            {
                "name": "letters",
                "prompts": ["Name a letter."],
                "answers": {"a": 1.0, "b": 1.0},
                "other_reward": -3.0,
                "beta": 1.0,
                "alpha": 0.0,
                "max_new_tokens": 3,
            }
        )
    )
    out = tmp_path / "results"
    cmd = [
        sys.executable,
        "-m",
        "flowhf.cli",
        "bench",
        "lm-target",
        "--task",
        str(task),
        "--all",
        "--methods",
        "untrained",
        "recommended",
        "grpo",
        "ppo",
        "--model",
        "tiny-random",
        "--no-warm-start",
        "--seconds",
        "2",
        "--out-dir",
        str(out),
        "--sample-check",
        "50",
        "--set",
        "lora_r=4",
        "--set",
        "lora_alpha=8",
        "--baseline-set",
        "lr=0.001",
    ]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "FAILED" not in done.stderr, done.stderr[-3000:]
    for method in ("untrained", "recommended", "grpo", "ppo"):
        result = json.loads((out / f"letters__{method}__seed0.json").read_text())
        for key in (
            "tv",
            "kl",
            "answer_mass",
            "coverage",
            "answers_total",
            "top_share",
            "entropy",
            "steps",
            "seconds",
            "method",
            "task",
        ):
            assert key in result, (method, key)
        assert result["answers_total"] == 2 and 0.0 <= result["tv"] <= 1.0
        assert (result["steps"] >= 1) == (method != "untrained")
    assert "sampling_check" in json.loads((out / "letters__recommended__seed0.json").read_text())
    for method in ("grpo", "ppo"):  # --baseline-set reaches TRL's runners, and the JSON says so
        result = json.loads((out / f"letters__{method}__seed0.json").read_text())
        assert result["overrides"] == ["lr=0.001"] and result["details"]["settings"]["lr"] == 0.001
    assert "| grpo |" in (out / "letters__seed0.md").read_text()
    assert (out / "letters__seed0.png").stat().st_size > 1000
    summary = subprocess.run(
        [
            sys.executable,
            "-m",
            "flowhf.cli",
            "bench",
            "lm-target",
            "--summary",
            "--out-dir",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert summary.returncode == 0 and "| ppo |" in summary.stdout, summary.stderr[-2000:]
    assert (out / "summary.png").is_file()


def test_a_text_level_reward_pays_spellings_no_tokenizer_produces():
    """Why the reward is on canonical ids: with a merge 'ab', the text "ab" has two spellings."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    from flowhf.experiments.lmtask.task import spellings

    vocab = {
        "<|endoftext|>": 0,
        "<|im_start|>": 1,
        "<|im_end|>": 2,
        "a": 3,
        "b": 4,
        "c": 5,
        "q": 6,
        "ab": 7,
    }
    bpe = Tokenizer(models.BPE(vocab=vocab, merges=[("a", "b")]))
    bpe.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    assert tok("ab", add_special_tokens=False)["input_ids"] == [7]  # canonical: the merged token
    assert spellings("ab", tok, max_tokens=2) == 2 and spellings("ab", tok, max_tokens=1) == 1
    assert spellings("abab", tok, max_tokens=4) == 4
    task = task_from_dict({**TASK, "answers": {"ab": 1.0}})
    on_ids = AnswerSetReward(task, tok, [2])
    text_level = {"ab": 1.0}  # what a reward on decoded text sees
    non_canonical = [3, 4, 2]
    assert tok.decode(non_canonical, skip_special_tokens=True) == "ab"
    assert (
        text_level[tok.decode(non_canonical, skip_special_tokens=True)] == 1.0
    )  # paid as the answer
    assert on_ids(["q"], ["ab"], completion_ids=[non_canonical]).item() == task.other_reward
    assert on_ids(["q"], ["ab"], completion_ids=[[7, 2]]).item() == 1.0


def test_warm_start_data_holds_no_task_answer_and_no_digit():
    """The generic warm start teaches the bare-answer format, never a task's distribution."""
    from flowhf.experiments.lmtask.warmstart import short_answer_rows

    rows = short_answer_rows()
    assert len(rows) >= 100 and len({r["category"] for r in rows}) >= 30
    taught = {r["answer"].strip().lower() for r in rows}
    for path in TASKS_DIR.glob("*.yaml"):
        answers = {a.strip().lower() for item in load_task(path).items for a in item.answers}
        assert not taught & answers, (path.name, sorted(taught & answers))
    assert not any(ch.isdigit() for r in rows for ch in r["answer"] + r["prompt"])


def test_baseline_options_are_typed_and_keep_fairness_fixed():
    """--baseline-set values reach TRL typed (YAML reads 3e-4 as a string); fairness keys are refused."""
    from flowhf.errors import ConfigError
    from flowhf.experiments.lmtask.methods import baseline_options

    assert baseline_options("grpo", ("lr=3e-4", "beta=0")) == {"lr": 3e-4, "beta": 0.0}
    assert isinstance(baseline_options("ppo", ("lr=1e-5",))["lr"], float)
    with pytest.raises(ConfigError, match="every method gets the same budget"):
        baseline_options("ppo", ("budget={seconds: 5}",))
