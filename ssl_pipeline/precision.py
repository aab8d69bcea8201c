"""`pretrain.mixed_precision=auto`: bf16 autocast where the hardware computes in bf16, full precision elsewhere.

bf16 is not a free default on a CPU: with AMX or AVX-512 BF16 instructions oneDNN runs bf16 matmuls and
convolutions 2-3x faster than fp32 (measured: a 256-1024-256 MLP, one thread, 2.2-2.7x on an AVX-512 BF16 EPYC),
but without them oneDNN emulates bf16 with fp32 arithmetic plus conversions, which gains nothing and usually
costs time. Neither torch nor Accelerate says which case a CPU is in through a public call (oneDNN's own check
also accepts plain AVX-512, where bf16 is emulated), so the CPU's feature flags decide. On a GPU: bf16 when the
card supports it (Ampere and newer), else fp16 (Accelerate adds the loss scaler).

bf16 asked for explicitly (`pretrain.mixed_precision=bf16`, or `accelerate launch --mixed_precision bf16`) is kept,
but on a CPU that would emulate it the run says so: on a 2-core AVX2 CPU the Fashion-MNIST SimCLR step took 17 s in
bf16 against 1.5 s in fp32, so a recipe that takes minutes with bf16 instructions takes a day without them.
"""
from __future__ import annotations

from pathlib import Path

# x86: AMX tiles or the AVX-512 BF16 dot products; Arm (e.g. Graviton3, Neoverse V1): the BF16 extension
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags (Linux; empty where /proc/cpuinfo does not exist)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86 / Arm
            return set(value.split())
    return set()


def native_bf16(flags: set[str] | None = None) -> str | None:
    """The CPU's first bf16 feature flag, or None when it would only emulate bf16."""
    flags = cpu_flags() if flags is None else flags
    return next((f for f in NATIVE_BF16_FLAGS if f in flags), None)


def timed_precisions(device: str) -> list[str]:
    """What the benchmarks time by default: fp32, and bf16 where the hardware computes in it (timing emulated bf16
    on a CPU measures the emulation, at ~10x fp32's time)."""
    return ["fp32", "bf16"] if device != "cpu" or native_bf16() else ["fp32"]


def emulation_warning(mixed_precision: str, device_type: str, flags: set[str] | None = None) -> str:
    """A warning line when a run on the CPU autocasts to bf16 that the CPU can only emulate, else ""."""
    if mixed_precision != "bf16" or device_type != "cpu" or native_bf16(flags):
        return ""
    return ("warning: mixed precision bf16 on a CPU without bf16 instructions (no amx_bf16 / avx512_bf16 / bf16 "
            "flag): emulated bf16 is many times slower than fp32 (17 s against 1.5 s a step on a 2-core AVX2 CPU); "
            "set pretrain.mixed_precision=auto or no")


def resolve(value: str | None, cuda: bool | None = None, flags: set[str] | None = None) -> tuple[str | None, str]:
    """-> (the mixed precision to give Accelerate, why). Only "auto" is resolved; other values pass through."""
    if value != "auto":
        return value, ""
    import torch

    on_gpu = torch.cuda.is_available() if cuda is None else cuda
    if on_gpu:
        if torch.cuda.is_bf16_supported(including_emulation=False):  # Ampere and newer, ROCm
            return "bf16", "auto: the GPU computes in bf16"
        return "fp16", "auto: the GPU has no bf16, fp16 with loss scaling"
    native = native_bf16(flags)
    if native:
        return "bf16", f"auto: the CPU has {native}"
    return "no", "auto: the CPU has no bf16 instructions (emulated bf16 is slower than fp32)"
