"""k samples of one prompt read the prompt once: same log-probs, hidden states and gradients."""

import torch

from flowhf.models.tiny import tiny_llama
from flowhf.sampling.generate import distinct_rows
from flowhf.sampling.logprobs import _joint_forward, completion_log_probs


def batch():
    # two prompts of different lengths (left-padded), each repeated, completions right-padded
    prompt_ids = torch.tensor([[0, 5, 6], [7, 8, 9], [0, 5, 6], [7, 8, 9], [0, 5, 6]])
    prompt_mask = (torch.arange(3) >= torch.tensor([[1], [0], [1], [0], [1]])).long()
    ids = torch.tensor([[3, 4, 2], [4, 2, 0], [3, 3, 3], [2, 0, 0], [4, 4, 2]])
    mask = torch.tensor(
        [[1, 1, 1], [1, 1, 0], [1, 1, 1], [1, 0, 0], [1, 1, 1]], dtype=torch.float32
    )
    return prompt_ids, prompt_mask, ids, mask


def test_distinct_rows_groups_identical_prompts():
    prompt_ids, prompt_mask, _, _ = batch()
    n, first, inverse = distinct_rows(prompt_ids, prompt_mask)
    assert n == 2
    assert torch.equal(prompt_ids[first][inverse], prompt_ids)
    assert sorted(first.tolist()) == [0, 1]


def test_shared_prompt_pass_equals_the_joint_pass():
    torch.manual_seed(0)
    model = tiny_llama(16, seed=1, hidden_size=32, num_layers=2)
    prompt_ids, prompt_mask, ids, mask = batch()
    shared = completion_log_probs(model, prompt_ids, prompt_mask, ids, mask, with_hidden=True)
    grads_shared = torch.autograd.grad(
        shared.log_pf.sum() + shared.hidden.sum(), list(model.parameters())
    )
    logits, hidden, prompt_hidden = _joint_forward(model, prompt_ids, prompt_mask, ids, True)
    joint = torch.log_softmax(logits.float(), -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1) * mask
    grads_joint = torch.autograd.grad(joint.sum() + hidden.sum(), list(model.parameters()))
    assert torch.allclose(shared.log_pf, joint, atol=1e-5)
    assert torch.allclose(shared.hidden, hidden, atol=1e-5)
    # the padded prompt positions differ by construction (unused); the real ones agree
    real = prompt_mask.bool()
    assert torch.allclose(shared.prompt_hidden[real], prompt_hidden[real], atol=1e-5)
    for a, b in zip(grads_shared, grads_joint):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


def test_sampler_log_q_is_the_log_prob_it_sampled_from():
    """At temperature 1 log_q equals the recomputed log pi; tempered, it is the tempered log-prob."""
    from flowhf.sampling.generate import SampleSettings, sample_completions

    model = tiny_llama(16, seed=1, hidden_size=32, num_layers=2).eval()
    prompt_ids, prompt_mask, _, _ = batch()
    for temperature in (1.0, 2.0):
        gen = torch.Generator().manual_seed(3)
        comp = sample_completions(
            model, prompt_ids, prompt_mask, SampleSettings(4, 2, 0, temperature=temperature), gen
        )
        with torch.no_grad():
            logits = _joint_forward(model, prompt_ids, prompt_mask, comp.ids, False)[0].float()
        tempered = (
            torch.log_softmax(logits / temperature, -1)
            .gather(-1, comp.ids.unsqueeze(-1))
            .squeeze(-1)
        )
        assert torch.allclose(comp.log_q, (tempered * comp.mask).sum(1), atol=1e-4)


def test_tempered_tokens_heat_only_the_first_actions():
    """tempered_tokens=1: the first action is drawn at the temperature, the rest at 1, and log_q says so."""
    from flowhf.sampling.generate import SampleSettings, sample_completions

    model = tiny_llama(16, seed=1, hidden_size=32, num_layers=2).eval()
    prompt_ids, prompt_mask, _, _ = batch()
    gen = torch.Generator().manual_seed(3)
    comp = sample_completions(
        model, prompt_ids, prompt_mask, SampleSettings(4, 2, 0, 3.0, tempered_tokens=1), gen
    )
    with torch.no_grad():
        logits = _joint_forward(model, prompt_ids, prompt_mask, comp.ids, False)[
            0
        ].float()  # [B, T, V]
    per_step = torch.ones(comp.ids.shape[1])
    per_step[0] = 3.0
    log_q = (
        torch.log_softmax(logits / per_step[None, :, None], -1)
        .gather(-1, comp.ids.unsqueeze(-1))
        .squeeze(-1)
    )
    assert torch.allclose(comp.log_q, (log_q * comp.mask).sum(1), atol=1e-4)
    everywhere = torch.log_softmax(logits / 3.0, -1).gather(-1, comp.ids.unsqueeze(-1)).squeeze(-1)
    assert not torch.allclose(
        comp.log_q, (everywhere * comp.mask).sum(1), atol=1e-3
    )  # the later actions were not heated
