"""Issue 31: one FlowHF training stage of the `cpu` preset (the recommended run, in fp32) gives the
same weights under two oneDNN instruction-set caps, the stand-in for another x86 host.

Each cap runs in its own process (oneDNN reads ONEDNN_MAX_CPU_ISA once); the stage is the
benchmark's (benchmarks/isa_determinism.py --train) at 2 steps.
"""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STEPS = 2


def _benchmark():
    spec = importlib.util.spec_from_file_location(
        "isa_determinism", ROOT / "benchmarks" / "isa_determinism.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _has_avx2() -> bool:
    cpuinfo = Path("/proc/cpuinfo")
    return cpuinfo.is_file() and " avx2" in cpuinfo.read_text()


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="issue 31 item 1 open: measured here, the fp32 stage's step-2 loss already differs "
    "between two runs under the same (default) cap, and the fp32 forward does not differ across "
    "oneDNN caps; strict, so the fix that makes it pass must remove this mark",
)
def test_fp32_stage_same_weights_under_two_isa_caps(tmp_path):
    if not _has_avx2():
        pytest.skip("the CPU lacks AVX2 (or /proc/cpuinfo is missing): the AVX2 cap means nothing")
    bench = _benchmark()
    default, capped = bench.onednn_isa("DEFAULT"), bench.onednn_isa("AVX2")
    if default is None or capped is None or default == capped:
        pytest.skip(
            f"ONEDNN_MAX_CPU_ISA not honoured here (oneDNN reports {default!r} uncapped, "
            f"{capped!r} under AVX2): the caps would not stand for two hosts"
        )
    runs = {
        isa: bench.run_capped(isa, ["--train-one", str(tmp_path / isa), "fp32", str(STEPS)])
        for isa in ("DEFAULT", "AVX2")
    }
    assert runs["DEFAULT"]["steps"] == runs["AVX2"]["steps"] == STEPS
    assert runs["DEFAULT"]["losses"] == runs["AVX2"]["losses"]
    assert runs["DEFAULT"]["sha256"] == runs["AVX2"]["sha256"], runs
