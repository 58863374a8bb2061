"""The fast sampler (``sampling.sampler=fast``): the distribution of `sample_completions`, less work per token.

What it changes, and why each keeps the sampled distribution and its recorded log q exact:
- **A merged copy** (`flowhf.sampling.merged`): LoRA folded into the weights, optionally in
  bfloat16. log q is the copy's own log-prob, so it is the proposal the samples came from;
  in float32 it equals the PEFT policy's up to rounding.
- **A static KV cache**: preallocated per (rows, length) and written in place, so no tensor
  grows per token and a compiled decode step (``compile=True``; CUDA graphs on GPU) sees
  fixed shapes. Each distinct prompt is prefilled once and its cache copied to its k rows.
  Models whose cache is not plain full attention (sliding windows) decode on a DynamicCache.
- **One log-softmax per token**, and log q reads that same log p (no second softmax). The draw
  inverts the CDF with one uniform per row, in float64 (every token's interval is then its
  probability to ~1e-16; a float32 running sum would blur the rarest tokens' by ~1e-7 each),
  rather than a random number for every vocabulary entry as multinomial and Gumbel-max do.
- **Fewer host syncs**: on GPU "has every row ended?" is asked every ``check_every`` tokens;
  rows that ended keep drawing into masked slots, which changes nothing they return.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache, StaticCache
from transformers.cache_utils import StaticLayer

from flowhf.sampling.generate import (
    Completions,
    SampleSettings,
    cache_kwarg,
    distinct_rows,
    keep_top_k,
    mask_logits,
    nucleus,
    positions_from_mask,
)
from flowhf.sampling.merged import MergedCopy

LENGTH_BUCKET = (
    64  # compiled: cache lengths round up to this, so prompts of similar length share one graph
)


class FastSampler:
    """Samples completions like `sample_completions`, from a merged copy of `policy`.

    Args:
        policy: the trained model (PeftModel or plain); the copy follows it on `sample`.
        dtype: the copy's dtype (bfloat16 when the policy already computes in bf16).
        compile: torch.compile the decode step (pays on GPU; measured on CPU in docs/speed.md).
        check_every: tokens between all-rows-ended checks (default 1 on CPU, 8 on GPU).
    """

    def __init__(
        self,
        policy: torch.nn.Module,
        dtype: torch.dtype = torch.float32,
        compile: bool = False,
        check_every: int | None = None,
    ):
        self.copy = MergedCopy(policy, dtype)
        self.compile = compile
        self.check_every = check_every
        self._cache_arg = cache_kwarg(self.copy.model)
        self._cache: tuple[tuple[int, int], StaticCache | None] | None = None
        self._decode = self._forward
        self._graphs = compile and next(self.copy.model.parameters()).device.type == "cuda"
        if compile:
            self._decode = torch.compile(
                self._forward, dynamic=False, mode="reduce-overhead" if self._graphs else None
            )

    @torch.no_grad()
    def sample(
        self,
        prompt_ids: torch.Tensor,
        prompt_mask: torch.Tensor,
        settings: SampleSettings,
        generator: torch.Generator | None = None,
        adapters: bool = True,
    ) -> Completions:
        """`sample_completions`' arguments and result; ``adapters=False`` samples the reference
        (a LoRA policy with its adapters off)."""
        s, model = settings, self.copy.refresh(adapters)
        B, P = prompt_ids.shape
        device = prompt_ids.device
        # compiled: a few batch shapes, padded with copies of row 0
        rows = _bucket(B) if self.compile else B
        pick = torch.cat(
            [torch.arange(B, device=device), torch.zeros(rows - B, dtype=torch.long, device=device)]
        )
        length = P + s.max_new_tokens
        cache, static = self._cache_for(
            model, rows, -(-length // LENGTH_BUCKET) * LENGTH_BUCKET if self.compile else length
        )
        attention = torch.zeros(
            rows, cache_len(cache, length), dtype=torch.long, device=device
        )  # [R, L]
        attention[:, :P] = prompt_mask[pick]
        logits = self._prefill(model, prompt_ids[pick], prompt_mask[pick], cache, static)  # [R, V]
        position = attention[:, :P].sum(dim=1, keepdim=True)  # [R, 1]
        tokens = torch.full(
            (rows, s.max_new_tokens), s.pad_token_id, dtype=torch.long, device=device
        )
        alive = torch.ones(rows, dtype=torch.bool, device=device)  # [R] not yet ended
        mask = torch.zeros(rows, s.max_new_tokens, device=device)
        log_q = torch.zeros(rows, device=device)
        eos_ids = s.stop_ids(device)
        every = self.check_every or (1 if device.type == "cpu" else 8)
        # compiled only on the static cache: a growing DynamicCache would recompile every token
        decode = self._decode if static else self._forward
        for t in range(s.max_new_tokens):
            hot = s.hot(t)
            log_p = step_log_probs(
                logits,
                s.allowed_tokens,
                s.temperature if hot else 1.0,
                s.top_p,
                s.top_k if hot else 0,
            )  # [R, V]
            drawn = inverse_cdf_draw(log_p, generator)  # [R]
            log_q += torch.where(alive, log_p.gather(1, drawn.unsqueeze(1)).squeeze(1), 0.0)
            tokens[:, t] = torch.where(alive, drawn, s.pad_token_id)
            mask[:, t] = alive.float()
            alive = alive & ~torch.isin(drawn, eos_ids)
            if t == s.max_new_tokens - 1 or ((t + 1) % every == 0 and not bool(alive.any())):
                break
            attention[:, P + t] = 1
            if self._graphs and static:
                torch.compiler.cudagraph_mark_step_begin()  # the last step's outputs are consumed
            logits = decode(
                drawn.unsqueeze(1),
                attention if static else attention[:, : P + t + 1],
                position + t,
                cache,
            )
        _check_finite(log_q[:B])
        keep = int(mask[:B].sum(dim=1).max().item()) if B else 0
        return Completions(tokens[:B, :keep], mask[:B, :keep], ~alive[:B], s.temperature, log_q[:B])

    def _forward(
        self, ids: torch.Tensor, attention: torch.Tensor, positions: torch.Tensor, cache
    ) -> torch.Tensor:
        """One decoding step: logits of the next token [R, V] (float32)."""
        out = self.copy.model(
            input_ids=ids,
            attention_mask=attention,
            position_ids=positions,
            use_cache=True,
            **{self._cache_arg: cache},
        )
        return out.logits[:, -1, :].float()

    def _prefill(self, model, prompt_ids, prompt_mask, cache, static: bool) -> torch.Tensor:
        """Each distinct prompt once, its KV states copied out to its rows. Returns the rows' logits [R, V]."""
        n_distinct, first, inverse = distinct_rows(prompt_ids, prompt_mask)
        attention = prompt_mask[first].long()  # [G, P]
        prefill = DynamicCache() if static else cache
        # logits of the last position only, kept by index: an int would slice a strided view, which
        # bf16 CPU matmul turns into a copy of the whole output embedding per prompt
        last = torch.tensor([prompt_ids.shape[1] - 1], device=prompt_ids.device)
        out = model(
            input_ids=prompt_ids[first],
            attention_mask=attention,
            position_ids=positions_from_mask(attention),
            use_cache=True,
            logits_to_keep=last,
            **{self._cache_arg: prefill},
        )
        if static:
            _fill_static(cache, prefill, inverse)
        else:
            cache.batch_select_indices(inverse)
        return out.logits[:, -1, :].float()[inverse]

    def _cache_for(self, model, rows: int, length: int) -> tuple[object, bool]:
        """The static cache of this (rows, length), kept for the next call (one at a time: a 7B
        cache is gigabytes); a DynamicCache where the model's layers are not all full attention."""
        if self._cache is None or self._cache[0] != (rows, length):
            static = StaticCache(config=model.config, max_cache_len=length)
            usable = all(type(layer) is StaticLayer for layer in static.layers)
            self._cache = ((rows, length), static if usable else None)
        cache = self._cache[1]
        return (cache, True) if cache is not None else (DynamicCache(), False)


def cache_len(cache, length: int) -> int:
    """Slots of the attention mask: the static cache's length, or the longest sequence."""
    return cache.layers[0].max_cache_len if isinstance(cache, StaticCache) else length


def step_log_probs(
    logits: torch.Tensor,
    allowed_tokens: torch.Tensor | None,
    temperature: float,
    top_p: float,
    top_k: int = 0,
) -> torch.Tensor:
    """log q of every next token [R, V]: masked, cut to the top k (top_k > 0), tempered and
    (top_p < 1) renormalised over the nucleus."""
    scores = keep_top_k(mask_logits(logits, allowed_tokens), top_k)
    log_p = torch.log_softmax(
        scores if temperature == 1.0 else scores / temperature, dim=-1
    )  # [R, V]
    return log_p if top_p >= 1.0 else nucleus(log_p, top_p, log=True)


def _check_finite(log_q: torch.Tensor) -> None:
    """Plain multinomial raises on non-finite or all-masked logits; say so here too."""
    if not bool(torch.isfinite(log_q).all()):
        raise RuntimeError(
            "the fast sampler met non-finite or all-masked next-token logits (NaN/inf in the model, "
            "or sampling.allowed_tokens excluding every token); log q is not finite"
        )


def inverse_cdf_draw(log_p: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One draw per row from exp(log_p) [R, V]: the first token whose float64 running sum
    exceeds u * total, u uniform in [0, 1). Zero-probability tokens have empty intervals. [R]"""
    cdf = log_p.double().exp().cumsum(dim=-1)  # [R, V]
    u = torch.rand(
        (log_p.shape[0], 1),
        generator=generator,
        dtype=torch.float64,
        device=log_p.device if generator is None else generator.device,
    ).to(log_p.device)
    drawn = torch.searchsorted(cdf, u * cdf[:, -1:], right=True)  # [R, 1]
    return drawn.clamp_max(log_p.shape[-1] - 1).squeeze(1)


def _fill_static(cache: StaticCache, prefill: DynamicCache, inverse: torch.Tensor) -> None:
    """Copy the distinct prompts' KV states [G, H, P, D] into the static cache's rows [R, H, L, D]."""
    for static_layer, layer in zip(cache.layers, prefill.layers):
        keys, values = layer.keys[inverse], layer.values[inverse]  # [R, H, P, D]
        if not static_layer.is_initialized:
            static_layer.lazy_initialization(keys, values)
        P = keys.shape[2]
        static_layer.keys[:, :, :P].copy_(keys)
        static_layer.values[:, :, :P].copy_(values)
        static_layer.cumulative_length.fill_(P)


def _bucket(n: int) -> int:
    """The next power of two: compiled graphs for batch sizes 1, 2, 4, 8, ... only."""
    return 1 << max(0, (n - 1).bit_length())
