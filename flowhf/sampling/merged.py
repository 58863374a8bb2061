"""The sampling copy of the policy: one plain network with the LoRA update merged into its weights.

Sampling through PEFT's unmerged adapters runs two extra small matmuls (and their Python
calls) per adapted layer and token. Merging in place (``merge_adapter`` / ``unmerge_adapter``)
would remove them, but W + BA - BA is not W in floating point: the frozen base weights, which
are also the reference policy, would drift a little every step. So the sampler reads a copy:

- an adapted layer's weight in the copy is ``(W + scale * B @ A).to(dtype)``, recomputed from
  the untouched W, A and B whenever any of them changed (their ``_version`` counters);
- every other weight is the policy's own tensor when the dtypes agree (no memory), else a
  converted copy made once and refreshed only when its source changes (full fine-tuning).

The update step never sees the copy: it runs the PeftModel with its adapters unmerged.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class MergedCopy:
    """A plain (adapter-free) copy of `policy` in `dtype`, for sampling only (no grad, eval mode).

    Args:
        policy: a transformers model, or a PeftModel with plain LoRA adapters on Linear layers.
        dtype: the copy's weight dtype (bfloat16 halves the bytes each decoding step reads).
    """

    def __init__(self, policy: nn.Module, dtype: torch.dtype):
        self.dtype = dtype
        base = policy.get_base_model() if hasattr(policy, "get_base_model") else policy
        self.lora = {name: m for name, m in base.named_modules() if _is_lora(m)}
        for name, module in self.lora.items():
            _check_plain_lora(name, module)
        _check_not_tied(base, self.lora)
        lora_of = {id(m.get_base_layer().weight): m for m in self.lora.values()}
        adapter = {id(p) for m in self.lora.values() for p in m.parameters()}
        adapter -= {id(p) for m in self.lora.values() for p in m.get_base_layer().parameters()}
        memo: dict[int, object] = {}
        self._sources: list[
            tuple[torch.Tensor, torch.Tensor, nn.Module | None]
        ] = []  # (copy, source, lora layer)
        for p in base.parameters():
            if id(p) in adapter:
                memo[id(p)] = p  # not copied: their layers are dropped from the copy below
            elif id(p) in lora_of or p.dtype != dtype:
                target = nn.Parameter(torch.empty_like(p, dtype=dtype), requires_grad=False)
                memo[id(p)] = target
                self._sources.append((target, p, lora_of.get(id(p))))
            else:
                memo[id(p)] = p  # shared with the policy: always current, no memory
        self.model = copy.deepcopy(base, memo)
        for name in self.lora:
            self.model.set_submodule(name, self.model.get_submodule(name).get_base_layer())
        # eval() only: requires_grad_(False) would reach the parameters shared with the policy.
        self.model.eval()
        self._seen: dict[int, tuple] = {}

    @torch.no_grad()
    def refresh(self, adapters: bool = True) -> nn.Module:
        """Bring the copy up to date with the policy (adapters on), or with the reference
        (adapters off: the frozen base). Only tensors whose sources changed are rewritten."""
        for target, source, layer in self._sources:
            parts = [source] + ([] if layer is None else _adapter_tensors(layer))
            key = (adapters, *(t._version for t in parts), *(id(t) for t in parts))
            if self._seen.get(id(target)) == key:
                continue
            weight = source
            if layer is not None and adapters and not layer.merged:
                weight = source.float() + _delta(layer).float()  # one rounding, to the copy's dtype
            target.copy_(weight)
            self._seen[id(target)] = key
        return self.model


def _is_lora(module: nn.Module) -> bool:
    from peft.tuners.lora import LoraLayer

    return isinstance(module, LoraLayer)


def _check_plain_lora(name: str, module: nn.Module) -> None:
    """Only plain LoRA on Linear layers merges as W + scale * B @ A; refuse the rest by name."""
    from peft.tuners.lora import Linear

    variant = any(a in getattr(module, "lora_variant", {}) for a in module.active_adapters)
    bias = any(getattr(module, "lora_bias", {}).get(a, False) for a in module.active_adapters)
    if type(module) is not Linear or variant or bias:
        raise ValueError(
            f"sampling.sampler=fast merges LoRA into a sampling copy, but {name} is a {type(module).__name__}"
            f"{' with a LoRA variant (e.g. DoRA)' if variant else ''}{' with lora_bias' if bias else ''}, "
            "which does not merge as W + scale * B @ A; use sampling.sampler=plain"
        )


def _check_not_tied(base: nn.Module, lora: dict[str, nn.Module]) -> None:
    """A weight shared by an adapted layer and another module (lm_head tied to the input
    embeddings) would be merged for both in the copy, while the policy embeds with plain W."""
    adapted = {id(m.get_base_layer().weight): name for name, m in lora.items()}
    for name, p in base.named_parameters(remove_duplicate=False):
        owner = adapted.get(id(p))
        if owner is not None and not name.startswith(owner + "."):
            raise ValueError(
                f"sampling.sampler=fast: LoRA on {owner} adapts a weight tied to {name.rsplit('.', 1)[0]} (tied "
                "embeddings), which a merged copy cannot keep apart; leave it out of model.lora_target_modules or "
                "use sampling.sampler=plain"
            )


def _adapter_tensors(layer: nn.Module) -> list[torch.Tensor]:
    return [
        t
        for a in layer.active_adapters
        if a in layer.lora_A
        for t in (layer.lora_A[a].weight, layer.lora_B[a].weight)
    ]


def _delta(layer: nn.Module) -> torch.Tensor:
    """scale * B @ A summed over the active adapters (PEFT's own get_delta_weight)."""
    deltas = [layer.get_delta_weight(a) for a in layer.active_adapters if a in layer.lora_A]
    return torch.stack(deltas).sum(0) if len(deltas) > 1 else deltas[0]
