"""Every method's runner encodes the same prompt to the same ids: FlowHF training, the
evaluation's sampling and the three TRL baselines (their dataset rows as TRL tokenizes them)."""

import pytest
from trl.data_utils import _tokenize as trl_tokenize

from flowhf.config.evaluation import GenerationSettings
from flowhf.evaluation.generation import generate_batch
from flowhf.experiments.baselines.common import encode_prompt
from flowhf.experiments.baselines.grpo import grpo_examples
from flowhf.experiments.baselines.sft import sft_examples
from flowhf.sampling.prompts import eos_ids, uses_chat_template
from flowhf.training.trainer import FlowHFTrainer
from tests.test_trainer import tiny_config

PROMPT = "Describe the sea at night."


def _unpadded(ids, mask, row=0) -> list[int]:
    return ids[row][mask[row].bool()].tolist()


@pytest.mark.parametrize("chat_template", [True, False])
def test_every_runner_encodes_a_prompt_to_the_same_ids(tmp_path, chat_template):
    trainer = FlowHFTrainer(
        args=tiny_config(tmp_path, f"model.chat_template={str(chat_template).lower()}"),
        train_dataset=[{"prompt": PROMPT}],
    )
    tok, model = trainer.tokenizer, trainer.accelerator.unwrap_model(trainer.model)
    assert (
        uses_chat_template(tok, chat_template) == chat_template
    )  # the tiny tokenizer has a template
    batch, _ = trainer.build_batch([{"prompt": PROMPT}])
    ids = {"flowhf": _unpadded(batch.prompt_ids, batch.prompt_mask)}
    settings = GenerationSettings(max_new_tokens=1, batch_size=1, use_chat_template=chat_template)
    generated = generate_batch(
        model, tok, [PROMPT, "Hi."], settings
    )  # a longer prompt beside a padded one
    ids["evaluation"] = _unpadded(generated.prompt_ids.cpu(), generated.prompt_mask.cpu())
    ids["ppo"] = encode_prompt(tok, PROMPT, chat_template)
    grpo_prompt = grpo_examples([{"prompt": PROMPT}], chat_template)[0]["prompt"]
    ids["grpo"] = list(trl_tokenize(tok, grpo_prompt, add_generation_prompt=True)["input_ids"])
    sft_prompt = sft_examples([{"prompt": PROMPT, "completion": "Dark."}], chat_template)[0][
        "prompt"
    ]
    ids["sft"] = list(trl_tokenize(tok, sft_prompt, add_generation_prompt=True)["input_ids"])
    assert all(v == ids["flowhf"] for v in ids.values()), ids
    assert trainer.eos_ids == eos_ids(model, tok)
