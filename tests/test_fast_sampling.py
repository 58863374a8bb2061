"""The fast sampler (sampling.sampler=fast) against the plain one and the teacher-forced recompute.

Tolerances: float32 log q within 1e-4 nats per completion of the recompute; the bf16 copy's
log q within 0.02 nats per token (its own, rounded, distribution; on SmolLM2 see
benchmarks/sampling_speed.py, which reports the same difference).
"""

import functools

import numpy as np
import pytest
import torch

from flowhf.experiments.enumerable.exact import exact_log_probs
from flowhf.experiments.enumerable.space import CompletionSpace
from flowhf.models.checkpointing import enable_activation_checkpointing
from flowhf.models.lora import LoraSettings, apply_lora
from flowhf.models.tiny import tiny_llama
from flowhf.sampling.fast import FastSampler, inverse_cdf_draw, step_log_probs
from flowhf.sampling.generate import SampleSettings, nucleus, sample_completions
from flowhf.sampling.logprobs import _checkpointing, completion_log_probs

EOS, PAD = 2, 0


def lora_model(vocab=16, seed=1):
    """A tiny LoRA policy whose adapters are far from zero (B starts at 0 in PEFT)."""
    model = apply_lora(
        tiny_llama(vocab, seed=seed, hidden_size=32, num_layers=2),
        LoraSettings(r=4, alpha=8, dropout=0.0),
    )
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.5)
    return model.eval()


def prompts():
    """Two prompts of different lengths (left-padded), each repeated: k samples of a prompt."""
    ids = torch.tensor([[0, 5, 6], [7, 8, 9], [0, 5, 6], [7, 8, 9], [0, 5, 6], [7, 8, 9]])
    mask = (torch.arange(3) >= torch.tensor([[1], [0], [1], [0], [1], [0]])).long()
    return ids, mask


def recomputed_log_q(model, ids, mask, comp):
    """Teacher-forced float32 log pi of each completion (temperature 1), and its length."""
    with torch.no_grad():
        scores = completion_log_probs(model, ids, mask, comp.ids, comp.mask)
    return scores.log_pf.sum(1), comp.mask.sum(1)


@pytest.mark.parametrize("dtype,per_token", [(torch.float32, None), (torch.bfloat16, 0.02)])
def test_log_q_agrees_with_the_teacher_forced_recompute(dtype, per_token):
    model = lora_model()
    ids, mask = prompts()
    comp = FastSampler(model, dtype).sample(
        ids, mask, SampleSettings(8, EOS, PAD), torch.Generator().manual_seed(0)
    )
    log_pf, lengths = recomputed_log_q(model, ids, mask, comp)
    if per_token is None:
        assert torch.allclose(comp.log_q, log_pf, atol=1e-4)
    else:
        assert ((comp.log_q - log_pf).abs() <= per_token * lengths).all(), (comp.log_q, log_pf)


@pytest.mark.parametrize(
    "temperature,top_p,tempered_tokens", [(2.0, 1.0, 0), (1.5, 0.8, 0), (3.0, 1.0, 1)]
)
def test_sampled_log_q_under_temperature_nucleus_and_tempered_tokens(
    temperature, top_p, tempered_tokens
):
    """The fast sampler's log q is the teacher-forced log-prob under what it drew from: the first
    `tempered_tokens` actions (all when 0) at the temperature, the nucleus renormalised."""
    from flowhf.sampling.logprobs import _joint_forward

    model = lora_model()
    ids, mask = prompts()
    comp = FastSampler(model).sample(
        ids,
        mask,
        SampleSettings(6, EOS, PAD, temperature, top_p, tempered_tokens=tempered_tokens),
        torch.Generator().manual_seed(1),
    )
    with torch.no_grad():
        logits = _joint_forward(model, ids, mask, comp.ids, False)[0].float()  # [B, T, V]
    steps = []
    for t in range(comp.ids.shape[1]):
        hot = tempered_tokens <= 0 or t < tempered_tokens
        log_p = step_log_probs(logits[:, t], None, temperature if hot else 1.0, top_p)  # [B, V]
        steps.append(log_p.gather(1, comp.ids[:, t : t + 1]).squeeze(1))
    expected = (torch.stack(steps, 1).nan_to_num(neginf=0.0) * comp.mask).sum(
        1
    )  # padded slots may hold masked ids
    assert torch.allclose(comp.log_q, expected, atol=1e-4)


@pytest.mark.parametrize("fast", [True, False])
def test_exploration_top_k_draws_only_the_top_tokens_and_records_their_renormalised_log_q(fast):
    """sampling.explore_top_k: every hot action is among the k most likely (temperature 1) tokens,
    and log q is the log of the cut, tempered, renormalised distribution, in both samplers."""
    from flowhf.sampling.logprobs import _joint_forward

    model = lora_model()
    ids, mask = prompts()
    ids, mask = ids.repeat(8, 1), mask.repeat(8, 1)
    settings = SampleSettings(6, EOS, PAD, temperature=2.5, top_k=3, tempered_tokens=2)
    sample = FastSampler(model).sample if fast else functools.partial(sample_completions, model)
    comp = sample(ids, mask, settings, torch.Generator().manual_seed(5))
    with torch.no_grad():
        logits = _joint_forward(model, ids, mask, comp.ids, False)[0].float()  # [B, T, V]
    steps = []
    for t in range(comp.ids.shape[1]):
        hot = t < 2
        if hot:
            top = logits[:, t].topk(3, dim=-1).indices  # [B, 3]
            assert ((top == comp.ids[:, t : t + 1]).any(1) | (comp.mask[:, t] == 0)).all()
        log_p = step_log_probs(
            logits[:, t], None, 2.5 if hot else 1.0, 1.0, 3 if hot else 0
        )  # [B, V]
        steps.append(log_p.gather(1, comp.ids[:, t : t + 1]).squeeze(1))
    expected = (torch.stack(steps, 1).nan_to_num(neginf=0.0) * comp.mask).sum(1)
    assert torch.isfinite(comp.log_q).all()
    assert torch.allclose(comp.log_q, expected, atol=1e-4)


def test_tempered_nucleus_log_q_is_the_distribution_drawn_from():
    """log q under temperature and top_p is the log of the renormalised nucleus, as the plain sampler records."""
    torch.manual_seed(0)
    logits = torch.randn(3, 11) * 3
    for temperature, top_p in ((1.0, 1.0), (2.0, 1.0), (0.7, 0.8)):
        probs = torch.softmax(logits / temperature, -1)
        if top_p < 1:
            probs = nucleus(probs, top_p)
        assert torch.allclose(
            step_log_probs(logits, None, temperature, top_p).exp(), probs, atol=1e-6
        )


def test_inverse_cdf_draws_the_softmax_and_never_a_masked_token():
    log_p = torch.log_softmax(
        torch.tensor([[0.0, 1.0, float("-inf"), -1.0, 2.0, float("-inf")]]), -1
    ).expand(100_000, -1)
    counts = (
        torch.bincount(inverse_cdf_draw(log_p, torch.Generator().manual_seed(0)), minlength=6)
        / 100_000
    )
    assert counts[2] == 0 and counts[5] == 0
    assert torch.allclose(counts, log_p[0].exp(), atol=0.01)


def test_merged_lora_draws_the_exact_distribution_and_leaves_the_adapters_alone():
    """The merged copy samples the PEFT policy's exact distribution (adapters on), the base's with
    adapters off, and sampling changes no parameter of the policy, nor its gradients."""
    V, M, prompt_id = 3, 3, 4
    model = lora_model(vocab=V + 2, seed=2)
    allowed = torch.arange(V + 2) < V + 1
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    space = CompletionSpace(V, M)
    sampler = FastSampler(model)
    n = 40_000
    prompt = torch.full((n, 1), prompt_id)
    for adapters in (True, False):
        if adapters:
            exact = np.exp(exact_log_probs(model, [prompt_id], space, V, allowed))
        else:
            with model.disable_adapter():
                exact = np.exp(exact_log_probs(model, [prompt_id], space, V, allowed))
        comp = sampler.sample(
            prompt,
            torch.ones_like(prompt),
            SampleSettings(M, V, V, allowed_tokens=allowed),
            torch.Generator().manual_seed(1),
            adapters=adapters,
        )
        idx = space.index_of(
            comp.ids.clamp(max=V - 1).numpy(), (comp.lengths - comp.ended_with_eos.long()).numpy()
        )
        freq = np.bincount(idx, minlength=space.size) / n
        assert 0.5 * np.abs(freq - exact).sum() < 0.03
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]), name
    assert not any("lora" in n for n, _ in sampler.copy.model.named_parameters())


def test_the_update_sees_unmerged_adapters_with_the_same_gradients():
    model = lora_model()
    ids, mask = prompts()
    comp = sample_completions(
        model, ids, mask, SampleSettings(5, EOS, PAD), torch.Generator().manual_seed(0)
    )
    trainable = [p for p in model.parameters() if p.requires_grad]

    def grads():
        loss = completion_log_probs(model, ids, mask, comp.ids, comp.mask).log_pf.sum()
        return torch.autograd.grad(loss, trainable)

    reference = grads()
    FastSampler(model, torch.bfloat16).sample(ids, mask, SampleSettings(5, EOS, PAD))
    for a, b in zip(reference, grads()):
        assert torch.equal(a, b)


def test_the_copy_follows_the_policy_after_an_update():
    model = lora_model()
    ids, mask = prompts()
    sampler = FastSampler(model)
    sampler.sample(ids, mask, SampleSettings(3, EOS, PAD))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_A" in name:
                p.add_(0.3)  # an optimiser step: in place
    comp = sampler.sample(
        ids, mask, SampleSettings(6, EOS, PAD), generator=torch.Generator().manual_seed(4)
    )
    log_pf, _ = recomputed_log_q(model, ids, mask, comp)
    assert torch.allclose(comp.log_q, log_pf, atol=1e-4)


@pytest.mark.parametrize("sampler", ["plain", "fast"])
def test_eos_ends_a_row_and_the_rest_are_forced_at_the_limit(sampler):
    model = lora_model()
    ids, mask = prompts()
    draw = (
        functools.partial(sample_completions, model)
        if sampler == "plain"
        else FastSampler(model).sample
    )
    comp = draw(
        ids, mask, SampleSettings(7, [EOS, 3], PAD), generator=torch.Generator().manual_seed(5)
    )
    for row, length, eos in zip(comp.ids, comp.lengths, comp.ended_with_eos):
        real = row[:length].tolist()
        assert all(t not in (EOS, 3) for t in real[:-1])
        assert eos == (real[-1] in (EOS, 3))
        assert eos or length == 7  # no EOS: forced to end after max_new_tokens actions
        assert (row[length:] == PAD).all()
    assert comp.ended_with_eos.any() and (~comp.ended_with_eos).any()


def test_checking_for_the_end_every_few_tokens_changes_nothing():
    """GPU mode (check_every > 1): rows that ended keep drawing into masked slots only."""
    model = lora_model()
    ids, mask = prompts()
    every = [
        FastSampler(model, check_every=k).sample(
            ids, mask, SampleSettings(9, EOS, PAD), generator=torch.Generator().manual_seed(2)
        )
        for k in (1, 4)
    ]
    assert torch.equal(every[0].ids, every[1].ids) and torch.equal(every[0].mask, every[1].mask)
    assert torch.equal(every[0].log_q, every[1].log_q)


def test_full_fine_tuning_shares_the_weights_and_follows_updates():
    """No LoRA, same dtype: the copy holds the policy's own tensors (no memory), so updates show at once."""
    model = tiny_llama(16, seed=3, hidden_size=32, num_layers=2).eval()
    sampler = FastSampler(model)
    shared = {id(p) for p in model.parameters()}
    assert all(id(p) in shared for p in sampler.copy.model.parameters())
    assert all(p.requires_grad for p in model.parameters())  # the copy froze nothing of the policy
    ids, mask = prompts()
    with torch.no_grad():
        model.lm_head.weight.mul_(1.5)
    comp = sampler.sample(
        ids, mask, SampleSettings(6, EOS, PAD), generator=torch.Generator().manual_seed(0)
    )
    log_pf, _ = recomputed_log_q(model, ids, mask, comp)
    assert torch.allclose(comp.log_q, log_pf, atol=1e-4)


def test_gradient_checkpointing_gives_the_same_log_probs_and_gradients():
    model = lora_model()
    ids, mask = prompts()
    comp = sample_completions(
        model, ids, mask, SampleSettings(5, EOS, PAD), torch.Generator().manual_seed(0)
    )
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    results = []
    for checkpointing in (False, True):
        if checkpointing:
            enable_activation_checkpointing(model)
        assert _checkpointing(model) == checkpointing  # the prompt is then read once per row
        log_pf = completion_log_probs(model, ids, mask, comp.ids, comp.mask).log_pf
        results.append((log_pf.detach(), torch.autograd.grad(log_pf.sum(), trainable)))
    assert torch.allclose(results[0][0], results[1][0], atol=1e-5)
    for a, b in zip(results[0][1], results[1][1]):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_the_compiled_decode_step_samples_the_same():
    """torch.compile of the decoding step (static shapes): same draws, same log q."""
    model = lora_model()
    ids, mask = (
        torch.cat([prompts()[0], prompts()[0][:2]]),
        torch.cat([prompts()[1], prompts()[1][:2]]),
    )  # 8 rows: no padding
    runs = [
        FastSampler(model, compile=c).sample(
            ids, mask, SampleSettings(6, EOS, PAD), generator=torch.Generator().manual_seed(3)
        )
        for c in (False, True)
    ]
    assert torch.equal(runs[0].ids, runs[1].ids)
    assert torch.allclose(runs[0].log_q, runs[1].log_q, atol=1e-4)


def test_a_sliding_window_model_decodes_on_a_dynamic_cache():
    """Mistral-style sliding-window layers do not fill a plain static cache: same log q via a DynamicCache."""
    from transformers import MistralConfig, MistralForCausalLM

    config = MistralConfig(
        vocab_size=16,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        sliding_window=4,
        max_position_embeddings=64,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = MistralForCausalLM(config).eval()
    ids, mask = prompts()
    sampler = FastSampler(model)
    comp = sampler.sample(
        ids, mask, SampleSettings(8, EOS, PAD), generator=torch.Generator().manual_seed(0)
    )
    assert sampler._cache[1] is None  # no static cache for these layers
    log_pf, _ = recomputed_log_q(model, ids, mask, comp)
    assert comp.mask.sum(1).max() > 4 and torch.allclose(comp.log_q, log_pf, atol=1e-4)


def test_lora_on_a_tied_output_embedding_is_refused():
    """lm_head tied to the input embeddings: merging its LoRA would change the embeddings too."""
    base = tiny_llama(16, seed=1, hidden_size=32, num_layers=2)
    assert base.lm_head.weight is base.model.embed_tokens.weight
    model = apply_lora(
        base, LoraSettings(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "lm_head"])
    )
    with pytest.raises(ValueError, match="tied"):
        FastSampler(model)
