"""On-policy sampling of completions with a KV cache and tempered exploration.

The sampler and the objectives must agree on the distribution: a completion ends at EOS
(the EOS token is its last action) or is forced to end after ``max_new_tokens`` actions
(no EOS action). ``allowed_tokens`` restricts the action space identically here and in
`flowhf.sampling.logprobs`, so the recomputed log-probs are those of the sampled policy.

Exploration (Hu et al. 2024): with probability ``explore_prob`` a batch is sampled at a
temperature drawn uniformly from ``temperature_range``; otherwise at temperature 1. GFlowNet
objectives are off-policy, so tempered samples are valid training data as long as the
log-probs in the loss are recomputed at temperature 1 (they always are).
"""

from __future__ import annotations

import inspect
import random
from dataclasses import dataclass

import torch
from transformers import DynamicCache


@dataclass
class Completions:
    """Sampled completions, right-padded."""

    ids: torch.Tensor  # [B, T] action token ids (pad_id where padded)
    mask: torch.Tensor  # [B, T] 1.0 for real actions
    ended_with_eos: torch.Tensor  # [B] bool
    temperature: float  # temperature this batch was sampled at
    # [B] log-prob of each completion under the distribution it was drawn from (tempered,
    # nucleus, masked): the proposal q of importance-weighted log Z. NaN for rows that were
    # not sampled here (replay, off-policy text); None when nobody recorded it.
    log_q: torch.Tensor | None = None

    @property
    def lengths(self) -> torch.Tensor:
        return self.mask.sum(dim=1).long()


def draw_temperature(
    explore_prob: float, temperature_range: tuple[float, float], rng: random.Random
) -> float:
    """1.0, or with probability explore_prob a temperature uniform in temperature_range."""
    if explore_prob > 0 and rng.random() < explore_prob:
        low, high = temperature_range
        return rng.uniform(low, high)
    return 1.0


def mask_logits(logits: torch.Tensor, allowed_tokens: torch.Tensor | None) -> torch.Tensor:
    """Set logits of tokens outside the action space to -inf. allowed_tokens: [V] bool."""
    if allowed_tokens is None:
        return logits
    return logits.masked_fill(~allowed_tokens.to(logits.device), float("-inf"))


def keep_top_k(scores: torch.Tensor, top_k: int) -> torch.Tensor:
    """Set every score below the row's k-th largest to -inf (0 = keep all) [B, V]. Top-k commutes
    with a temperature, so it may be applied before or after dividing by one."""
    if top_k <= 0 or top_k >= scores.shape[-1]:
        return scores
    kth = scores.topk(top_k, dim=-1).values[:, -1:]  # [B, 1]
    return scores.masked_fill(scores < kth, float("-inf"))


def cache_kwarg(model: torch.nn.Module) -> str:
    """Name of the KV-cache argument: `cache` in transformers >= 5.2x, `past_key_values` before."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that skip left padding. [B, S]"""
    return (attention_mask.long().cumsum(dim=1) - 1).clamp_min(0)


def distinct_rows(
    prompt_ids: torch.Tensor, prompt_mask: torch.Tensor
) -> tuple[int, torch.Tensor, torch.Tensor]:
    """Rows holding the same (left-padded) prompt.

    Returns (G distinct prompts, first row of each [G], distinct index of each row [B]).
    """
    keys = torch.cat([prompt_ids, prompt_mask.to(prompt_ids.dtype)], dim=1)
    _, inverse = torch.unique(keys, dim=0, return_inverse=True)  # [B]
    B = keys.shape[0]
    first = torch.full(
        (int(inverse.max()) + 1 if B else 0,), B, dtype=torch.long, device=keys.device
    )
    first = first.scatter_reduce(
        0, inverse, torch.arange(B, device=keys.device), reduce="amin"
    )  # [G]
    return len(first), first, inverse


@dataclass(frozen=True, eq=False)
class SampleSettings:
    """How a batch is drawn, for both samplers (`sample_completions`, `FastSampler.sample`).

    Where a completion stops: after ``max_new_tokens`` actions or at any id of ``eos_token_id``
    (one id or several, e.g. <|im_end|> and <|endoftext|>); ``pad_token_id`` fills the slots
    after it. Which distribution each action is drawn from:
    - ``temperature``: divides the (masked) logits; 1.0 samples pi itself.
    - ``top_p``: nucleus sampling (1.0 = off). Anything but 1.0 samples from a policy other
      than pi; the objectives stay valid (off-policy) but the mix changes.
    - ``top_k``: on the tempered actions, draw only among the this-many most likely next tokens
      (0 = all); log q is the renormalised top-k distribution, so the batch stays a valid
      off-policy proposal (it cannot propose a token outside the top k).
    - ``tempered_tokens``: apply `temperature` (and `top_k`) to the first this-many actions only
      and sample the rest at temperature 1 (0 = every action). A hot first token varies what the
      answer is about; hot later tokens mostly break its ending (a 49k-token vocabulary at
      T >= 2 rarely emits EOS where the model would).
    - ``allowed_tokens``: [V] bool, the action space (as in `flowhf.sampling.logprobs`).
    """

    max_new_tokens: int
    eos_token_id: int | list[int]
    pad_token_id: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    tempered_tokens: int = 0
    allowed_tokens: torch.Tensor | None = None

    def hot(self, t: int) -> bool:
        """Whether action t (0-based) is drawn at the temperature (and top k)."""
        return self.tempered_tokens <= 0 or t < self.tempered_tokens

    def stop_ids(self, device: torch.device) -> torch.Tensor:
        """The EOS ids as a tensor [E] (any of them ends a row)."""
        eos = self.eos_token_id
        return torch.as_tensor([eos] if isinstance(eos, int) else list(eos), device=device)


@torch.no_grad()
def sample_completions(
    model: torch.nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    settings: SampleSettings,
    generator: torch.Generator | None = None,
) -> Completions:
    """Sample one completion per row of a LEFT-padded prompt batch.

    Args:
        prompt_ids: [B, P] left-padded prompt tokens; prompt_mask: [B, P].
        settings: where completions stop and what each action is drawn from (`SampleSettings`).
    """
    s = settings
    B = prompt_ids.shape[0]
    device = prompt_ids.device
    attention = prompt_mask.long()  # [B, P]
    cache = DynamicCache()  # filled in place by every forward call
    cache_arg = {cache_kwarg(model): cache}
    logits = _prefill(model, prompt_ids, attention, cache_arg)  # [B, V]
    next_position = attention.sum(dim=1, keepdim=True)  # [B, 1]
    tokens = torch.full((B, s.max_new_tokens), s.pad_token_id, dtype=torch.long, device=device)
    mask = torch.zeros(B, s.max_new_tokens, device=device)
    finished = torch.zeros(B, dtype=torch.bool, device=device)
    log_q = torch.zeros(B, device=device)
    eos_ids = s.stop_ids(device)
    for t in range(s.max_new_tokens):
        scores = mask_logits(logits.float(), s.allowed_tokens)  # [B, V]
        scores = keep_top_k(scores, s.top_k) / s.temperature if s.hot(t) else scores
        probs = torch.softmax(scores, dim=-1)
        if s.top_p < 1.0:
            probs = nucleus(probs, s.top_p)
        step_tokens = torch.multinomial(probs, 1, generator=generator).squeeze(1)  # [B]
        log_q += _log_prob_of(scores, probs, step_tokens, s.top_p) * (~finished).float()
        step_tokens = torch.where(
            finished, torch.full_like(step_tokens, s.pad_token_id), step_tokens
        )
        tokens[:, t] = step_tokens
        mask[:, t] = (~finished).float()
        finished = finished | torch.isin(step_tokens, eos_ids)
        if bool(finished.all()) or t == s.max_new_tokens - 1:
            break
        attention = torch.cat(
            [attention, torch.ones(B, 1, dtype=attention.dtype, device=device)], dim=1
        )
        out = model(
            input_ids=step_tokens.unsqueeze(1),
            attention_mask=attention,
            position_ids=next_position,
            use_cache=True,
            **cache_arg,
        )
        next_position = next_position + 1
        logits = out.logits[:, -1, :]
    length = int(mask.sum(dim=1).max().item()) if B else 0
    return Completions(tokens[:, :length], mask[:, :length], finished, s.temperature, log_q)


def _prefill(model, prompt_ids, attention, cache_arg) -> torch.Tensor:
    """Next-token logits of every row [B, V]: k samples of one prompt prefill each distinct
    prompt once, then index its cache out to the rows."""
    B = prompt_ids.shape[0]
    n_distinct, first, inverse = distinct_rows(prompt_ids, attention)
    rows = first if n_distinct < B else slice(None)
    out = model(
        input_ids=prompt_ids[rows],
        attention_mask=attention[rows],
        position_ids=positions_from_mask(attention[rows]),
        use_cache=True,
        **cache_arg,
    )
    logits = out.logits[:, -1, :]  # [G, V]
    if n_distinct < B:
        next(iter(cache_arg.values())).batch_select_indices(inverse)
        logits = logits[inverse]  # [B, V]
    return logits


def _log_prob_of(
    scores: torch.Tensor, probs: torch.Tensor, tokens: torch.Tensor, top_p: float
) -> torch.Tensor:
    """[B] log-prob of the drawn tokens under the distribution they were drawn from."""
    if top_p < 1.0:  # the nucleus renormalised probs; log_softmax of the scores would not match
        return probs.gather(1, tokens.unsqueeze(1)).squeeze(1).log()
    return torch.log_softmax(scores, dim=-1).gather(1, tokens.unsqueeze(1)).squeeze(1)


def nucleus(values: torch.Tensor, top_p: float, log: bool = False) -> torch.Tensor:
    """Top-p: the distribution renormalised over its nucleus, the smallest set of most likely
    tokens holding probability top_p; tokens outside get probability 0. [B, V]

    ``values`` are probabilities, or log-probabilities when ``log`` (the result is then too).
    """
    sorted_values, order = values.sort(dim=-1, descending=True)
    sorted_p = sorted_values.exp() if log else sorted_values
    keep = sorted_p.cumsum(dim=-1) - sorted_p < top_p
    fill = float("-inf") if log else 0.0
    kept = torch.full_like(values, fill).scatter(-1, order, sorted_values.masked_fill(~keep, fill))
    if log:
        return kept - torch.logsumexp(kept, dim=-1, keepdim=True)
    return kept / kept.sum(dim=-1, keepdim=True)
