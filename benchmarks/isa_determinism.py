"""Benchmark: does a forward pass of SmolLM2 depend on the CPU's instruction set? fp32 vs bf16 autocast.

Why: two `make demo` runs in different sessions gave bit-identical SFT, reward-model, PPO and GRPO
results (fp32) but different FlowHF results (bf16 autocast), while on one machine FlowHF reruns
were bit-identical. oneDNN picks its kernels by the host's instruction set; capping it with
``ONEDNN_MAX_CPU_ISA`` stands in for another host. Each setting runs in its own process (oneDNN
reads the variable once) and prints a hash of the logits of one fixed batch.

``--train`` also trains one FlowHF stage of the ``cpu`` preset (the recommended run: the preset's
own overrides via `stages.flowhf_overrides`, a short step budget, SmolLM2 instead of the SFT model
and the toy ``letter_share`` reward instead of the trained reward model, so no earlier stage is
needed) under each cap, in fp32 and under bf16 autocast, and records the SHA-256 of the saved
weights and the loss of every step. ``AVX2+MKL`` caps MKL too (``MKL_ENABLE_INSTRUCTIONS``): fp32
matmuls go through MKL, not oneDNN, so a oneDNN cap alone does not show what another host's MKL
dispatch does to fp32.

A third kind, ``fp32_deterministic``, trains in fp32 with ``torch.use_deterministic_algorithms(True)``
and ``MKL_CBWR=AVX2`` (MKL's conditional numerical reproducibility: one code path on every host
that has AVX2): the candidate route to FlowHF stages that are bit-identical across hosts.

    .venv/bin/python benchmarks/isa_determinism.py           # -> results/isa_determinism.json
    .venv/bin/python benchmarks/isa_determinism.py --train   # + the training part (minutes)
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
# a cap: oneDNN's ONEDNN_MAX_CPU_ISA, "+MKL": MKL_ENABLE_INSTRUCTIONS at the same level too
ISAS = ("DEFAULT", "AVX512_CORE", "AVX2", "AVX2+MKL")
TRAIN_ISAS = ("DEFAULT", "AVX2", "AVX2+MKL")
ONEDNN_ONLY = tuple(isa for isa in ISAS if "+" not in isa)
TRAIN_STEPS = 3
# the reward of the training check: cheap and needs no trained reward model
TOY_REWARD = "python:flowhf.rewards.toy:letter_share"


def cap_env(isa: str) -> dict[str, str]:
    """The environment of a subprocess standing in for a host whose widest instruction set is
    ``isa``: oneDNN's cap, and MKL's too for ``"<ISA>+MKL"``."""
    onednn, _, mkl = isa.partition("+")
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": onednn, "HF_HUB_OFFLINE": "1"}
    env.pop("MKL_ENABLE_INSTRUCTIONS", None)
    if mkl:
        env["MKL_ENABLE_INSTRUCTIONS"] = onednn
    return env


# one oneDNN convolution: with ONEDNN_VERBOSE=1 oneDNN prints the instruction set it dispatches to
_ISA_PROBE = (
    "import torch; torch.mkldnn_convolution(torch.randn(1, 3, 16, 16), torch.randn(4, 3, 3, 3), "
    "None, [0, 0], [1, 1], [1, 1], 1)"
)


def onednn_isa(isa: str) -> str | None:
    """The instruction set oneDNN reports using under the cap ``isa`` (None: it reports none),
    so a caller can tell whether the cap is honoured (differs from the uncapped one)."""
    env = {**cap_env(isa), "ONEDNN_VERBOSE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", _ISA_PROBE], env=env, capture_output=True, text=True
    )
    for line in (out.stdout + out.stderr).splitlines():
        if ",isa:" in line:
            return line.split(",isa:", 1)[1].strip()
    return None


def stage_overrides(out: Path, bf16: bool, steps: int = TRAIN_STEPS) -> list[str]:
    """The `cpu` preset's overrides of its recommended stage (`stages.flowhf_overrides`), from
    SmolLM2 with the toy reward, ``steps`` optimizer steps, fp32 or bf16 autocast."""
    from flowhf.config.preset import PRESETS
    from flowhf.experiments.reproduce.stages import Context, flowhf_overrides

    ctx = Context(
        PRESETS["cpu"],
        out,
        results={"sft": {"model_dir": "smollm2"}, "reward_model": {"reward": TOY_REWARD}},
    )
    return flowhf_overrides(ctx, "recommended", out) + [
        f"optim.max_steps={steps}",
        f"model.autocast_bf16={str(bf16).lower()}",
        "logging.save_steps=1000000",
    ]


def weights_sha256(folder: Path) -> str:
    """SHA-256 over the saved weights (every .safetensors file, by name): the model's identity."""
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.safetensors")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def train_once(out: Path, bf16: bool, steps: int = TRAIN_STEPS) -> dict:
    """Train the stage into ``out``; its weights' SHA-256 and the loss of every step."""
    from flowhf.config.training import FlowHFConfig
    from flowhf.experiments import CONFIGS
    from flowhf.training.trainer import FlowHFTrainer

    cfg = FlowHFConfig.from_yaml(CONFIGS / "recommended.yaml", stage_overrides(out, bf16, steps))
    trainer = FlowHFTrainer(args=cfg)
    trainer.train()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [row["train/loss"] for row in rows if "train/loss" in row]
    return {"sha256": weights_sha256(out), "losses": losses, "steps": trainer.state.global_step}


PRECISIONS = ("fp32", "bf16_autocast", "fp32_deterministic")
# MKL's reproducible code path, read when MKL loads (with torch): the deterministic kind's only
REPRODUCIBLE_MKL = {"MKL_CBWR": "AVX2"}


def run_capped(isa: str, args: list[str], extra_env: dict | None = None) -> dict:
    """This script with ``args`` in a subprocess under the cap ``isa``; its last JSON line."""
    out = subprocess.run(
        [sys.executable, __file__, *args],
        env={**cap_env(isa), **(extra_env or {})},
        capture_output=True,
        text=True,
    )
    if out.returncode:
        raise RuntimeError(f"{isa} {args}: exit {out.returncode}\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def train_part(tmp: Path) -> dict:
    """Per precision, per cap: the stage's SHA-256 and losses, and whether the caps agree."""
    runs: dict[str, dict] = {}
    for precision in PRECISIONS:
        runs[precision] = {}
        extra = REPRODUCIBLE_MKL if precision == "fp32_deterministic" else None
        for isa in TRAIN_ISAS:
            out = tmp / f"{precision}-{isa}"
            runs[precision][isa] = run_capped(isa, ["--train-one", str(out), precision], extra)
            print("train", precision, isa, runs[precision][isa], flush=True)
    return {
        "onednn_isa": {isa: onednn_isa(isa) for isa in TRAIN_ISAS},
        "stage": "cpu preset, recommended: stages.flowhf_overrides, model.name=smollm2, "
        f"target.reward={TOY_REWARD}, optim.max_steps={TRAIN_STEPS}",
        "runs": runs,
        "identical_across_isas": _verdict(runs, "sha256", ONEDNN_ONLY),
        "identical_with_mkl_capped_too": _verdict(runs, "sha256", TRAIN_ISAS),
    }


def _verdict(by_kind: dict[str, dict], key: str, isas: tuple[str, ...]) -> dict[str, bool]:
    """Per kind (fp32, bf16_autocast): whether every cap of ``isas`` run gave the same ``key``."""
    return {
        kind: len({r[key] for isa, r in by_isa.items() if isa in isas}) == 1
        for kind, by_isa in by_kind.items()
    }


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
    if len(sys.argv) > 1 and sys.argv[1] == "--train-one":
        steps = int(sys.argv[4]) if len(sys.argv) > 4 else TRAIN_STEPS
        if sys.argv[3] == "fp32_deterministic":
            import torch

            torch.use_deterministic_algorithms(True)
        print(json.dumps(train_once(Path(sys.argv[2]), sys.argv[3] == "bf16_autocast", steps)))
        return
    load_start = os.getloadavg()
    results = {}
    for isa in ISAS:
        results[isa] = run_capped(isa, ["--one"])
        print(isa, results[isa], flush=True)
    by_kind = {k: {isa: {"hash": r[k]} for isa, r in results.items()} for k in results["DEFAULT"]}
    verdict = _verdict(by_kind, "hash", ONEDNN_ONLY)
    record = {
        "hashes": results,
        "identical_across_isas": verdict,
        "identical_with_mkl_capped_too": _verdict(by_kind, "hash", ISAS),
        "cpu": next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            "unknown",
        ),
    }
    if "--train" in sys.argv[1:]:
        with tempfile.TemporaryDirectory() as tmp:
            record["train"] = train_part(Path(tmp))
    record["load_average"] = {"start": load_start, "end": os.getloadavg()}
    path = HERE / "results" / "isa_determinism.json"
    path.write_text(json.dumps(record, indent=2))
    print(f"identical across instruction sets: {verdict} -> {path}")


if __name__ == "__main__":
    main()
