"""A FlowHF-trained reward model folder carries its text template; scoring applies it."""

import pytest
import torch


def test_classifier_uses_the_saved_reward_template(tmp_path):
    """A FlowHF-trained RM folder carries its template; scoring must format text the same way."""
    import json

    from transformers import LlamaForSequenceClassification

    from flowhf.models.tiny import tiny_llama_config, tiny_tokenizer
    from flowhf.rewards.classifier import ClassifierReward

    tok = tiny_tokenizer(["Question: what is two plus two? Answer: four. The quick brown fox."])
    cfg = tiny_llama_config(len(tok), hidden_size=32, pad_token_id=tok.pad_token_id)
    cfg.num_labels = 1
    torch.manual_seed(0)
    model = LlamaForSequenceClassification(cfg)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    template = "Question: {prompt}\n\nAnswer: {completion}"
    (tmp_path / "flowhf_reward.json").write_text(
        json.dumps({"template": template, "max_length": 64})
    )
    reward = ClassifierReward(path=str(tmp_path))
    assert reward.input_format == "template" and reward.max_length == 64
    got = reward(["what is two plus two?"], ["four."])
    ids = tok("Question: what is two plus two?\n\nAnswer: four.", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        expected = model(ids).logits[0, 0]
    assert got[0].item() == pytest.approx(expected.item(), abs=1e-5)
