"""flowhf.models: loading / resolution, LoRA wrapping, reference mode, heads and saving.

Tiny randomly initialised models only; the real SmolLM2 conversion is checked manually.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

from flowhf.models import loading
from flowhf.models.heads import FlowHead, PromptLogZHead, ScalarLogZ
from flowhf.models.loading import load_policy, load_tokenizer, resolve_model_path
from flowhf.models.lora import LoraSettings, apply_lora
from flowhf.models.saved_run import load_heads, load_trained, save_heads, save_policy
from flowhf.models.tiny import tiny_llama

WORDS = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran", "big", "red"]
VOCAB = 16  # 3 specials + 10 words, padded up
HIDDEN = 32
IDS = torch.tensor([[1, 3, 4, 5, 6, 7], [1, 8, 9, 10, 11, 12]])


def toy_tokenizer() -> PreTrainedTokenizerFast:
    """Word-level tokenizer with <unk>/<s>/</s> and deliberately NO pad token."""
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )


def tiny(seed: int = 0):
    return tiny_llama(VOCAB, seed=seed, hidden_size=HIDDEN, bos_token_id=1, eos_token_id=2)


@pytest.fixture()
def base_dir(tmp_path: Path) -> Path:
    """A saved tiny base model + tokenizer folder."""
    folder = tmp_path / "tiny-base"
    tiny().save_pretrained(folder)
    toy_tokenizer().save_pretrained(folder)
    return folder


def logits(model, ids=IDS) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits


def perturb_lora_b(model: PeftModel, seed: int = 1) -> None:
    """lora_B starts at zero (adapter = identity); give it values so the policy moves."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.5)


# ----------------------------------------------------------------------------- LoRA


def test_lora_settings_validation():
    assert LoraSettings().target_modules == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert LoraSettings(target_modules=("q_proj",)).target_modules == ["q_proj"]
    for bad in (
        {"r": 0},
        {"r": 2.5},
        {"alpha": -1},
        {"dropout": 1.0},
        {"target_modules": []},
        {"target_modules": "q_proj"},
    ):
        with pytest.raises(ValueError):
            LoraSettings(**bad)


def test_apply_lora_only_adapters_trainable():
    model = apply_lora(tiny(), LoraSettings(r=4, alpha=8, dropout=0.0))
    assert isinstance(model, PeftModel)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_A" in n or "lora_B" in n for n in trainable)
    # 2 layers x 4 square projections x (A: r*H + B: H*r) = 2 * 4 * 2 * 4 * 32
    assert sum(p.numel() for p in trainable.values()) == 2 * 4 * 2 * 4 * HIDDEN
    with pytest.raises(ValueError, match="q_proj"):
        apply_lora(tiny(), LoraSettings(target_modules=["nonexistent_proj"]))


def test_reference_mode_lora_is_exact_base():
    fresh = tiny()
    bundle = load_policy(tiny(), lora=LoraSettings(r=4, dropout=0.1))
    assert bundle.reference is None and bundle.is_lora
    assert torch.equal(logits(bundle.model), logits(fresh))  # lora_B = 0: identity at start
    perturb_lora_b(bundle.model)
    bundle.model.train()
    policy_logits = logits(bundle.model.eval())
    assert (policy_logits - logits(fresh)).abs().max() > 1e-3
    bundle.model.train()
    with bundle.reference_mode() as ref:
        assert ref is bundle.model and not ref.training and not torch.is_grad_enabled()
        ref_logits = ref(input_ids=IDS).logits
    assert torch.equal(ref_logits, logits(fresh))
    assert bundle.model.training  # mode restored; adapters back on
    assert torch.equal(logits(bundle.model.eval()), policy_logits)


def test_reference_full_finetune_is_frozen_copy():
    bundle = load_policy(tiny(), lora=None)
    assert bundle.reference is not None and not bundle.reference.training
    assert not any(p.requires_grad for p in bundle.reference.parameters())
    assert all(p.requires_grad for p in bundle.model.parameters())
    with torch.no_grad():
        for p in bundle.model.parameters():
            p.add_(0.1)
    with bundle.reference_mode() as ref:
        assert ref is bundle.reference
        assert torch.equal(ref(input_ids=IDS).logits, logits(tiny()))


def test_load_policy_casts_instance_dtype():
    bundle = load_policy(tiny(), lora=None, dtype="bfloat16")
    assert bundle.model.dtype == torch.bfloat16 and bundle.reference.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="dtype"):
        load_policy(tiny(), dtype="float8")


# ----------------------------------------------------------------------------- heads


def test_flow_head_zero_init_shapes_float32():
    head = FlowHead(HIDDEN)
    hidden = torch.randn(3, 5, HIDDEN, dtype=torch.bfloat16)
    out = head(hidden)
    assert out.shape == (3, 5) and out.dtype == torch.float32
    assert torch.equal(out, torch.zeros(3, 5))
    with torch.no_grad():
        head.linear.weight.fill_(1.0)
        head.linear.bias.fill_(0.5)
    expected = hidden.float().sum(-1) + 0.5
    torch.testing.assert_close(head(hidden), expected)
    head.to(torch.bfloat16)  # stays float32 even when cast with a bf16 backbone
    assert all(p.dtype == torch.float32 for p in head.parameters())
    with pytest.raises(ValueError, match="hidden states"):
        head(torch.randn(3, HIDDEN))


def test_prompt_log_z_head_masked_mean_pool():
    head = PromptLogZHead(HIDDEN, hidden=8, init=2.5)
    hidden = torch.randn(2, 4, HIDDEN)
    mask = torch.tensor([[0, 1, 1, 1], [0, 0, 0, 1]])
    out = head(hidden, mask)
    assert out.shape == (2,) and out.dtype == torch.float32
    torch.testing.assert_close(out, torch.full((2,), 2.5))  # zero last layer: log Z = init
    torch.nn.init.normal_(head.fc2.weight)
    pooled = torch.stack([hidden[0, 1:].mean(0), hidden[1, 3]])  # hand-pooled prompts
    expected = head.fc2(torch.nn.functional.gelu(head.fc1(head.norm(pooled)))).squeeze(-1)
    torch.testing.assert_close(head(hidden, mask), expected)
    changed = hidden.clone()
    changed[:, 0] += 100.0  # masked-out (padding) positions must not matter
    torch.testing.assert_close(head(changed, mask), expected)
    with pytest.raises(ValueError, match=r"rows \[1\]"):
        head(hidden, torch.tensor([[1, 1, 1, 1], [0, 0, 0, 0]]))


def test_scalar_log_z_broadcast_and_grad():
    head = ScalarLogZ(init=-1.5)
    out = head(torch.zeros(4, 3, HIDDEN), torch.ones(4, 3))
    assert torch.equal(out, torch.full((4,), -1.5))
    assert head(batch_size=2).shape == (2,)
    out.sum().backward()
    assert head.log_z.grad.item() == 4.0  # one gradient contribution per row


def test_heads_save_load_round_trip(tmp_path: Path):
    torch.manual_seed(0)
    heads = {
        "flow": FlowHead(HIDDEN),
        "log_z": PromptLogZHead(HIDDEN, hidden=8, init=1.0),
        "scalar": ScalarLogZ(3.0),
    }
    for head in heads.values():
        with torch.no_grad():
            for p in head.parameters():
                p.add_(torch.randn_like(p))
    save_heads(tmp_path, heads, {"objective": "fl", "beta": 2.0})
    loaded, meta = load_heads(tmp_path)
    assert meta == {"objective": "fl", "beta": 2.0}
    assert set(loaded) == set(heads)
    for name, head in heads.items():
        assert type(loaded[name]) is type(head)
        state, other = head.state_dict(), loaded[name].state_dict()
        assert state.keys() == other.keys() and all(torch.equal(state[k], other[k]) for k in state)
    spec = json.loads((tmp_path / "flowhf_heads.json").read_text())
    assert spec["heads"]["log_z"] == {
        "class": "PromptLogZHead",
        "kwargs": {"hidden_size": HIDDEN, "hidden": 8, "init": 1.0},
    }
    assert load_heads(tmp_path / "nothing") == ({}, {})


# ----------------------------------------------------------------------------- saving policies


def test_save_policy_lora_loads_with_plain_peft(base_dir: Path, tmp_path: Path):
    bundle = load_policy(str(base_dir), lora=LoraSettings(r=4))
    assert bundle.tokenizer.pad_token == "</s>" and bundle.tokenizer.padding_side == "left"
    perturb_lora_b(bundle.model)
    expected = logits(bundle.model.eval())
    run = tmp_path / "run"
    save_policy(bundle, run, heads={"flow": FlowHead(HIDDEN)}, meta={"step": 3})
    adapter_cfg = json.loads((run / "adapter_config.json").read_text())
    assert adapter_cfg["base_model_name_or_path"] == str(base_dir.resolve())
    assert not (run / "model.safetensors").exists()  # adapter only, not the base weights
    base = AutoModelForCausalLM.from_pretrained(adapter_cfg["base_model_name_or_path"])
    plain = PeftModel.from_pretrained(base, str(run)).eval()
    assert torch.equal(logits(plain), expected)
    trained = load_trained(run)
    assert isinstance(trained.model, PeftModel) and not trained.model.training
    assert torch.equal(logits(trained.model), expected)
    assert set(trained.heads) == {"flow"} and trained.meta["step"] == 3
    assert trained.meta["source"] == str(base_dir) and trained.meta["lora"] is True
    assert trained.tokenizer.pad_token == "</s>"
    merged = load_trained(run, merge=True)
    assert not isinstance(merged.model, PeftModel)
    torch.testing.assert_close(logits(merged.model), expected, atol=1e-5, rtol=1e-5)


def test_save_policy_records_absolute_base_path(base_dir: Path, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(base_dir.parent)
    bundle = load_policy("tiny-base", lora=LoraSettings(r=2))
    save_policy(bundle, tmp_path / "run")
    adapter_cfg = json.loads((tmp_path / "run" / "adapter_config.json").read_text())
    assert adapter_cfg["base_model_name_or_path"] == str(base_dir.resolve())
    other = tmp_path / "moved-base"
    tiny().save_pretrained(other)
    save_policy(bundle, tmp_path / "run2", base_model=str(other))  # explicit override wins
    adapter_cfg = json.loads((tmp_path / "run2" / "adapter_config.json").read_text())
    assert adapter_cfg["base_model_name_or_path"] == str(other)


def test_save_policy_full_finetune(base_dir: Path, tmp_path: Path):
    bundle = load_policy(str(base_dir), lora=None)
    with torch.no_grad():
        bundle.model.model.norm.weight.mul_(1.5)
    expected = logits(bundle.model)
    save_policy(bundle, tmp_path / "run", heads={"log_z": ScalarLogZ(4.0)})
    trained = load_trained(tmp_path / "run")
    assert torch.equal(logits(trained.model), expected)
    assert trained.heads["log_z"].log_z.item() == 4.0 and trained.meta["lora"] is False


# ----------------------------------------------------------------------------- resolution


def test_resolve_folder_alias_and_hub_id(base_dir: Path, monkeypatch):
    assert resolve_model_path(base_dir) == str(base_dir)
    hub_id = "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert resolve_model_path(hub_id) == hub_id

    def no_conversion(*args, **kwargs):
        raise AssertionError("must not convert when FLOWHF_DEFAULT_MODEL_DIR holds a model")

    monkeypatch.setattr(loading, "convert_gguf", no_conversion)
    monkeypatch.setenv("FLOWHF_DEFAULT_MODEL_DIR", str(base_dir))
    assert resolve_model_path("smollm2") == str(base_dir)
    assert resolve_model_path("default") == str(base_dir)
    model, tokenizer = loading.load_causal_lm("smollm2")
    assert torch.equal(logits(model), logits(tiny()))


def test_resolve_missing_paths_give_clear_errors(tmp_path: Path):
    missing = tmp_path / "missing" / "model.gguf"
    with pytest.raises(FileNotFoundError, match="GGUF model file not found.*model.gguf"):
        resolve_model_path(str(missing))
    with pytest.raises(FileNotFoundError, match="Model folder not found"):
        resolve_model_path(str(tmp_path / "no-such-folder"))
    with pytest.raises(FileNotFoundError, match="Model folder not found"):
        resolve_model_path("./not/here")
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="is a file"):
        resolve_model_path(str(tmp_path / "weights.bin"))


def test_hub_id_offline_error(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(
        OSError, match="not in the Hugging Face cache, and HF_HUB_OFFLINE is set"
    ):  # fast, no retries
        loading.load_causal_lm("flowhf-tests/definitely-not-cached")


def test_load_tokenizer_pad_defaults_to_eos(base_dir: Path):
    tokenizer = load_tokenizer(base_dir)
    assert tokenizer.pad_token == tokenizer.eos_token == "</s>"
    batch = tokenizer(["the cat", "a big red dog"], padding=True)
    assert batch["input_ids"][0][:2] == [2, 2] and batch["attention_mask"][0] == [0, 0, 1, 1]


# ------------------------------------------------------------------ GGUF conversion (faked)


def test_gguf_conversion_once_atomic(tmp_path: Path, monkeypatch):
    """The conversion machinery with the de-quantisation faked by saving a tiny model."""
    gguf = tmp_path / "My-Model.Q4.gguf"
    gguf.write_bytes(b"GGUF fake")
    calls = []

    def fake_convert(path: Path, target: Path) -> None:
        calls.append(target)
        assert target.name.startswith(".tmp-") and target.parent == tmp_path / "cache"
        tiny().save_pretrained(target)

    monkeypatch.setattr(loading, "_convert_into", fake_convert)
    final_name = loading._gguf_cache_dir(gguf, tmp_path / "cache").name
    stale = tmp_path / "cache" / f".tmp-{final_name}-old"
    stale.mkdir(parents=True)  # leftover of a killed conversion
    first = resolve_model_path(gguf, cache_dir=tmp_path / "cache")
    second = resolve_model_path(str(gguf), cache_dir=tmp_path / "cache")
    assert first == second and len(calls) == 1
    assert Path(first).name.startswith("my-model.q4-") and (Path(first) / "config.json").is_file()
    assert not stale.exists() and not list((tmp_path / "cache").glob(".tmp-*"))

    def failing_convert(path: Path, target: Path) -> None:
        (target / "config.json").write_text("{}")
        raise RuntimeError("killed mid-way")

    monkeypatch.setattr(loading, "_convert_into", failing_convert)
    out = tmp_path / "other"
    with pytest.raises(RuntimeError, match="killed"):
        loading.convert_gguf(gguf, out)
    assert not out.exists() and not list(tmp_path.glob(".tmp-*"))  # no half folder left


def test_default_model_dir_env_and_cache(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("FLOWHF_DEFAULT_MODEL_DIR", raising=False)
    monkeypatch.setenv("FLOWHF_CACHE_DIR", str(tmp_path / "envcache"))
    assert loading.cache_root() == tmp_path / "envcache"
    assert loading.cache_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.setattr(loading, "_smollm2_gguf_path", lambda: Path(os.devnull))
    monkeypatch.setattr(loading, "_convert_into", lambda _, target: tiny().save_pretrained(target))
    assert loading.default_model_dir() == tmp_path / "envcache" / "smollm2-135m-instruct"
    assert (tmp_path / "envcache" / "smollm2-135m-instruct" / "config.json").is_file()


def test_eval_mode_restores_the_training_mode_even_when_the_body_raises():
    from flowhf.models.modes import eval_mode

    model = torch.nn.Sequential(torch.nn.Dropout(0.5)).train()
    with eval_mode(model) as inside:
        assert not inside.training
    assert model.training
    with pytest.raises(RuntimeError), eval_mode(model):
        raise RuntimeError("boom")
    assert model.training
    model.eval()
    with eval_mode(model):
        pass
    assert not model.training
