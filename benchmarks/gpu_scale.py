"""GPU scale check: FlowHF training steps on a LLaMA-7B-shaped policy (the paper preset's size).

Nothing can be downloaded on the GPU machines this was written for, so the policy has
LLaMA-7B's SHAPE (32 layers, hidden 4096, MLP 11008, 32 heads) with random bf16 weights and
the tokenizer of a local folder (SmolLM2's, 49,152 tokens, so the model has ~6.9B parameters
instead of 6.7B). Random weights rarely emit EOS, so every completion runs to
``--max-new-tokens``: the worst case for time and memory. The reward is the dense toy
``letter_share`` (cheap, has prefix rewards), so the timings are the trainer's own.

Per objective and sampler (``sampling.sampler`` plain | fast) it reports seconds per step
(sampling / reward / update), tokens per second, the decoding milliseconds per token against
the time to read the weights once (``--hbm-tbps``), the step's achieved TFLOP/s (an estimate:
2 x parameters per token and pass, attention excluded), peak GPU memory, the loss and whether
every value stayed finite, as JSON. A run that fails records its error and the next one runs.

The device check (one H200, well inside 15 minutes: two 7B builds, 4 steps each, one compile):

    python benchmarks/gpu_scale.py --tokenizer DIR --objectives subtb --samplers plain fast --steps 4 \
        --max-prompt-length 128 --json benchmarks/results/gpu_scale_h200_b64_samplers.json
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import shutil
import time
from pathlib import Path


def build_policy(tokenizer, layers: int, hidden: int, intermediate: int, heads: int):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # build directly in bf16 on the GPU (no fp32 copy)
    try:
        with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(default)
    return model


def step_estimates(result: dict, weight_bytes: int, args) -> dict:
    """Decode ms per token vs the weight-read bound, and the step's achieved TFLOP/s.

    FLOPs per token and pass ~ 2 x parameters (attention and prompts left out, so this is a lower
    bound): sampling is one pass per completion token; the update is three (reference forward,
    policy forward, backward through the activations; LoRA adds no weight gradient to speak of)."""
    tokens = result["batch"] * result["mean_completion_length"]
    flops_per_pass = 2 * result["parameters"] * tokens
    decode_ms = 1000 * result["sample_seconds"] / max(result["mean_completion_length"], 1)
    return {
        "decode_ms_per_token": decode_ms,
        "weight_read_ms": 1000 * weight_bytes / (args.hbm_tbps * 1e12),
        "decode_over_weight_read": decode_ms / (1000 * weight_bytes / (args.hbm_tbps * 1e12)),
        "step_tflops": 4 * flops_per_pass / result["step_seconds"] / 1e12,
        "sample_tflops": flops_per_pass / result["sample_seconds"] / 1e12,
        "update_tflops": 3 * flops_per_pass / result["update_seconds"] / 1e12,
    }


def run_objective(objective: str, args, tokenizer, sampler: str = "fast") -> dict:
    import torch

    from flowhf.config.training import FlowHFConfig, apply_overrides
    from flowhf.training.trainer import FlowHFTrainer

    torch.manual_seed(0)
    started = time.perf_counter()
    model = build_policy(tokenizer, args.layers, args.hidden, args.intermediate, args.heads)
    n_params = sum(p.numel() for p in model.parameters())
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    build_seconds = time.perf_counter() - started
    out = Path(args.output_dir) / f"{objective}-{sampler}"
    shutil.rmtree(
        out, ignore_errors=True
    )  # the trainer appends to an existing metrics.jsonl (resume)
    sets = [
        "model.dtype=bfloat16",
        "model.lora=true",
        "model.autocast_bf16=true",
        "target.reward=python:flowhf.rewards.toy:letter_share",
        f"target.beta={args.beta}",
        "target.alpha=1.0",
        f"objective.objective={objective}",
        "objective.logz=batch",
        f"sampling.max_new_tokens={args.max_new_tokens}",
        f"sampling.prompts_per_step={args.prompts}",
        f"sampling.samples_per_prompt={args.samples}",
        "data.dataset=stackexchange:train",
        "data.prompt_column=question",
        f"optim.max_steps={args.steps}",
        "logging.save_steps=0",
        "logging.progress_bar=false",
        f"logging.output_dir={out}",
        "replay.replay_ratio=0.0",
        "optim.learning_rate=0.0001",
        f"sampling.sampler={sampler}",
        f"sampling.compile_decode={ {'auto': 'null', 'on': 'true', 'off': 'false'}[args.compile_decode] }",
    ] + ([f"sampling.max_prompt_length={args.max_prompt_length}"] if args.max_prompt_length else [])
    if objective == "subtb":
        sets += ["objective.subtb_energies=true", "objective.subtb_lambda=0.9"]
    data: dict = {}
    apply_overrides(data, sets)
    config = FlowHFConfig.from_dict(data, "gpu_scale")
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    trainer = FlowHFTrainer(model=model, tokenizer=tokenizer, args=config)
    trainer.train()
    rows = [
        json.loads(line)
        for line in (out / "metrics.jsonl").read_text().splitlines()
        if line.strip()
    ]
    timed = rows[1:] or rows  # the first step carries CUDA warm-up
    mean = lambda key: sum(r[key] for r in timed) / len(timed)  # noqa: E731
    finite = all(
        math.isfinite(r["train/loss"]) and math.isfinite(r["train/grad_norm"]) for r in rows
    )
    result = {
        "objective": objective,
        "sampler": sampler,
        "parameters": n_params,
        "build_seconds": round(build_seconds, 1),
        "steps": len(rows),
        "timed_steps": len(timed),
        "batch": args.prompts * args.samples,
        "max_new_tokens": args.max_new_tokens,
        "step_seconds": mean("train/step_time"),
        "sample_seconds": mean("train/sample_time"),
        "reward_seconds": mean("train/reward_time"),
        "update_seconds": mean("train/update_time"),
        "tokens_per_second": mean("train/tokens_per_second"),
        "mean_completion_length": mean("train/completion_length"),
        "peak_gpu_memory_gib": torch.cuda.max_memory_allocated() / 2**30
        if torch.cuda.is_available()
        else None,
        "losses": [r["train/loss"] for r in rows],
        "log_z": [r["train/log_z"] for r in rows],
        "kl_per_token": [r["train/kl_per_token"] for r in rows],
        "all_finite": finite,
        "first_step_seconds": rows[0][
            "train/step_time"
        ],  # with the fast sampler: its copy and compilation
    }
    result.update(step_estimates(result, weight_bytes, args))
    del trainer, model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--tokenizer",
        required=True,
        help="Folder holding a Hugging Face tokenizer (e.g. SmolLM2's).",
    )
    parser.add_argument("--objectives", nargs="+", default=["subtb", "tb"])
    parser.add_argument("--samplers", nargs="+", choices=["plain", "fast"], default=["fast"])
    parser.add_argument(
        "--compile-decode",
        choices=["auto", "on", "off"],
        default="auto",
        help="sampling.compile_decode of the fast sampler (auto: compiled on GPU).",
    )
    parser.add_argument(
        "--max-prompt-length",
        type=int,
        default=None,
        help="sampling.max_prompt_length: equal prompt lengths keep the compiled decode step to one shape.",
    )
    parser.add_argument(
        "--hbm-tbps",
        type=float,
        default=4.3,
        help="Memory bandwidth for the weight-read bound (TB/s).",
    )
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=4096)
    parser.add_argument("--intermediate", type=int, default=11008)
    parser.add_argument("--heads", type=int, default=32)
    parser.add_argument("--prompts", type=int, default=4, help="Prompts per step.")
    parser.add_argument("--samples", type=int, default=16, help="Completions per prompt.")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--beta", type=float, default=8.0)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--output-dir", default="runs/gpu_scale")
    parser.add_argument("--json", default=None, help="Write the results here.")
    args = parser.parse_args(argv)

    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    results = {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "runs": [],
    }
    for objective in args.objectives:
        for sampler in args.samplers:
            try:
                results["runs"].append(run_objective(objective, args, tokenizer, sampler))
            except Exception as err:  # noqa: BLE001  (one failed run must not lose the others' figures)
                results["runs"].append(
                    {
                        "objective": objective,
                        "sampler": sampler,
                        "error": f"{type(err).__name__}: {err}",
                    }
                )
                gc.collect()  # the failed run's model, held by the traceback until now
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            print(json.dumps(results["runs"][-1]), flush=True)
            if args.json:  # written after every run: a device that goes away keeps what finished
                Path(args.json).parent.mkdir(parents=True, exist_ok=True)
                Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
