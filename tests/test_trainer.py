"""The trainer on a tiny random model: every objective runs, parameters move, resume is exact,
non-finite steps are skipped, and the saved run loads with PEFT / transformers."""

import json
import math

import pytest
import torch

from flowhf.config.training import FlowHFConfig
from flowhf.training.trainer import FlowHFTrainer, NonFiniteStep


def tiny_config(tmp_path, *overrides, steps=2):
    data = {
        "model": {"name": "tiny-random", "lora_r": 4, "lora_alpha": 8},
        "target": {"reward": "python:flowhf.rewards.toy:letter_share", "beta": 5.0, "alpha": 1.0},
        "objective": {"objective": "subtb"},
        "sampling": {"max_new_tokens": 6, "prompts_per_step": 2, "samples_per_prompt": 3},
        "optim": {"learning_rate": 1e-2, "max_steps": steps, "seed": 0},
        "data": {"dataset": "sentiment_prompts", "limit": 16},
        "logging": {"output_dir": str(tmp_path / "run"), "save_steps": 0, "progress_bar": False},
    }
    from flowhf.config.training import apply_overrides

    apply_overrides(data, list(overrides))
    return FlowHFConfig.from_dict(data)


def trainable_snapshot(trainer):
    return {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize(
    "objective,logz",
    [
        ("tb", "batch"),
        ("tb", "importance"),
        ("tb", "scalar"),
        ("tb", "prompt"),
        ("fl", "batch"),
        ("db", "batch"),
        ("subtb", "batch"),
        ("pg", "batch"),
    ],
)
def test_every_objective_updates_parameters_with_finite_loss(tmp_path, objective, logz):
    cfg = tiny_config(tmp_path, f"objective.objective={objective}", f"objective.logz={logz}")
    trainer = FlowHFTrainer(args=cfg)
    before = trainable_snapshot(trainer)
    metrics = trainer.training_step()
    assert math.isfinite(metrics["train/loss"]) and metrics["train/skipped"] == 0.0
    after = trainable_snapshot(trainer)
    assert any(not torch.equal(before[n], after[n]) for n in before), "no policy parameter changed"
    if objective in ("fl", "db", "subtb"):
        assert "flow_head" in trainer.heads


def test_replay_and_offpolicy_rows_enter_the_batch(tmp_path):
    cfg = tiny_config(
        tmp_path,
        "replay.replay_ratio=0.34",
        "sampling.samples_per_prompt=3",
        "objective.objective=tb",
    )
    two_prompts = [{"prompt": "Describe the sea."}, {"prompt": "Describe a forest."}]
    trainer = FlowHFTrainer(args=cfg, train_dataset=two_prompts)
    trainer.training_step()
    assert len(trainer.replay) > 0
    batch, _ = trainer.build_batch(trainer.next_prompt_rows())
    assert batch.sources.count("replay") == 2 and batch.sources.count("policy") == 4
    rows = [{"prompt": "Say something nice.", "answer": "What a lovely day it is!"}] * 4
    cfg2 = tiny_config(
        tmp_path, "sampling.offpolicy_column=answer", "sampling.offpolicy_fraction=0.34"
    )
    trainer2 = FlowHFTrainer(args=cfg2, train_dataset=rows)
    batch2, _ = trainer2.build_batch(trainer2.next_prompt_rows())
    off = [i for i, s in enumerate(batch2.sources) if s == "offpolicy"]
    assert len(off) == 2
    text = trainer2.tokenizer.decode(batch2.completion_lists()[off[0]], skip_special_tokens=True)
    # the answer is longer than max_new_tokens: cut there and forced-terminated (no EOS action)
    assert "What a lovely day it is!".startswith(text) and len(text) > 3
    assert batch2.lengths[off[0]] == 6 and not batch2.ended_with_eos[off[0]]


def test_importance_log_z_reads_the_replay_buffer(tmp_path):
    cfg = tiny_config(
        tmp_path, "objective.objective=tb", "objective.logz=importance", "replay.replay_ratio=0.34"
    )
    trainer = FlowHFTrainer(
        args=cfg, train_dataset=[{"prompt": "Describe the sea."}, {"prompt": "Describe a forest."}]
    )
    for _ in range(2):
        metrics = trainer.training_step()
        assert math.isfinite(metrics["train/loss"]) and metrics["train/skipped"] == 0.0
    batch, _ = trainer.build_batch(trainer.next_prompt_rows())
    assert trainer.update.reads_known_set
    known_log_z, known_member = trainer.rollout.known_set(batch, 5.0, cfg.target.alpha)
    assert torch.isfinite(known_log_z).all()  # both prompts have stored completions
    assert known_member[
        [s == "replay" for s in batch.sources]
    ].all()  # replayed rows are known by definition
    assert torch.isnan(batch.log_q[[s == "replay" for s in batch.sources]]).all()
    assert torch.isfinite(batch.log_q[[s == "policy" for s in batch.sources]]).all()


def test_resume_is_exact(tmp_path):
    straight = FlowHFTrainer(args=tiny_config(tmp_path / "a", "replay.replay_ratio=0.34", steps=6))
    straight.train()
    first = FlowHFTrainer(
        args=tiny_config(
            tmp_path / "b", "replay.replay_ratio=0.34", "logging.save_steps=3", steps=3
        )
    )
    first.train()
    resumed = FlowHFTrainer(
        args=tiny_config(
            tmp_path / "b", "replay.replay_ratio=0.34", "logging.save_steps=3", steps=6
        )
    )
    resumed.train(resume=True)
    a, b = trainable_snapshot(straight), trainable_snapshot(resumed)
    assert max((a[n] - b[n]).abs().max().item() for n in a) < 1e-6
    ha = straight.heads["flow_head"].state_dict()
    hb = resumed.heads["flow_head"].state_dict()
    assert all(torch.allclose(ha[k], hb[k], atol=1e-6) for k in ha)

    def losses(d):
        return [
            r["train/loss"]
            for r in map(json.loads, (d / "run" / "metrics.jsonl").read_text().splitlines())
        ]

    assert losses(tmp_path / "a") == pytest.approx(losses(tmp_path / "b"), abs=1e-6)


def test_completions_budget_stops_the_run_and_survives_resume(tmp_path):
    # 2 prompts x 3 samples = 6 reward calls a step: 13 completions are reached after 3 steps
    first = FlowHFTrainer(
        args=tiny_config(tmp_path, "optim.max_completions=7", "logging.save_steps=1", steps=50)
    )
    first.train()
    assert first.state.global_step == 2 and first.state.completions_scored == 12
    resumed = FlowHFTrainer(
        args=tiny_config(tmp_path, "optim.max_completions=13", "logging.save_steps=1", steps=50)
    )
    resumed.train(resume=True)  # the budget may grow on resume; the count is not restarted
    assert resumed.state.global_step == 3 and resumed.state.completions_scored == 18
    rows = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["train/completions_scored"] for r in rows] == [6, 12, 18]


def test_non_finite_steps_are_skipped_then_stop(tmp_path):
    calls = {"n": 0}

    def flaky(prompts, completions, **_):
        calls["n"] += 1
        return torch.full(
            (len(prompts),), 3e38 if calls["n"] >= 2 else 0.5
        )  # finite, but beta * r overflows

    cfg = tiny_config(tmp_path, "objective.objective=tb", "optim.max_skipped_steps=2", steps=5)
    trainer = FlowHFTrainer(args=cfg, reward_funcs=flaky)
    trainer.training_step()
    before = trainable_snapshot(trainer)
    metrics = trainer.training_step()
    assert metrics["train/skipped"] == 1.0
    after = trainable_snapshot(trainer)
    assert all(torch.equal(before[n], after[n]) for n in before), (
        "a skipped step changed parameters"
    )
    record = json.loads((tmp_path / "run" / "skipped_steps.jsonl").read_text().splitlines()[0])
    assert "log_reward" in record["reason"]
    with pytest.raises(
        NonFiniteStep,
        match="2 consecutive steps skipped for a non-finite .*log_reward.*; likely cause: the target log R",
    ):
        trainer.training_step()


def test_nonfinite_reward_is_an_error_naming_it_or_floored_and_counted(tmp_path):
    from flowhf.errors import RewardError

    def infinite(prompts, completions, **_):
        return torch.tensor([float("inf")] + [0.5] * (len(prompts) - 1))

    trainer = FlowHFTrainer(
        args=tiny_config(tmp_path, "objective.objective=tb"), reward_funcs=infinite
    )
    with pytest.raises(
        RewardError,
        match=r"reward 'infinite' gave a value of inf at step 1 for prompt '.+' and completion",
    ):
        trainer.training_step()
    floored = FlowHFTrainer(
        args=tiny_config(
            tmp_path,
            "objective.objective=subtb",
            "target.nonfinite_reward=floor",
            "target.reward_floor=-1",
        ),
        reward_funcs=_with_prefixes(infinite),
    )
    metrics = floored.training_step()
    assert metrics["train/nonfinite_rewards"] == 1.0 and metrics["train/skipped"] == 0.0
    with pytest.raises(ValueError, match="needs target.reward_floor"):
        tiny_config(tmp_path, "target.nonfinite_reward=floor")


def _with_prefixes(fn):
    from flowhf.rewards.base import Reward

    class Wrapped(Reward):
        def __call__(self, prompts, completions, **kw):
            return fn(prompts, completions)

    return Wrapped()


def test_a_run_that_applied_no_update_fails(tmp_path):
    def overflow(prompts, completions, **_):
        return torch.full((len(prompts),), 3e38)

    trainer = FlowHFTrainer(
        args=tiny_config(tmp_path, "objective.objective=tb", "optim.max_skipped_steps=5", steps=2),
        reward_funcs=overflow,
    )
    with pytest.raises(NonFiniteStep, match="no update was applied: all 2 steps were skipped"):
        trainer.train()


def test_saved_run_loads_with_peft_and_transformers(tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    trainer = FlowHFTrainer(args=tiny_config(tmp_path, steps=1))
    trainer.train()
    out = tmp_path / "run"
    base = json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"]
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), out)
    ids = torch.tensor([[1, 5, 9]])
    ours = trainer.accelerator.unwrap_model(trainer.model).eval()
    assert torch.allclose(model(ids).logits, ours(ids).logits, atol=1e-5)
    assert (out / "flowhf_heads.safetensors").is_file() and (out / "curves.png").exists() is False


def test_config_errors_say_how_to_fix(tmp_path):
    with pytest.raises(ValueError, match="did you mean 'beta'"):
        FlowHFConfig.from_dict({"target": {"betta": 1.0}})
    with pytest.raises(ValueError, match="unknown group"):
        FlowHFConfig.from_dict({"trainer": {}})
    with pytest.raises(ValueError, match="samples_per_prompt >= 2"):
        FlowHFConfig.from_dict(
            {
                "objective": {"objective": "tb", "logz": "batch"},
                "sampling": {"samples_per_prompt": 1},
            }
        )
    with pytest.raises(ValueError, match="offpolicy_column"):
        FlowHFConfig.from_dict({"sampling": {"offpolicy_fraction": 0.5}})
    cfg = FlowHFConfig.from_yaml(
        _write(tmp_path, "a.yaml", "target:\n  beta: 2\n"), ["alpha=0", "objective.logz=scalar"]
    )
    assert (cfg.target.beta, cfg.target.alpha, cfg.objective.logz) == (2, 0, "scalar")


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path
