"""Exact distributions of a tiny LM over an enumerable space, the sampler, and convergence."""

import functools

import numpy as np
import pytest
import torch

from flowhf.experiments.enumerable.exact import compare, exact_log_probs, find_modes
from flowhf.experiments.enumerable.space import CompletionSpace, edit_distance_to
from flowhf.experiments.enumerable.targets import builtin_target, load_target_file
from flowhf.experiments.enumerable.train import ToyConfig, ToyExperiment, run_toy
from flowhf.models.tiny import tiny_llama
from flowhf.sampling import SampleSettings, sample_completions
from flowhf.sampling.fast import FastSampler

V, MAX_LEN = 3, 3
EOS, PROMPT = V, V + 1


def _model_and_mask():
    model = tiny_llama(V + 2, seed=1, hidden_size=32)
    allowed = torch.zeros(V + 2, dtype=torch.bool)
    allowed[: V + 1] = True
    return model, allowed


def test_space_indexing_round_trips():
    space = CompletionSpace(V, MAX_LEN)
    assert space.size == 1 + 3 + 9 + 27
    for i in range(space.size):
        tokens = space.tokens(i)
        padded = np.array([tokens + [0] * (MAX_LEN - len(tokens))])
        assert space.index_of(padded, np.array([len(tokens)]))[0] == i
    assert (
        edit_distance_to(space, [0, 1])[space.index_of(np.array([[1, 1, 0]]), np.array([3]))[0]]
        == 2
    )


def test_exact_probabilities_sum_to_one_with_forced_termination():
    model, allowed = _model_and_mask()
    log_p = exact_log_probs(model, [PROMPT], CompletionSpace(V, MAX_LEN), EOS, allowed)
    assert np.exp(log_p).sum() == pytest.approx(1.0, abs=1e-6)


SAMPLERS = {  # sampling.sampler, and the fast one with a bf16 copy (a policy computing in bf16)
    "plain": lambda model: functools.partial(sample_completions, model),
    "fast": lambda model: FastSampler(model).sample,
    "fast-bf16": lambda model: FastSampler(model, torch.bfloat16).sample,
}


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_sampler_draws_the_exact_distribution(sampler):
    """Empirical frequencies of 40k samples match exact teacher-forced probabilities (float32).
    The bf16 copy draws from its own, rounded, distribution: the same bound holds for it here."""
    model, allowed = _model_and_mask()
    space = CompletionSpace(V, MAX_LEN)
    exact = np.exp(exact_log_probs(model, [PROMPT], space, EOS, allowed))
    n = 40_000
    prompt = torch.full((n, 1), PROMPT)
    comp = SAMPLERS[sampler](model)(
        prompt,
        torch.ones_like(prompt),
        SampleSettings(MAX_LEN, EOS, EOS, allowed_tokens=allowed),
        generator=torch.Generator().manual_seed(0),
    )
    content_len = (comp.lengths - comp.ended_with_eos.long()).numpy()
    # A forced completion has MAX_LEN actions and no EOS; an EOS one has content + EOS.
    assert set(np.unique(comp.lengths[~comp.ended_with_eos].numpy())) <= {MAX_LEN}
    idx = space.index_of(comp.ids.clamp(max=V - 1).numpy(), content_len)
    freq = np.bincount(idx, minlength=space.size) / n
    assert (
        0.5 * np.abs(freq - exact).sum() < 0.03
    )  # sampling noise at n=40k over 40 outcomes is ~0.015


def test_compare_is_zero_for_identical_and_counts_modes():
    space = CompletionSpace(V, MAX_LEN)
    target = builtin_target("quick").table_fn(space, 0)
    c = compare(space, target, target - 3.0)  # same distribution, other normaliser
    assert c.tv == pytest.approx(0.0, abs=1e-9) and c.kl_target_model == pytest.approx(
        0.0, abs=1e-9
    )
    assert c.modes_found == c.modes_total == len(find_modes(space, target))
    uniform = compare(space, target, np.zeros(space.size))
    assert uniform.tv > 0.3 and uniform.modes_found < uniform.modes_total


def test_user_target_file(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text(
        "VOCAB_SIZE = 2\nMAX_LEN = 3\ndef log_reward(tokens):\n    return 2.0 * tokens.count(1)\n"
    )
    target = load_target_file(path)
    table = target.log_reward_table()
    assert table.shape == (1, 15) and table.max() == 6.0
    bad = tmp_path / "bad.py"
    bad.write_text("VOCAB_SIZE = 2\n")
    with pytest.raises(ValueError, match="MAX_LEN"):
        load_target_file(bad)


@pytest.mark.parametrize(
    "objective,logz,sampler",
    [
        ("tb", "batch", "plain"),
        ("tb", "importance", "plain"),
        ("fl", "batch", "plain"),
        ("subtb", "batch", "plain"),
        ("tb", "scalar", "plain"),
        ("tb", "importance", "fast"),
        ("subtb", "batch", "fast"),
    ],
)
def test_tiny_model_training_lowers_tv(objective, logz, sampler):
    target = builtin_target("quick", n_prompts=1)
    cfg = ToyConfig(
        objective=objective,
        logz=logz,
        steps=300,
        seed=0,
        samples_per_prompt=32,
        lr_decay="constant",
        eval_every_seconds=1e9,
        sampler=sampler,
    )
    before = np.mean([r["tv"] for r in ToyExperiment(target, cfg).evaluate()])
    result = run_toy(target, cfg)
    assert np.isfinite(result.tv)
    assert result.tv < 0.5 * before, (before, result.tv)


def _within_length_tv(exp: ToyExperiment) -> float:
    """TV between model and target within each action count (content + EOS; max_len when forced),
    weighted by the model's own mass on that count: what logz=length promises to match."""
    space = exp.space
    actions = np.minimum(space.lengths + 1, space.max_len)
    model = np.exp(
        exact_log_probs(exp.model, [exp.target.vocab_size + 1], space, exp.eos_id, exp.allowed)
    )
    target = exp.exact_target_log_reward(0)
    tv = 0.0
    for n in np.unique(actions):
        rows = actions == n
        p = model[rows] / model[rows].sum()
        q = np.exp(target[rows] - target[rows].max())
        tv += model[rows].sum() * 0.5 * np.abs(p - q / q.sum()).sum()
    return tv


def test_length_aware_tb_matches_the_target_within_each_length():
    target = builtin_target("quick", n_prompts=1)
    exp = ToyExperiment(
        target,
        ToyConfig(
            objective="tb",
            logz="length",
            steps=300,
            seed=0,
            samples_per_prompt=32,
            lr_decay="constant",
        ),
    )
    before = _within_length_tv(exp)
    for _ in range(300):
        assert np.isfinite(exp.step()["loss"])
    after = _within_length_tv(exp)
    assert after < 0.35 * before, (before, after)


def test_the_toy_and_the_trainer_assemble_inputs_in_one_place():
    """`step_inputs` (the trainer's and the toy harness's) carries the target, the reward pg
    maximises (beta r) and the replay buffer's known set."""
    from flowhf.sampling.logprobs import SequenceScores
    from flowhf.training.policy import Trajectories
    from flowhf.training.scorer import step_target
    from flowhf.training.update import step_inputs

    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    x = Trajectories(
        torch.ones(2, 1, dtype=torch.long),
        torch.ones(2, 1, dtype=torch.long),
        torch.zeros(2, 2, dtype=torch.long),
        mask,
        torch.tensor([0, 0]),
        torch.tensor([-1.0, -2.0]),
    )
    ref = torch.tensor([[-0.5, -0.5], [-1.0, 0.0]])
    target = step_target(torch.tensor([1.0, 3.0]), None, 2.0, 1.0, ref, mask)
    assert torch.allclose(target.log_reward, torch.tensor([2.0 - 1.0, 6.0 - 1.0]))
    known = (torch.tensor([0.5, 0.5], dtype=torch.float64), torch.tensor([True, False]))
    scores = SequenceScores(torch.full((2, 2), -0.1), None, None, None)
    inputs = step_inputs(x, target, scores, {}, known)
    assert torch.equal(inputs.reward, torch.tensor([2.0, 6.0]))
    assert inputs.log_reward is target.log_reward and inputs.ref_log_pf is ref
    assert torch.equal(inputs.known_member, known[1]) and inputs.log_q is x.log_q
    assert step_inputs(x, target, scores, {}).known_log_z is None
