"""Gradients stay finite on long sequences (T = 256) for every objective, alpha = 0 and 1, float32."""

import pytest
import torch

from flowhf.models.heads import FlowHead, ScalarLogZ
from flowhf.models.tiny import tiny_llama
from flowhf.sampling import completion_log_probs
from flowhf.target import prefix_target_log_reward, target_log_reward
from flowhf.training.loss import ObjectiveInputs, ObjectiveSettings, objective_loss

T, B, VOCAB = 256, 4, 300


@pytest.mark.parametrize("alpha", [0.0, 1.0])
@pytest.mark.parametrize(
    "objective,logz",
    [
        ("tb", "scalar"),
        ("tb", "batch"),
        ("fl", "batch"),
        ("db", "batch"),
        ("subtb", "batch"),
        ("pg", "batch"),
    ],
)
def test_long_sequence_gradients_are_finite(alpha, objective, logz):
    torch.manual_seed(0)
    model = tiny_llama(VOCAB, seed=0, hidden_size=32, max_position_embeddings=T + 16)
    reference = tiny_llama(
        VOCAB, seed=1, hidden_size=32, max_position_embeddings=T + 16
    ).requires_grad_(False)
    prompt = torch.randint(0, VOCAB, (B, 4))
    prompt_mask = torch.ones_like(prompt)
    ids = torch.randint(0, VOCAB, (B, T))
    mask = torch.ones(B, T)
    mask[1, 200:] = 0.0  # an EOS-terminated shorter row among forced ones
    scores = completion_log_probs(model, prompt, prompt_mask, ids, mask, with_hidden=True)
    ref = completion_log_probs(reference, prompt, prompt_mask, ids, mask).log_pf.detach()
    reward = torch.randn(B)
    beta = 100.0  # the report's scale: log R spans hundreds of nats with alpha = 0
    head, log_z = FlowHead(32), ScalarLogZ()
    x = ObjectiveInputs(
        log_pf=scores.log_pf,
        mask=mask,
        log_reward=target_log_reward(reward, beta, alpha, ref, mask),
        group_ids=torch.tensor([0, 0, 1, 1]),
        prefix_log_reward=prefix_target_log_reward(
            reward.unsqueeze(1).expand(B, T + 1), beta, alpha, ref, mask
        ),
        log_flow=head(scores.hidden),
        log_z=log_z(batch_size=B),
        ref_log_pf=ref,
    )
    out = objective_loss(ObjectiveSettings(objective=objective, logz=logz, subtb_lambda=0.9), x)
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    out.loss.backward()
    params = list(model.parameters()) + list(head.parameters()) + list(log_z.parameters())
    grads = [p.grad for p in params if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0
