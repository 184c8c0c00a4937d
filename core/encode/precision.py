"""The matrix precision ``--precision auto`` picks for a device.

bf16 halves the encoder's memory traffic where the hardware multiplies bf16 natively (a
CUDA GPU; a CPU with AVX-512 BF16 or AMX); elsewhere torch emulates it and it is the slower
choice (`chemlatent bench --only encode --stars 100000` on a 2-core AVX2 AMD EPYC: 6,622
spectra/s in bf16, 18,007 in fp32 with the encode path of the time, 23,500-24,800 in fp32
now; docs/model.md "Batch invariance").
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from chemlatent.errors import ChemlatentError

PRECISIONS = ("bf16", "fp32")
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The instruction-set flags of the first processor in a /proc/cpuinfo text."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (False where /proc/cpuinfo is unreadable)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return bool(cpu_flags(text) & NATIVE_BF16_FLAGS)


def resolve_precision(precision: str, device_type: str) -> str:
    """``bf16`` or ``fp32`` for a requested precision (``auto``, ``bf16``, ``fp32``) on a
    device type (``cpu`` or ``cuda``)."""
    if precision == "auto":
        return "bf16" if device_type == "cuda" or cpu_has_native_bf16() else "fp32"
    if precision not in PRECISIONS:
        raise ChemlatentError(f"unknown precision {precision!r}: use auto, bf16 or fp32")
    return precision
