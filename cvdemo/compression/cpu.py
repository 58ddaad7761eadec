"""This CPU: the instruction-set flags that decide whether INT8 / BF16 arithmetic is fast here, and the
thread settings every latency on the page uses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class CpuFeatures:
    """The instruction-set extensions that decide whether INT8 / BF16 arithmetic is fast here."""

    model_name: str
    flags: frozenset[str]
    cores: int
    source: str = "/proc/cpuinfo"  # where the flags were read: "CPUID" (what kernels dispatch on) or a cpuinfo file

    @property
    def avx2(self) -> bool:
        return "avx2" in self.flags

    @property
    def avx512(self) -> bool:
        return "avx512f" in self.flags

    @property
    def vnni(self) -> bool:
        """An INT8 dot-product instruction (VPDPBUSD): AVX512-VNNI or AVX-VNNI."""
        return bool({"avx512_vnni", "avx512vnni", "avx_vnni"} & self.flags)

    @property
    def bf16(self) -> bool:
        return bool({"avx512_bf16", "amx_bf16"} & self.flags)

    @property
    def amx(self) -> bool:
        return any(flag.startswith("amx") for flag in self.flags)

    @property
    def int8_flags(self) -> list[str]:
        """The flags that decide how ONNX Runtime multiplies 8-bit numbers here."""
        return sorted(self.flags & {"avx2", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8"})

    @property
    def relevant_flags(self) -> list[str]:
        keep = re.compile(r"^(sse4_2|fma|f16c|avx|avx2|avx512.*|avx_vnni.*|amx.*)$")
        return sorted(f for f in self.flags if keep.match(f))

    def summary(self) -> str:
        parts = [f"{self.model_name or 'unknown CPU'}, {self.cores} core(s)"]
        parts.append("AVX-512" if self.avx512 else ("AVX2" if self.avx2 else "no AVX2"))
        parts.append("INT8 dot-product (VNNI)" if self.vnni else "no VNNI")
        parts.append("BF16 dot-product" if self.bf16 else "no BF16 instructions")
        if self.amx:
            parts.append("AMX tiles")
        return ", ".join(parts)


# torch.cpu.get_capabilities() names -> the /proc/cpuinfo names the rest of the package uses
_CPUID_TO_LINUX = {"avx512_f": "avx512f", "avx512_cd": "avx512cd", "avx512_dq": "avx512dq", "avx512_bw": "avx512bw",
                   "avx512_vl": "avx512vl", "avx512_ifma": "avx512ifma", "avx512_vbmi": "avx512vbmi", "fma3": "fma",
                   "bmi": "bmi1"}


def _cpuid_flags() -> frozenset[str] | None:
    """Flags from CPUID as this process sees them (PyTorch's cpuinfo), or None where torch cannot tell."""
    try:
        capabilities = torch.cpu.get_capabilities()
    except Exception:  # an older torch or an unknown architecture
        return None
    flags = {_CPUID_TO_LINUX.get(name, name) for name, value in capabilities.items() if value is True}
    return frozenset(flags) if flags else None


def cpu_features(cpuinfo: str | Path | None = None) -> CpuFeatures:
    """This CPU's instruction-set flags and model name.

    By default the flags come from CPUID as this process sees it (``torch.cpu.get_capabilities``): that is
    what ONNX Runtime's and PyTorch's kernels dispatch on, also under an emulator (``qemu -cpu Haswell``
    reports an AVX2-only CPU while /proc/cpuinfo still lists the host's AVX-512 VNNI). The model name comes
    from /proc/cpuinfo. Given a ``cpuinfo`` file, only that file is parsed; an unreadable file gives an
    empty flag set.
    """
    import os

    try:
        text = Path(cpuinfo or "/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = ""
    flags: set[str] = set()
    model = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("flags", "features") and not flags:
            flags = set(value.split())
        elif key == "model name" and not model:
            model = value.strip()
    cpuid = _cpuid_flags() if cpuinfo is None else None
    if cpuid is not None:
        return CpuFeatures(model_name=model, flags=cpuid, cores=os.cpu_count() or 1, source="CPUID")
    return CpuFeatures(model_name=model, flags=frozenset(flags), cores=os.cpu_count() or 1,
                       source=str(cpuinfo or "/proc/cpuinfo"))


def thread_count() -> int:
    return torch.get_num_threads()


def openmp_wait_policy() -> str:
    """How idle OpenMP threads wait (``OMP_WAIT_POLICY``, read when torch loaded); unset = the runtime's default."""
    import os

    return os.environ.get("OMP_WAIT_POLICY", "default (spin, then sleep)")
