"""reward_funcs called TRL's way (`flowhf.rewards.functions`): one item or a list, functions
(sync / async) with keywords, None skipped by the weighted sum, FlowHF specs and
sequence-classification models as items, and prefix rewards of a plain function."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer, LlamaForSequenceClassification, TrainerState

from flowhf.errors import ConfigError, RewardError
from flowhf.models.tiny import tiny_llama_config, tiny_model_dir
from flowhf.rewards.functions import RewardBatch, RewardFunctions
from flowhf.training.trainer import FlowHFTrainer
from tests.test_trainer import tiny_config


def batch(conversational: bool = False) -> RewardBatch:
    prompts = ["Say hi.", "Add 2 and 3."]
    if conversational:
        prompts = [
            [{"role": "system", "content": "Be brief."}, {"role": "user", "content": p}]
            for p in prompts
        ]
    return RewardBatch(
        prompts,
        ["hi there", "5"],
        [[5, 6, 2], [7]],
        {"task": ["chat", "math"], "answer": [None, "5"]},
        [3, 8],
    )


def build(spec, weights=None, columns=(), state=None):
    return RewardFunctions.build(
        spec, weights=weights, columns=list(columns), trainer_state=state or TrainerState()
    )


def test_functions_get_trls_keywords_and_every_column():
    seen = {}

    def recorder(
        prompts, completions, completion_ids, trainer_state, log_extra, log_metric, **columns
    ):
        seen.update(
            prompts=prompts,
            completions=completions,
            ids=completion_ids,
            state=trainer_state,
            columns=columns,
        )
        log_metric("hits", 2.0)
        return [1.0, 2.0]

    state = TrainerState(global_step=7)
    rewards = build(recorder, state=state)
    assert rewards(batch()).tolist() == [1.0, 2.0]
    assert seen["prompts"] == ["Say hi.", "Add 2 and 3."] and seen["completions"] == [
        "hi there",
        "5",
    ]
    assert (
        seen["ids"] == [[5, 6, 2], [7]]
        and seen["state"] is state
        and seen["state"].global_step == 7
    )
    assert seen["columns"] == {"task": ["chat", "math"], "answer": [None, "5"]}
    assert rewards.log.pop() == {"hits": 2.0} and rewards.log.pop() == {}


def test_conversational_completions_are_assistant_messages_and_flowhf_rewards_get_text():
    got = {}

    def fn(prompts, completions, **_):
        got["prompt"], got["completion"] = prompts[0], completions[0]
        return [0.0, 0.0]

    from flowhf.rewards.base import Reward

    class Echo(Reward):
        def score(self, prompts, completions, **columns):
            got["flowhf"] = (prompts, completions, sorted(columns))
            return torch.zeros(len(prompts))

    build([fn, Echo()], columns=["task"])(batch(conversational=True))
    assert got["prompt"][0] == {"role": "system", "content": "Be brief."}
    assert got["completion"] == [{"role": "assistant", "content": "hi there"}]
    assert got["flowhf"] == (
        ["Say hi.", "Add 2 and 3."],
        ["hi there", "5"],
        ["task"],
    )  # data.reward_columns only


def test_none_is_skipped_by_the_weighted_sum_and_all_none_is_an_error_naming_the_row():
    def math(answer, completions, **_):
        return [None if a is None else float(c == a) for a, c in zip(answer, completions)]

    def length(completions, **_):
        return [len(c) / 10 for c in completions]

    rewards = build([math, length], weights=[2.0, 1.0])
    assert rewards(batch()).tolist() == pytest.approx([0.8, 2.0 + 0.1])
    assert rewards.last_means == pytest.approx({"math": 1.0, "length": 0.45})

    def never(completions, **_):
        return [None] * len(completions)

    with pytest.raises(
        RewardError,
        match=r"every reward function \(math \+ never\) returned None for dataset row 3 "
        r"\(prompt 'Say hi.', completion 'hi there'",
    ):
        build([math, never])(batch())


def test_a_nan_is_not_a_none():
    def nan(completions, **_):
        return [float("nan"), 1.0]

    assert torch.isnan(
        build(nan)(batch())[0]
    )  # left to target.nonfinite_reward (an error by default)


def test_async_functions_run_and_mix_with_sync_ones():
    async def slow(completions, **_):
        return [1.0 for _ in completions]

    def fast(completions, **_):
        return [2.0 for _ in completions]

    assert build([slow, fast])(batch()).tolist() == [3.0, 3.0]


def test_bad_outputs_and_counts_are_errors_naming_the_function():
    with pytest.raises(
        RewardError, match=r"reward function 'short' returned 1 values for 2 completions"
    ):
        build(_named("short", [1.0]))(batch())
    with pytest.raises(RewardError, match=r"reward function 'words' returned 'good' \(str\)"):
        build(_named("words", ["good", 1.0]))(batch())
    with pytest.raises(
        ConfigError, match=r"target.reward_weights has 1 weights but there are 2 reward functions"
    ):
        build([_named("a", [0, 0]), _named("b", [0, 0])], weights=[1.0])
    with pytest.raises(TypeError, match="is not a function, a flowhf.rewards spec"):
        build(42)
    with pytest.raises(
        ValueError,
        match="is neither a local model folder .* for a Hub reward model use 'classifier:org/rm'",
    ):
        build("org/rm")


def _named(name, values):
    def fn(**_):
        return list(values)

    fn.__name__ = name
    return fn


def test_a_flowhf_spec_item_equals_the_spec():
    from flowhf.rewards import build_reward

    spec = "python:flowhf.rewards.toy:letter_share"
    b = batch()
    assert torch.equal(build(spec)(b), build_reward(spec)(b.text_prompts(), b.completions))
    assert torch.equal(
        build([spec, spec], weights=[0.5, 0.5])(b),
        build_reward(spec)(b.text_prompts(), b.completions),
    )


def test_sequence_classification_model_as_object_or_folder_is_its_logit_of_prompt_plus_completion(
    tmp_path,
):
    folder = tiny_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    config = tiny_llama_config(len(tokenizer), hidden_size=32, pad_token_id=tokenizer.pad_token_id)
    config.num_labels = 1
    torch.manual_seed(0)
    model = LlamaForSequenceClassification(config).eval()
    model.save_pretrained(tmp_path / "rm")
    tokenizer.save_pretrained(tmp_path / "rm")
    b = batch()
    with torch.no_grad():
        expected = torch.stack(
            [
                model(**tokenizer(p + c, return_tensors="pt")).logits[0, 0]
                for p, c in zip(b.prompts, b.completions)
            ]
        )
    by_object = RewardFunctions.build(
        model, weights=None, columns=[], trainer_state=None, processing_classes=[tokenizer]
    )
    assert by_object(b) == pytest.approx(expected, abs=1e-4)
    assert build(str(tmp_path / "rm"))(b) == pytest.approx(expected, abs=1e-4)


def test_a_function_is_scored_on_text_prefixes_with_its_log_calls_muted():
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir())
    ids = [
        tokenizer("hello world", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id],
        tokenizer("ok", add_special_tokens=False)["input_ids"],
    ]
    texts = [tokenizer.decode(i, skip_special_tokens=True) for i in ids]
    b = RewardBatch(["p", "q"], texts, ids, {}, [1, 2])
    calls = []

    def length(completions, completion_ids, log_metric, **_):
        log_metric("calls", 1.0)
        calls.append(len(completions))
        return [float(len(c)) for c in completions]

    rewards = build(length)
    prefix = rewards.score_prefixes(b, tokenizer)
    assert prefix.shape == (2, len(ids[0]) + 1)
    for row, row_ids in enumerate(ids):
        for t in range(len(row_ids) + 1):
            assert prefix[row, t] == len(tokenizer.decode(row_ids[:t], skip_special_tokens=True))
        assert (
            prefix[row, len(row_ids) :] == prefix[row, len(row_ids)]
        ).all()  # padding repeats the last value
    assert len(calls) == 1 and rewards.log.pop() == {}  # one call per step; log_metric muted
    rewards.set_prefix_stride(2)
    held = rewards.score_prefixes(b, tokenizer)
    assert (
        held[0, 1] == held[0, 0] and held[0, len(ids[0])] == prefix[0, len(ids[0])]
    )  # held between, exact at the end


@pytest.mark.parametrize("objective", ["subtb", "tb"])
def test_one_plain_function_trains_with_any_objective_as_a_one_element_list_does(
    tmp_path, objective
):
    def share(completions, **_):  # no score_prefixes: subtb scores its text prefixes
        return [sum(ch in "aeiou" for ch in c) / max(len(c), 1) for c in completions]

    rows = [{"prompt": "Describe the sea."}, {"prompt": "Describe a forest."}]
    metrics = []
    for spec in (share, [share]):
        trainer = FlowHFTrainer(
            args=tiny_config(tmp_path / str(len(metrics)), f"objective.objective={objective}"),
            reward_funcs=spec,
            train_dataset=rows,
        )
        metrics.append(trainer.training_step())
    assert metrics[0]["train/loss"] == pytest.approx(metrics[1]["train/loss"])
    assert metrics[0]["train/skipped"] == 0.0
