"""--precision auto: bf16 only where the hardware multiplies it natively."""

from __future__ import annotations

import pytest

from chemlatent.encode.precision import cpu_flags, cpu_has_native_bf16, resolve_precision
from chemlatent.errors import ChemlatentError

AVX2_ONLY = ("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx avx2 fma f16c\n\n"
             "processor\t: 1\n")
AMX = "processor\t: 0\nflags\t\t: avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"


def test_cpu_flags_are_read_from_cpuinfo():
    assert "avx2" in cpu_flags(AVX2_ONLY) and "avx512_bf16" not in cpu_flags(AVX2_ONLY)
    assert {"avx512_bf16", "amx_bf16"} <= cpu_flags(AMX)
    assert cpu_flags("no flags line here") == frozenset()


def test_auto_is_bf16_on_a_gpu_and_follows_the_cpu_otherwise():
    assert resolve_precision("auto", "cuda") == "bf16"
    assert resolve_precision("auto", "cpu") == ("bf16" if cpu_has_native_bf16() else "fp32")
    assert resolve_precision("fp32", "cuda") == "fp32" and resolve_precision("bf16", "cpu") == "bf16"


def test_an_unknown_precision_is_one_clear_error():
    with pytest.raises(ChemlatentError, match="unknown precision 'fp8'"):
        resolve_precision("fp8", "cpu")


def test_the_encoder_runs_at_the_resolved_precision(tiny_survey):
    from chemlatent.encode.streaming import Encoder
    from chemlatent.model.modelio import load_model

    enc = Encoder(load_model(None), tiny_survey)
    assert enc.precision == resolve_precision("auto", "cpu")
