"""Whether this machine computes in bf16 natively: the one check behind `train --precision bf16`,
the benchmark's bf16 runs and the demo's choice of precision.

A CPU without bf16 instructions still runs bf16 matmuls, in software, and that is far slower than
fp32: 0.7 vs 51 GFLOP/s per thread on an AVX2-only AMD EPYC (issue 16), and 2.3 vs 175 here with
oneDNN held to AVX2 (`ONEDNN_MAX_CPU_ISA=AVX2`, what such a CPU gets) on 512x512 matrices, 0.11
at 2048x2048; unheld, bf16 is the faster: 942 vs 137.

    cpu_bf16() -> Bf16Support                  native or not, and how that was decided
    cpu_bf16_native() -> bool
    check_precision(precision, device, insist) refuse (ConfigError) or return a warning
    preferred_precision(device) -> "bf16" | "fp32"
    training_device() -> "cuda" | "cpu" | ...   where train() runs

What is detected, honestly: on Linux, the CPU flags the kernel reports (x86: avx512_bf16 or
amx_bf16; aarch64: bf16, FEAT_BF16); on x86 also whether ONEDNN_MAX_CPU_ISA keeps oneDNN, which
runs PyTorch's CPU matmuls, below those instructions. Whether an aarch64 PyTorch build uses the
instructions is not checked. Without /proc/cpuinfo: torch's own CPU query on x86, else a timed
256x256 matmul in both dtypes on one thread (about 0.1 s; bf16 at under half the fp32 rate is not
native).
"""

from __future__ import annotations

import functools
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .errors import ConfigError

X86_FLAGS = ("avx512_bf16", "amx_bf16")
ARM_FLAGS = ("bf16",)
# oneDNN ISA levels (ONEDNN_MAX_CPU_ISA) that still include its bf16 kernels.
ONEDNN_BF16_ISAS = {"AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX10_1_512", "AVX512_CORE_AMX",
                    "AVX10_1_512_AMX", "AVX512_CORE_AMX_FP16", "AVX10_1_512_AMX_FP16", "ALL",
                    "DEFAULT"}
SLOWDOWN = ("about 70x slower than fp32, more on large matrices (0.7 vs 51 GFLOP/s per thread "
            "measured on an AVX2-only AMD EPYC)")
CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class Bf16Support:
    native: bool
    evidence: str  # how it was decided, for messages: "CPU flags avx512_bf16, amx_bf16"
    gflops: tuple[float, float] | None = None  # (bf16, fp32) when the timed probe decided

    @property
    def slowdown(self) -> str:
        """How much slower bf16 matmuls are than fp32: measured here, or the issue's figure."""
        if self.gflops:
            bf16, fp32 = self.gflops
            return f"{fp32 / max(bf16, 1e-9):.0f}x slower than fp32 here ({self.evidence})"
        return SLOWDOWN


def _cpu_flags() -> set[str] | None:
    """The first CPU's flags (x86 'flags', arm 'Features') from /proc/cpuinfo; None if unknown."""
    try:
        text = CPUINFO.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):
            return set(value.split())
    return None


def _onednn_cap() -> str | None:
    """ONEDNN_MAX_CPU_ISA (or its old name) when it holds oneDNN below its bf16 kernels."""
    for var in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        value = os.environ.get(var, "").strip().upper()
        if value and value not in ONEDNN_BF16_ISAS:
            return f"{var}={value}"
    return None


def _probe(n: int = 256, repeats: int = 5) -> Bf16Support:
    """Time an n x n matmul in fp32 and bf16 (best of `repeats` after a warm-up). One thread and
    its CPU time: on a shared machine a multi-threaded 0.3 ms matmul mostly measures waiting."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rates = {}
    try:
        for dtype in (torch.float32, torch.bfloat16):
            a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
            a @ b
            best = float("inf")
            for _ in range(repeats):
                t = time.thread_time()
                a @ b
                best = min(best, time.thread_time() - t)
            rates[dtype] = 2 * n**3 / max(best, 1e-9) / 1e9
    finally:
        torch.set_num_threads(threads)
    fp32, bf16 = rates[torch.float32], rates[torch.bfloat16]
    return Bf16Support(bf16 >= 0.5 * fp32, f"timed {n}x{n} matmul: bf16 {bf16:.1f} vs fp32 "
                       f"{fp32:.1f} GFLOP/s", (bf16, fp32))


def _from_flags(flags: set[str], machine: str) -> Bf16Support:
    arm = machine in ("aarch64", "arm64")
    wanted = ARM_FLAGS if arm else X86_FLAGS
    found = [f for f in wanted if f in flags]
    if not found:
        return Bf16Support(False, f"CPU flags lack {' and '.join(wanted)}")
    cap = None if arm else _onednn_cap()
    if cap:
        return Bf16Support(False, f"the CPU has {', '.join(found)} but {cap} keeps oneDNN from "
                           "using them")
    return Bf16Support(True, f"CPU flags {', '.join(found)}")


@functools.cache
def cpu_bf16() -> Bf16Support:
    """Whether this CPU runs bf16 matmuls natively (cached for the process)."""
    machine = platform.machine().lower()
    flags = _cpu_flags()
    if flags is not None:
        return _from_flags(flags, machine)
    if machine in ("x86_64", "amd64"):
        import torch

        query = getattr(torch.cpu, "_is_avx512_bf16_supported", None)  # private: may go away
        if query is not None:
            flags = {"avx512_bf16"} if query() else set()
            if getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)():
                flags.add("amx_bf16")  # every CPU with AMX tiles so far has AMX-BF16
            return _from_flags(flags, machine)
    return _probe()


def cpu_bf16_native() -> bool:
    return cpu_bf16().native


def check_precision(precision: str, device: str, insist: bool = False) -> str | None:
    """Refuse --precision bf16 where it cannot run or would crawl; return a warning to print when
    `insist` (--allow-slow-bf16) runs it on a CPU without native bf16, else None."""
    if precision != "bf16":
        return None
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_bf16_supported():
            raise ConfigError("--precision bf16: this GPU does not support bf16; use --precision fp32.")
        return None
    if device != "cpu":  # mps, xpu, ...: accelerate decides; we know nothing better
        return None
    support = cpu_bf16()
    if support.native:
        return None
    why = f"this CPU has no native bf16 ({support.evidence}), so bf16 matmuls run in software"
    if insist:
        return (f"--precision bf16 --allow-slow-bf16: {why}, {support.slowdown}; training will be "
                "far slower than with --precision fp32.")
    raise ConfigError(f"--precision bf16: {why}, {support.slowdown}. Use --precision fp32 (the "
                      "default), or add --allow-slow-bf16 to train in bf16 anyway.")


def training_device() -> str:
    """Where train() runs: 'cuda', another accelerator's name ('mps', 'xpu') or 'cpu'."""
    import torch

    accel = getattr(torch, "accelerator", None)
    if accel is not None and accel.is_available():
        return accel.current_accelerator().type
    return "cuda" if torch.cuda.is_available() else "cpu"


def preferred_precision(device: str) -> Literal["bf16", "fp32"]:
    """bf16 where it runs natively (a bf16 GPU, a CPU with AVX512-BF16/AMX), else fp32."""
    if device.startswith("cuda"):
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if device == "cpu" and cpu_bf16_native() else "fp32"


__all__ = ["Bf16Support", "check_precision", "cpu_bf16", "cpu_bf16_native", "preferred_precision",
           "training_device"]
