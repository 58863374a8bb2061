"""The trainer with each sampler (sampling.sampler plain | fast): the step runs, the fast copy
follows the policy, exploration from the reference samples the reference, checkpointing trains."""

import math

import pytest
import torch

from flowhf.sampling.logprobs import _checkpointing, completion_log_probs
from flowhf.training.trainer import FlowHFTrainer
from tests.test_trainer import tiny_config, trainable_snapshot


@pytest.mark.parametrize("sampler", ["plain", "fast"])
@pytest.mark.parametrize("lora", [True, False])
def test_a_step_with_each_sampler_updates_and_records_log_q(tmp_path, sampler, lora):
    # LoRA dropout on: each sampler draws from the policy in eval mode, so log q is the eval-mode log pi
    cfg = tiny_config(
        tmp_path,
        f"sampling.sampler={sampler}",
        f"model.lora={str(lora).lower()}",
        "model.lora_dropout=0.3",
        "objective.objective=tb",
        "objective.logz=importance",
        "sampling.explore_prob=0",
    )
    trainer = FlowHFTrainer(args=cfg)
    for _ in range(2):  # the second step samples from the updated policy
        before = trainable_snapshot(trainer)
        metrics = trainer.training_step()
        assert math.isfinite(metrics["train/loss"]) and metrics["train/skipped"] == 0.0
        assert any(not torch.equal(before[n], p) for n, p in trainable_snapshot(trainer).items())
    batch, _ = trainer.build_batch(trainer.next_prompt_rows())
    model = trainer.accelerator.unwrap_model(trainer.model).eval()
    with torch.no_grad():
        log_pf = completion_log_probs(
            model, batch.prompt_ids, batch.prompt_mask, batch.ids, batch.mask
        ).log_pf.sum(1)
    assert torch.allclose(
        batch.log_q, log_pf, atol=1e-4
    )  # float32: the sampler's log q is the policy's


@pytest.mark.parametrize("sampler,lora", [("plain", True), ("fast", True), ("fast", False)])
def test_reference_batches_are_drawn_by_the_reference(tmp_path, sampler, lora):
    """sampling.reference_prob=1: every batch comes from the starting model, so log q is the reference's."""
    cfg = tiny_config(
        tmp_path,
        f"sampling.sampler={sampler}",
        f"model.lora={str(lora).lower()}",
        "sampling.reference_prob=1",
        "optim.learning_rate=0.05",
    )
    trainer = FlowHFTrainer(args=cfg)
    trainer.training_step()  # the policy moves away from the reference
    batch, _ = trainer.build_batch(trainer.next_prompt_rows())
    with trainer.bundle.reference_mode() as reference:
        ref = completion_log_probs(
            reference, batch.prompt_ids, batch.prompt_mask, batch.ids, batch.mask
        ).log_pf.sum(1)
    model = trainer.accelerator.unwrap_model(trainer.model).eval()
    with torch.no_grad():
        pol = completion_log_probs(
            model, batch.prompt_ids, batch.prompt_mask, batch.ids, batch.mask
        ).log_pf.sum(1)
    assert torch.allclose(batch.log_q, ref, atol=1e-4)
    assert not torch.allclose(batch.log_q, pol, atol=1e-3)


@pytest.mark.parametrize("setting", ["model.autocast_bf16=true", "sampling.sample_dtype=bfloat16"])
def test_bf16_runs_fast_sampling_on_a_bf16_copy(tmp_path, setting):
    cfg = tiny_config(tmp_path, "sampling.sampler=fast", setting)
    trainer = FlowHFTrainer(args=cfg)
    assert math.isfinite(trainer.training_step()["train/loss"])
    copy = trainer.samplers.fast["policy"].copy.model
    assert next(copy.parameters()).dtype == torch.bfloat16
    assert (
        next(trainer.model.parameters()).dtype == torch.float32
    )  # the policy and its update stay float32


def test_gradient_checkpointing_trains(tmp_path):
    cfg = tiny_config(tmp_path, "model.gradient_checkpointing=true")
    trainer = FlowHFTrainer(args=cfg)
    assert _checkpointing(trainer.model.train())
    before = trainable_snapshot(trainer)
    assert math.isfinite(trainer.training_step()["train/loss"])
    assert any(not torch.equal(before[n], p) for n, p in trainable_snapshot(trainer).items())


@pytest.mark.parametrize("sampler", ["plain", "fast"])
def test_exploration_top_k_reaches_the_sampler_only_in_tempered_batches(tmp_path, sampler):
    """sampling.explore_top_k=1 at T = 2: every exploration batch is the greedy completion, so a
    prompt's k samples agree; untempered batches (explore_prob 0) still vary."""

    def completions(*sets):
        cfg = tiny_config(
            tmp_path / "_".join(sets).replace("=", "-"),
            f"sampling.sampler={sampler}",
            "sampling.explore_top_k=1",
            "sampling.temperature_low=2.0",
            "sampling.temperature_high=2.0",
            "sampling.samples_per_prompt=6",
            "sampling.prompts_per_step=1",
            *sets,
        )
        trainer = FlowHFTrainer(args=cfg)
        batch, temperature = trainer.build_batch(trainer.next_prompt_rows())
        return {tuple(row) for row in (batch.ids * batch.mask.long()).tolist()}, temperature

    greedy, temperature = completions("sampling.explore_prob=1")
    assert temperature == 2.0 and len(greedy) == 1
    varied, temperature = completions("sampling.explore_prob=0")
    assert temperature == 1.0 and len(varied) > 1
