"""Small learned heads beside the policy: the flow head and the log Z estimators.

- ``FlowHead``: log F~(s) for every state, used by FL / DB / SubTB (a linear map of the
  policy's hidden states). Zero-initialised so log F~ starts at 0 and the initial
  residuals are those of the plain prefix energies.
- ``PromptLogZHead``: log Z(x) from the mean-pooled prompt hidden states (a small MLP).
- ``ScalarLogZ``: one learned log Z shared by every prompt.

Parameters are float32 always, even when the backbone runs in bfloat16: the heads are tiny
and log Z can reach hundreds of nats, where bfloat16 keeps only ~3 significant digits.

Heads are saved beside the adapter or model by `flowhf.models.saved_run` (class names and
constructor arguments from ``init_kwargs``), so a run directory stays a plain PeftModel /
AutoModel folder that other tools can load.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class _Float32Module(nn.Module):
    """Keeps its parameters float32 through ``.to(dtype)`` / ``.bfloat16()`` calls, which a
    trainer may apply to a container that also holds the backbone; device moves still work."""

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        for param in self.parameters():
            if param.dtype != torch.float32:
                param.data = param.data.float()
        return self

    def init_kwargs(self) -> dict:
        """Constructor arguments, stored in flowhf_heads.json to rebuild the head."""
        raise NotImplementedError


class FlowHead(_Float32Module):
    """Linear map of hidden states [B, S, H] to log F~ [B, S] (float32)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.hidden_size = int(hidden_size)
        self.linear = nn.Linear(self.hidden_size, 1, dtype=torch.float32)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def init_kwargs(self) -> dict:
        return {"hidden_size": self.hidden_size}

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        _check_hidden(hidden_states, self.hidden_size, "FlowHead")
        return self.linear(hidden_states.float()).squeeze(-1)  # [B, S]


class PromptLogZHead(_Float32Module):
    """log Z(x) [B] from prompt hidden states [B, S, H] mean-pooled over a prompt mask [B, S].

    LayerNorm -> Linear -> GELU -> Linear. The last layer starts at zero weights and bias
    ``init``, so every prompt starts at log Z = init. Pass ``hidden_states.detach()`` to keep
    log Z gradients out of the backbone.
    """

    def __init__(self, hidden_size: int, hidden: int = 128, init: float = 0.0):
        super().__init__()
        self.hidden_size, self.hidden, self.init = int(hidden_size), int(hidden), float(init)
        self.norm = nn.LayerNorm(self.hidden_size, dtype=torch.float32)
        self.fc1 = nn.Linear(self.hidden_size, self.hidden, dtype=torch.float32)
        self.fc2 = nn.Linear(self.hidden, 1, dtype=torch.float32)
        nn.init.zeros_(self.fc2.weight)
        nn.init.constant_(self.fc2.bias, self.init)

    def init_kwargs(self) -> dict:
        return {"hidden_size": self.hidden_size, "hidden": self.hidden, "init": self.init}

    def forward(self, hidden_states: torch.Tensor, prompt_mask: torch.Tensor) -> torch.Tensor:
        _check_hidden(hidden_states, self.hidden_size, "PromptLogZHead")
        if prompt_mask.shape != hidden_states.shape[:2]:
            raise ValueError(
                f"PromptLogZHead: prompt_mask shape {tuple(prompt_mask.shape)} must equal the "
                f"hidden states' [B, S] = {tuple(hidden_states.shape[:2])}."
            )
        mask = prompt_mask.to(device=hidden_states.device, dtype=torch.float32)
        counts = mask.sum(dim=1, keepdim=True)  # [B, 1]
        if bool((counts == 0).any()):
            rows = torch.nonzero(counts.squeeze(1) == 0).flatten().tolist()
            raise ValueError(f"PromptLogZHead: prompt rows {rows} have an all-zero prompt_mask.")
        pooled = (hidden_states.float() * mask.unsqueeze(-1)).sum(dim=1) / counts  # [B, H]
        return self.fc2(nn.functional.gelu(self.fc1(self.norm(pooled)))).squeeze(-1)  # [B]


class ScalarLogZ(_Float32Module):
    """One learned log Z, broadcast to the batch: the prompt-independent estimator."""

    def __init__(self, init: float = 0.0):
        super().__init__()
        self.init = float(init)
        self.log_z = nn.Parameter(torch.tensor(self.init, dtype=torch.float32))

    def init_kwargs(self) -> dict:
        return {"init": self.init}

    def forward(
        self,
        hidden_states: torch.Tensor | None = None,
        prompt_mask: torch.Tensor | None = None,
        *,
        batch_size: int | None = None,
    ) -> torch.Tensor:
        """[B] copies of log Z; B from ``batch_size`` or the first dim of the given tensors
        (same call shape as PromptLogZHead, so the trainer can swap estimators)."""
        ref = hidden_states if hidden_states is not None else prompt_mask
        if batch_size is None:
            if ref is None:
                raise ValueError(
                    "ScalarLogZ needs batch_size= or a [B, ...] tensor to size its output."
                )
            batch_size = ref.shape[0]
        return self.log_z.expand(int(batch_size))


def _check_hidden(hidden_states: torch.Tensor, hidden_size: int, who: str) -> None:
    if hidden_states.dim() != 3 or hidden_states.shape[-1] != hidden_size:
        raise ValueError(
            f"{who}: expected hidden states [B, S, {hidden_size}], "
            f"got {tuple(hidden_states.shape)}."
        )


HEAD_CLASSES: dict[str, type[_Float32Module]] = {
    cls.__name__: cls for cls in (FlowHead, PromptLogZHead, ScalarLogZ)
}
