# SPDX-License-Identifier: GPL-2.0-or-later
"""Named CPU models: vendor, family/model/stepping, brand string and the CPUID features to advertise.

``MachineConfig.cpu`` (``--cpu``) names one of :data:`CPU_MODELS`: the generic ``intel`` and ``amd``
(the VMM's historical defaults) or a server part under QEMU's name, lower-cased
(``skylake-server`` is QEMU's ``Skylake-Server``).  :func:`cpu_model` looks one up; its ``vendor``
("intel" or "amd") is what the vendor-specific parts (PMU, speculation MSRs) are built for, and
:func:`cpu_model_for_qemu` turns a QEMU ``-cpu`` argument into one of our names.

What a model advertises is not the real part's feature list but its intersection with what the
engine executes correctly.  Unicorn 2.1.4 is QEMU 5.0's TCG running a Haswell-class CPU model, and
every feature named here beyond the generic defaults has a check in our test kernel
firmware/kernels/cpu_features.c that passes (tests/test_guest_cpu.py runs it for every feature and
every model).  Left out, although the real parts have them:

* AVX and everything VEX/EVEX-encoded beyond BMI (AVX2, FMA, F16C, AVX-512, VAES, ...): with
  XCR0.AVX set the engine runs some 128-bit VEX forms, with wrong results, and #UDs on 256-bit ones;
* PKU, RDPID, SMAP (STAC/CLAC), INVPCID, ADX, SHA, CLFLUSHOPT, CLWB: the engine's own CPU model
  lacks them, so the instructions #UD or CR4 refuses the bits;
* UMIP: CR4.UMIP can be set, but SGDT and friends still run at CPL3;
* FSGSBASE: WRFSBASE/WRGSBASE take non-canonical bases instead of raising #GP, and a CPL3 program
  may execute them once the OS enables them;
* PCID: QEMU 5.0's TCG has no PCID (the PCID field is not understood; the hook layer keeps CR3 bit 63
  out of CR3);
* LA57 (5-level paging): not checked.  ``pcid`` and ``la57`` are in vmm/cpuid.py's FEATURES for
  ``--cpuid`` and the control-register checks (firmware/kernels/cr_checks.c), not for any model;
* RDRAND/RDSEED: the engine answers from the host's random number generator, so runs would not
  be repeatable;
* XSAVE state components beyond x87 and SSE, XSAVEC/XSAVES, XGETBV with ECX=1.

Known engine deviation with XSAVE advertised: XSETBV accepts XCR0 bit 2 (AVX state) although CPUID
leaf 0xD does not offer it (the engine's own XCR0 mask has it); a guest that follows CPUID never
sets it.  The Intel models differ from each other only in signature and brand string: everything
that sets the real parts apart is in the list above.
"""

# No `from __future__ import annotations`: see docs/design.md, "Start-up cost".
import re
from typing import NamedTuple


class CpuidError(ValueError):
    """A CPU model or CPUID feature name is unknown."""


#: The generic models' features (and the base set every model starts from).
DEFAULT_FEATURES = (
    "fpu", "tsc", "msr", "pae", "cx8", "apic", "sep", "pge", "cmov", "pat", "clflush",
    "mmx", "fxsr", "sse", "sse2", "x2apic", "tsc_deadline", "hypervisor", "syscall", "nx", "lm",
    "lahf_lm", "rdtscp", "invtsc",
)

#: Instruction-set extensions of the engine that cpu_features.c checks: every Intel and AMD
#: server part since Haswell / Zen 1 has them all.
ENGINE_ISA = (
    "sse3", "pclmulqdq", "ssse3", "cx16", "sse4_1", "sse4_2", "movbe", "popcnt", "aes",
    "xsave", "xsaveopt", "bmi1", "bmi2", "smep", "abm", "3dnowprefetch", "pdpe1gb",
)

#: Real CPUID bits the engine does not execute correctly (see the module docstring).  They exist
#: in vmm/cpuid.py's FEATURES so that ``--cpuid`` and the tests can force them on; no model has one.
ENGINE_UNSUPPORTED = frozenset({"avx", "pku", "umip", "rdpid", "smap", "invpcid", "fsgsbase", "rdrand", "rdseed"})

_AMD_SERVER = tuple(f for f in DEFAULT_FEATURES if f != "tsc_deadline") + ENGINE_ISA   # AMD has no TSC-deadline


class CpuModel(NamedTuple):
    name: str                       # ours (``--cpu``), lower case
    vendor: str                     # "intel" or "amd"
    family: int
    model: int
    stepping: int
    brand: str                      # CPUID 0x80000002-0x80000004
    features: tuple[str, ...]       # vmm/cpuid.py FEATURES names
    qemu_name: str = ""             # QEMU's ``-cpu`` name, when QEMU has the model

    @property
    def signature(self) -> tuple[int, int, int]:
        return self.family, self.model, self.stepping


CPU_MODELS: dict[str, CpuModel] = {m.name: m for m in (
    CpuModel("intel", "intel", 6, 0x55, 4, "pmu-vmm virtual INTEL CPU", DEFAULT_FEATURES),
    CpuModel("amd", "amd", 0x17, 0x31, 0, "pmu-vmm virtual AMD CPU", DEFAULT_FEATURES),
    CpuModel("skylake-server", "intel", 6, 0x55, 4, "Intel Xeon Processor (Skylake)",
             DEFAULT_FEATURES + ENGINE_ISA + ("erms",), "Skylake-Server"),
    CpuModel("cascadelake-server", "intel", 6, 0x55, 6, "Intel Xeon Processor (Cascadelake)",
             DEFAULT_FEATURES + ENGINE_ISA + ("erms",), "Cascadelake-Server"),
    # Ice Lake-SP is model 0x6A; QEMU's Icelake-Server says 0x86 (a Tremont part's number).
    CpuModel("icelake-server", "intel", 6, 0x6A, 6, "Intel Xeon Processor (Icelake)",
             DEFAULT_FEATURES + ENGINE_ISA + ("erms", "fsrm"), "Icelake-Server"),
    CpuModel("epyc-rome", "amd", 0x17, 0x31, 0, "AMD EPYC-Rome Processor", _AMD_SERVER, "EPYC-Rome"),
    CpuModel("epyc-milan", "amd", 0x19, 0x01, 1, "AMD EPYC-Milan Processor",
             _AMD_SERVER + ("erms", "fsrm"), "EPYC-Milan"),
)}

#: Family/model/stepping of every model, by name (the generic ones are the vendor defaults).
DEFAULT_SIGNATURE = {name: m.signature for name, m in CPU_MODELS.items()}

_QEMU_NAMES = {m.qemu_name.lower(): m.name for m in CPU_MODELS.values() if m.qemu_name}
_QEMU_VERSION = re.compile(r"-v\d+$")


def cpu_model(name: str) -> CpuModel:
    """The model called ``name`` (ours, e.g. ``epyc-rome``); CpuidError if there is none."""
    try:
        return CPU_MODELS[name]
    except KeyError:
        raise CpuidError(f"unknown CPU model {name!r}; choose one of {', '.join(CPU_MODELS)}") from None


def cpu_model_for_qemu(qemu_name: str) -> str | None:
    """Our model for QEMU's ``-cpu`` model name (``Skylake-Server-v2`` -> ``skylake-server``), or None.

    Versions (``-v2``) and variant suffixes (``-IBRS``, ``-noTSX``) select the base model; names
    of models we do not have (``max``, ``host``, ``EPYC``, ``Haswell``...) give None.
    """
    parts = _QEMU_VERSION.sub("", qemu_name).lower().split("-")
    for end in range(len(parts), 0, -1):
        name = "-".join(parts[:end])
        if name in _QEMU_NAMES:
            return _QEMU_NAMES[name]
    return None
