"""The bf16 check: which CPUs count as native, what --precision bf16 says where they do not, and
that the timed fallback tells software bf16 from native bf16 on this machine's real matmuls.

This machine has AVX512-BF16/AMX, so other CPUs are faked through their /proc/cpuinfo; the
probe tests hold oneDNN to AVX2 (ONEDNN_MAX_CPU_ISA), which gives real software-bf16 matmuls."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from instruct_tune import hardware
from instruct_tune.config import TrainConfig
from instruct_tune.errors import ConfigError
from instruct_tune.hardware import check_precision, cpu_bf16, preferred_precision

# Flag lines as the kernel prints them (trimmed): AVX2-only AMD EPYC 7763 (Zen 3), Cooper Lake
# (AVX512-BF16, no AMX), Sapphire Rapids (both), Graviton2 (no BF16), Graviton3 (BF16).
EPYC_ZEN3 = ("x86_64", "flags\t\t: fpu vme sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2 sha_ni "
             "vaes vpclmulqdq rdpid fsrm")
COOPER_LAKE = ("x86_64", "flags\t\t: fpu sse2 avx avx2 avx512f avx512bw avx512_vnni avx512_bf16")
SAPPHIRE_RAPIDS = ("x86_64", "flags\t\t: fpu avx2 avx512f avx512_bf16 avx512_fp16 amx_bf16 "
                   "amx_tile amx_int8")
AMX_ONLY = ("x86_64", "flags\t\t: fpu avx2 avx512f amx_bf16 amx_tile")
GRAVITON2 = ("aarch64", "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp "
             "asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs")
GRAVITON3 = ("aarch64", "Features\t: fp asimd aes sha2 crc32 atomics asimddp sve asimdfhm svei8mm "
             "svebf16 i8mm bf16 dgh rng")

NATIVE = "--precision fp32 (the default)"


@pytest.fixture
def cpu(monkeypatch, tmp_path):
    """cpu(EPYC_ZEN3): detection now reads that CPU's /proc/cpuinfo (two cores)."""
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)

    def fake(spec: tuple[str, str] | None) -> None:
        info = tmp_path / "cpuinfo"
        if spec is None:
            info = tmp_path / "absent"
        else:
            machine, line = spec
            info.write_text("".join(f"processor\t: {i}\n{line}\n\n" for i in range(2)))
            monkeypatch.setattr(hardware.platform, "machine", lambda: machine)
        monkeypatch.setattr(hardware, "CPUINFO", info)
        cpu_bf16.cache_clear()

    yield fake
    cpu_bf16.cache_clear()


@pytest.mark.parametrize("spec, native", [(EPYC_ZEN3, False), (COOPER_LAKE, True),
                                          (SAPPHIRE_RAPIDS, True), (AMX_ONLY, True),
                                          (GRAVITON2, False), (GRAVITON3, True)])
def test_native_bf16_comes_from_the_cpu_flags(cpu, spec, native):
    cpu(spec)
    support = cpu_bf16()
    assert support.native is native and support.gflops is None  # decided without timing
    assert ("lack" in support.evidence) is not native


def test_onednn_held_below_bf16_is_not_native(cpu, monkeypatch):
    cpu(SAPPHIRE_RAPIDS)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    cpu_bf16.cache_clear()
    assert not cpu_bf16().native and "ONEDNN_MAX_CPU_ISA=AVX2" in cpu_bf16().evidence
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx512_core_amx")  # still has the bf16 kernels
    cpu_bf16.cache_clear()
    assert cpu_bf16().native


def test_bf16_without_native_support_is_refused_with_the_slowdown_and_the_flag(cpu):
    cpu(EPYC_ZEN3)
    with pytest.raises(ConfigError) as e:
        check_precision("bf16", "cpu")
    message = str(e.value)
    for needed in ("70x slower", "0.7 vs 51 GFLOP/s", "--allow-slow-bf16", NATIVE, "avx512_bf16"):
        assert needed in message
    warning = check_precision("bf16", "cpu", insist=True)
    assert warning and "70x slower" in warning
    assert check_precision("fp32", "cpu") is None
    assert check_precision("bf16", "mps") is None  # not a CPU question
    assert preferred_precision("cpu") == "fp32"


def test_bf16_with_native_support_passes_silently(cpu):
    cpu(SAPPHIRE_RAPIDS)
    assert check_precision("bf16", "cpu") is None
    assert check_precision("bf16", "cpu", insist=True) is None
    assert preferred_precision("cpu") == "bf16"


def test_without_cpuinfo_a_timed_matmul_decides(cpu, monkeypatch):
    real = hardware._cpu_flags()
    cpu(None)
    monkeypatch.setattr(hardware.platform, "machine", lambda: "arm64")  # e.g. macOS: no torch query
    support = cpu_bf16()
    bf16, fp32 = support.gflops
    assert support.native == (bf16 >= 0.5 * fp32) and "timed" in support.evidence
    if real is not None and platform.machine() == "x86_64" \
            and hardware._from_flags(real, "x86_64").native:
        assert support.native, support.evidence  # the probe agrees with this CPU's flags


@pytest.mark.skipif(platform.machine() != "x86_64", reason="ONEDNN_MAX_CPU_ISA=AVX2 is x86")
def test_the_probe_sees_software_bf16():
    """oneDNN held to AVX2 is what an AVX2-only CPU runs: the probe must measure it as slow."""
    code = ("from instruct_tune.hardware import _probe; s = _probe(); "
            "print(s.native, s.gflops[1] / s.gflops[0])")
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    assert out[0] == "False" and float(out[1]) > 5, out


def test_train_refuses_bf16_before_loading_anything(cpu, tmp_path, capsys):
    from instruct_tune.train.run import resolve

    data = tmp_path / "d.jsonl"
    data.write_text('{"instruction": "a", "output": "b"}\n')
    cfg = TrainConfig(model=str(tmp_path / "no-model-needed"), data=str(data),
                      out=str(tmp_path / "out"), precision="bf16")
    cpu(EPYC_ZEN3)
    with pytest.raises(ConfigError, match="--allow-slow-bf16"):
        resolve(cfg)
    assert not Path(cfg.out).exists()
    cfg.allow_slow_bf16 = True
    assert resolve(cfg).precision == "bf16"
    assert "70x slower" in capsys.readouterr().err
