"""Benchmark: does a forward pass of SmolLM2 depend on the CPU's instruction set? fp32 vs bf16 autocast.

Why: two `make demo` runs in different sessions gave bit-identical SFT, reward-model, PPO and GRPO
results (fp32) but different FlowHF results (bf16 autocast), while on one machine FlowHF reruns
were bit-identical. oneDNN picks its kernels by the host's instruction set; capping it with
``ONEDNN_MAX_CPU_ISA`` stands in for another host. Each setting runs in its own process (oneDNN
reads the variable once) and prints a hash of the logits of one fixed batch.

    .venv/bin/python benchmarks/isa_determinism.py   # -> benchmarks/results/isa_determinism.json
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ISAS = ("DEFAULT", "AVX512_CORE", "AVX2")


def logits_hashes() -> dict[str, str]:
    import torch
    from transformers import AutoModelForCausalLM

    from flowhf.models.loading import resolve_model_path

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(resolve_model_path("smollm2")).eval()
    ids = torch.randint(0, 1000, (4, 48))

    def digest(t: torch.Tensor) -> str:
        return hashlib.sha256(t.float().numpy().tobytes()).hexdigest()[:16]

    with torch.no_grad():
        fp32 = model(ids).logits
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = model(ids).logits
    return {"fp32": digest(fp32), "bf16_autocast": digest(bf16)}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        print(json.dumps(logits_hashes()))
        return
    results = {}
    for isa in ISAS:
        env = {**os.environ, "ONEDNN_MAX_CPU_ISA": isa, "HF_HUB_OFFLINE": "1"}
        out = subprocess.run(
            [sys.executable, __file__, "--one"], env=env, capture_output=True, text=True, check=True
        )
        results[isa] = json.loads(out.stdout.strip().splitlines()[-1])
        print(isa, results[isa], flush=True)
    verdict = {
        kind: len({r[kind] for r in results.values()}) == 1 for kind in ("fp32", "bf16_autocast")
    }
    record = {
        "hashes": results,
        "identical_across_isas": verdict,
        "cpu": next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            "unknown",
        ),
    }
    path = HERE / "results" / "isa_determinism.json"
    path.write_text(json.dumps(record, indent=2))
    print(f"identical across instruction sets: {verdict} -> {path}")


if __name__ == "__main__":
    main()
