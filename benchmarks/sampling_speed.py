#!/usr/bin/env python
"""Generation time of the plain and the fast sampler, back to back, on SmolLM2-135M + LoRA r16.

    python benchmarks/sampling_speed.py --max-new-tokens 32 --json benchmarks/results/sampling_speed_32.json

The batch is the trainer's: 2 prompts x 4 samples (shipped sentiment prompts, chat template).
EOS is switched off (an id no row can draw), so every call generates exactly max_new_tokens per
row and both samplers do the same work; the trainer's own steps stop at EOS. Before every fast
call the LoRA weights are bumped in place, as an optimiser step would, so the merge is timed too.

Per dtype (float32: plain vs fast in float32; bfloat16: plain under bf16 autocast, as
``model.autocast_bf16`` runs it, vs fast on a bf16 copy) it writes the median seconds per call
over ``--repeats`` alternating calls (one warm-up each first), the speedup, and how far the
fast sampler's log q sits from the teacher-forced float32 recompute (nats per token). The top
level repeats the bfloat16 figures (``--dtype``'s last) as plain_seconds / fast_seconds /
speedup, with the load average (other jobs share the 2 cores). ``--compile`` also times the
compiled decode step: its first call (compilation) and its steady state.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

import flowhf  # (sets the OpenMP waits before torch loads)
from flowhf.data.loading import load_prompts
from flowhf.models.loading import load_policy
from flowhf.models.lora import LoraSettings
from flowhf.sampling.fast import FastSampler
from flowhf.sampling.generate import SampleSettings, sample_completions
from flowhf.sampling.logprobs import completion_log_probs
from flowhf.sampling.prompts import encode_prompts, left_pad

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def batch(tokenizer, prompts: int, samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    texts = load_prompts("sentiment_prompts", limit=prompts)
    encoded = encode_prompts(tokenizer, texts, True)
    return left_pad([e for e in encoded for _ in range(samples)], tokenizer.pad_token_id)


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def bump_adapters(model) -> None:
    """An in-place no-op on every trainable tensor: the fast copy sees changed weights and re-merges."""
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.0)


def log_q_gap(model, ids, mask, comp) -> dict:
    """|log q - teacher-forced float32 log pi| per token of the fast sampler's completions."""
    with torch.no_grad():
        log_pf = completion_log_probs(model, ids, mask, comp.ids, comp.mask).log_pf.sum(1)
    per_token = (comp.log_q - log_pf).abs() / comp.mask.sum(1).clamp_min(1)
    return {
        "mean_nats_per_token": float(per_token.mean()),
        "max_nats_per_token": float(per_token.max()),
    }


def compare(model, ids, mask, dtype: str, args, pad_id: int) -> dict:
    """Alternating plain / fast calls at one dtype; median seconds of each after a warm-up."""
    autocast = (
        torch.autocast("cpu", dtype=torch.bfloat16)
        if dtype == "bfloat16"
        else contextlib.nullcontext()
    )
    fast = FastSampler(model, DTYPES[dtype])
    kwargs = dict(settings=SampleSettings(args.max_new_tokens, -1, pad_id))
    gen = torch.Generator().manual_seed(0)

    def plain_call():
        with autocast:
            return sample_completions(model, ids, mask, generator=gen, **kwargs)

    def fast_call():
        bump_adapters(model)
        return fast.sample(ids, mask, generator=gen, **kwargs)

    plain_call(), fast_call()  # warm-up
    plain, fast_s = [], []
    for _ in range(args.repeats):
        plain.append(timed(plain_call)[0])
        seconds, comp = timed(fast_call)
        fast_s.append(seconds)
    rec = {
        "dtype": dtype,
        "plain_seconds": statistics.median(plain),
        "fast_seconds": statistics.median(fast_s),
        "plain_all": plain,
        "fast_all": fast_s,
        "log_q_vs_recompute": log_q_gap(model, ids, mask, comp),
    }
    rec["speedup"] = rec["plain_seconds"] / rec["fast_seconds"]
    if args.compile:
        rec.update(compiled(model, ids, mask, dtype, args, kwargs, gen, rec["fast_seconds"]))
    return rec


def compiled(model, ids, mask, dtype, args, kwargs, gen, fast_seconds: float) -> dict:
    """The compiled decode step: first call (compiles) and the median of the next calls."""
    sampler = FastSampler(model, DTYPES[dtype], compile=True)
    first, _ = timed(lambda: sampler.sample(ids, mask, generator=gen, **kwargs))
    runs = [
        timed(lambda: sampler.sample(ids, mask, generator=gen, **kwargs))[0]
        for _ in range(args.repeats)
    ]
    seconds = statistics.median(runs)
    return {
        "compiled_first_call_seconds": first,
        "compiled_seconds": seconds,
        "compiled_all": runs,
        "compiled_vs_uncompiled_fast": fast_seconds / seconds,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--prompts", type=int, default=2)
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--dtype", nargs="+", choices=list(DTYPES), default=["float32", "bfloat16"])
    p.add_argument("--compile", action="store_true", help="also time the compiled decode step")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    bundle = load_policy("smollm2", lora=LoraSettings(r=16, alpha=32, dropout=0.0))
    model, tok = bundle.model.eval(), bundle.tokenizer
    ids, mask = batch(tok, args.prompts, args.samples)
    load_before = os.getloadavg()
    runs = []
    for dtype in args.dtype:
        runs.append(compare(model, ids, mask, dtype, args, tok.pad_token_id))
        r = runs[-1]
        print(
            f"{dtype:8s} plain {r['plain_seconds']:.3f} s  fast {r['fast_seconds']:.3f} s  x{r['speedup']:.2f}  "
            f"log q gap {r['log_q_vs_recompute']['mean_nats_per_token']:.2e} nats/token",
            flush=True,
        )
    head = runs[-1]
    by = {r["dtype"]: r for r in runs}
    cross = {}
    if {"float32", "bfloat16"} <= set(
        by
    ):  # the default fp32 policy with sampling.sample_dtype=bfloat16
        cross = {
            "fast_bf16_over_plain_fp32": by["float32"]["plain_seconds"]
            / by["bfloat16"]["fast_seconds"]
        }
    out = {
        "benchmark": "plain vs fast sampler, SmolLM2-135M-Instruct + LoRA r16 (q,k,v,o), CPU",
        "batch": f"{args.prompts} prompts x {args.samples} samples",
        "max_new_tokens": args.max_new_tokens,
        "prompt_tokens": int(mask.shape[1]),
        "eos": "off (every row generates max_new_tokens)",
        "plain_seconds": head["plain_seconds"],
        "fast_seconds": head["fast_seconds"],
        "speedup": head["speedup"],
        "headline_dtype": head["dtype"],
        **cross,
        "runs": runs,
        "load_average": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "openmp_waits": flowhf.openmp_waits(),
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
