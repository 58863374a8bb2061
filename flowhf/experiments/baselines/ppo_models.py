"""Models around TRL's PPO: a pad token distinct from EOS, and the value model.

Why PPO needs a distinct pad token: TRL's PPO never receives attention masks; it rebuilds them
as ``ids != pad_token_id`` (rollout, value, reward and training forwards alike) and finds the end
of a response at its first pad. SmolLM2's pad token IS its EOS ``<|im_end|>`` (id 2), which its
chat template also writes after every turn, so with pad == EOS the end-of-turn tokens inside each
prompt would be masked out as padding and a completion's own EOS would not count as generated.

`ensure_distinct_pad` fixes this without changing the model when it can: it reuses a special token
the tokenizer already has but that the chat template never writes and that is not EOS / BOS /
UNK (SmolLM2: ``<repo_name>``, id 3, a code-pretraining marker that an instruct chat never
produces). Its embedding is a trained one the model gives low probability, and the vocabulary
size is unchanged, so the PPO policy stays comparable token for token with the SFT / FlowHF
models. Only when no such token exists is ``<|pad|>`` added and the embeddings resized. Pad
positions are masked everywhere, so the choice of token does not change any computed value.

The value model is ``AutoModelForSequenceClassification`` (one label) with the policy's backbone
weights copied in and a fresh scalar head, as TRL's PPO expects (``base_model_prefix`` backbone
+ ``.score``). With LoRA, adapters are injected into the value backbone as well (head trainable,
backbone frozen), so PPO's trainable state stays LoRA-sized like the other methods'; TRL's own
default is a fully trained value model (pass ``value_lora=False`` for that).
"""

from __future__ import annotations

import copy
from typing import Any

from peft import inject_adapter_in_model
from transformers import AutoModelForSequenceClassification

from flowhf.models.lora import LoraSettings, build_lora_config
from flowhf.sampling.prompts import eos_ids

ADDED_PAD = "<|pad|>"


def ensure_distinct_pad(tokenizer: Any, model: Any) -> dict[str, Any]:
    """Give ``tokenizer`` a pad token different from EOS (see the module docstring).

    Modifies ``tokenizer`` (and ``model``'s embeddings if a token had to be added); returns a
    record ``{"pad_token", "pad_token_id", "how": "kept" | "reused" | "added"}``.
    """
    eos = set(eos_ids(model, tokenizer))
    if tokenizer.pad_token_id is not None and tokenizer.pad_token_id not in eos:
        return {
            "pad_token": tokenizer.pad_token,
            "pad_token_id": tokenizer.pad_token_id,
            "how": "kept",
        }
    template = (
        tokenizer.chat_template
        if isinstance(tokenizer.chat_template, str)
        else str(tokenizer.chat_template or "")
    )
    reserved = eos | {i for i in (tokenizer.bos_token_id, tokenizer.unk_token_id) if i is not None}
    vocab_rows = model.get_input_embeddings().num_embeddings
    for token_id, token in sorted(tokenizer.added_tokens_decoder.items()):
        if (
            token.special
            and token_id not in reserved
            and token_id < vocab_rows
            and token.content not in template
        ):
            tokenizer.pad_token = token.content
            return {"pad_token": token.content, "pad_token_id": int(token_id), "how": "reused"}
    tokenizer.add_special_tokens({"pad_token": ADDED_PAD})
    model.resize_token_embeddings(len(tokenizer))
    return {"pad_token": ADDED_PAD, "pad_token_id": int(tokenizer.pad_token_id), "how": "added"}


def build_value_model(
    policy: Any, pad_token_id: int, lora: LoraSettings | None, value_lora: bool = True
) -> Any:
    """Scalar value model initialised from the policy's backbone (see the module docstring)."""
    config = copy.deepcopy(policy.config)
    config.num_labels = 1
    config.pad_token_id = pad_token_id
    value = AutoModelForSequenceClassification.from_config(config, dtype=policy.dtype)
    source = getattr(policy, policy.base_model_prefix)
    target = getattr(value, value.base_model_prefix)
    target.load_state_dict(source.state_dict())
    if lora is not None and value_lora:
        inject_adapter_in_model(build_lora_config(lora, task_type=None), target)
        for name, param in value.named_parameters():
            param.requires_grad = "lora_" in name or name.startswith("score.")
    return value
