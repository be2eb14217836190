# SPDX-License-Identifier: GPL-2.0-or-later
"""Option values both command lines share: sizes, ``--pmu`` and ``--cpuid`` specs, and how they combine.

* :func:`parse_size` -- ``128M``, ``1G``, ``512K``, ``4096B``; a bare number is MiB, as QEMU's ``-m``.
* :func:`parse_cpus`, :func:`parse_quantum` -- ``--smp N`` (1 to :data:`MAX_SMP`) and the SMP time
  slice in guest instructions.
* :func:`parse_pmu` -- ``version=1,gp_counters=4,...``: any :class:`pmu.config.PmuConfig` field but
  ``vendor`` (that is the CPU's); :func:`pmu_help` lists them.
* :func:`parse_cpuid` -- ``family=6,model=0x55,stepping=4,-x2apic,+pdcm``: the signature and the
  feature switches of vmm/cpuid.py; :func:`cpuid_help` lists them.
* :func:`cpu_setup` -- the machine's signature, CPUID switches and PMU from the two specs.  The PMU
  writes CPUID's PMU bits itself (PDCM on Intel, PerfCtrExtCore and PerfMonV2 on AMD), so such a
  ``--cpuid`` switch is handed to the PMU; one the PMU cannot honour, or that ``--pmu`` contradicts,
  is refused rather than silently lost.

Errors are :class:`ValueError` with a one-line message (argparse shows it as the option's error).
Not supported: sizes in T or above (the machine takes at most 3 GiB), PMU fields the CPUID model
cannot describe (AMD PMUs without counters: ``pmu=off`` works for Intel CPUs only).
"""

# No `from __future__ import annotations`: see docs/design.md, "Start-up cost".
import dataclasses
import math
import re
from typing import NamedTuple

from pmu.config import PmuConfig
from vmm.cpu_models import cpu_model
from vmm.cpuid import DEFAULT_FEATURES, DEFAULT_SIGNATURE, FEATURES

MAX_SMP = 64                    # vCPUs a machine may have
DEFAULT_QUANTUM = 50_000        # guest instructions per SMP time slice (vmm/machine.py)
SIZE_UNITS = {"": 1 << 20, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
_SIZE = re.compile(r"^\s*(\d+)\s*([KMG]?)(I?B)?\s*$", re.IGNORECASE | re.ASCII)   # ASCII digits only
SIGNATURE_FIELDS = ("family", "model", "stepping")
#: CPUID bits that PmuConfig.apply_to_cpuid writes: a --cpuid switch of one of them goes to the PMU.
PMU_CPUID_FEATURES = ("pdcm", "perfctr_core", "perfmon_v2")
VENDOR_NAMES = {"intel": "Intel", "amd": "AMD"}
_BOOL_WORDS = {"1": True, "on": True, "true": True, "yes": True, "0": False, "off": False, "false": False, "no": False}

#: One line per PmuConfig field for ``--pmu help`` (tests/test_cli.py checks every field has one).
PMU_FIELD_HELP = {
    "version": "Intel architectural perfmon version: 0 (no PMU), 1 or 2; AMD: 2 with perfmon_v2, else 1",
    "gp_counters": "general-purpose counters (Intel 1-8, AMD 4 or 6)",
    "gp_width": "GP counter width in bits (Intel 32-64; AMD is always 48)",
    "fixed_counters": "Intel fixed counters 0-3 (version 2): instructions, core cycles, reference cycles",
    "fixed_width": "fixed counter width in bits (32-64)",
    "events_mask": "CPUID.0xA:EBX: a set bit marks an architectural event unavailable",
    "events_length": "CPUID.0xA:EAX[31:24]: how many architectural events EBX describes",
    "pdcm": "Intel IA32_PERF_CAPABILITIES exists (CPUID.1:ECX.PDCM)",
    "perfctr_core": "AMD PerfCtrExtCore: six counters at 0xC0010200",
    "perfmon_v2": "AMD PerfMonV2: global control/status MSRs (needs perfctr_core)",
    "full_width_writes": "PERF_CAPABILITIES bit 13: full-width counter writes through 0x4C1+ (needs pdcm)",
    "tsx": "EVTSEL bits 32/33 (IN_TX, IN_TXCP) are writable instead of reserved",
    "global_ctrl_reset": "GLOBAL_CTRL after reset: upstream (GP bits) or seed (GP and fixed bits)",
    "rdpmc_fast": "RDPMC ECX decoding: upstream (Linux 6.9) or seed (bit 31 = 32-bit read)",
    "vmware_backdoor": "RDPMC of the VMware pseudo-PMCs 0x10000-0x10002 (on by default here)",
    "guest_clock_offset_ns": "added to real time for the apparent-time pseudo-PMC 0x10002",
}


def parse_size(text: str) -> int:
    """``128M`` -> 134217728; a bare number is MiB; K, M, G with an optional B or iB."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"bad size {text!r} (e.g. 128M, 1G; a bare number is MiB)")
    number, unit, _ = match.groups()
    return int(number) * SIZE_UNITS[unit.upper()]


def parse_seconds(text: str) -> float:
    """A finite, non-negative number of seconds (0 = no limit)."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{text!r}: give a finite number of seconds, 0 or more (0 = no limit)")
    return value


def parse_count(text: str) -> int:
    """A count that fits 64 bits (0 = no limit)."""
    try:
        value = int(text, 0)
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number") from None
    if not 0 <= value < 1 << 64:
        raise ValueError(f"{text!r}: give a count from 0 (no limit) to 2**64 - 1")
    return value


def parse_cpus(text: str) -> int:
    """A vCPU count, 1 to :data:`MAX_SMP`."""
    try:
        value = int(text, 10)
    except ValueError:
        raise ValueError(f"{text!r} is not a number of vCPUs") from None
    if not 1 <= value <= MAX_SMP:
        raise ValueError(f"{value} vCPUs: give 1 to {MAX_SMP}")
    return value


def parse_quantum(text: str) -> int:
    """An SMP time slice in guest instructions, at least 1."""
    value = parse_count(text)
    if value < 1:
        raise ValueError(f"{text!r}: a time slice is at least 1 instruction")
    return value


def parse_bool(key: str, text: str) -> bool:
    try:
        return _BOOL_WORDS[text.lower()]
    except KeyError:
        raise ValueError(f"{key}={text}: expected on/off") from None


# -- --pmu ----------------------------------------------------------------------------------
def _pmu_fields() -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(PmuConfig) if f.name != "vendor"}


def parse_pmu(text: str) -> dict:
    """``version=1,gp_counters=4,fixed_counters=0,rdpmc_fast=seed`` -> PmuConfig keyword arguments."""
    fields = _pmu_fields()
    spec = {}
    for item in filter(None, (i.strip() for i in text.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if key not in fields or not sep:
            raise ValueError(f"{item!r}: expected KEY=VALUE, KEY one of {', '.join(fields)} (see --pmu help)")
        kind = str(fields[key].type)
        if "bool" in kind:
            spec[key] = parse_bool(key, value)
        elif "int" in kind:
            try:
                spec[key] = int(value, 0)
            except ValueError:
                raise ValueError(f"{item!r}: {key} takes a whole number") from None
        else:
            spec[key] = value
    return spec


def pmu_help() -> str:
    lines = ["--pmu KEY=VALUE,... sets the virtual PMU (pmu/config.py); unset fields follow the CPU vendor:"]
    for name, f in _pmu_fields().items():
        default = "vendor's" if f.default is None else f.default
        lines.append(f"  {name:<22} {str(f.type):<12} default {default!s:<9} {PMU_FIELD_HELP.get(name, '')}")
    lines.append("--cpuid -pdcm/+perfctr_core/+perfmon_v2 set the PMU fields of the same name.")
    return "\n".join(lines)


# -- --cpuid ---------------------------------------------------------------------------------
# CpuidSpec and CpuSetup are NamedTuples, not dataclasses, for the command line's start-up: Python
# 3.11 compiles a dataclass's methods from source text when the class is created.
class CpuidSpec(NamedTuple):
    """A parsed ``--cpuid``: signature fields given, and feature name -> on/off (the QEMU front end
    fills the dicts option by option)."""

    signature: dict[str, int]
    features: dict[str, bool]


def parse_cpuid(text: str) -> CpuidSpec:
    """``family=6,model=0x55,stepping=4,-x2apic,+pdcm`` -> CpuidSpec (feature names as in ``--cpuid help``)."""
    spec = CpuidSpec({}, {})
    for item in filter(None, (i.strip() for i in text.split(","))):
        if item[0] in "+-":
            name = item[1:].replace("-", "_")
            if name not in FEATURES:
                raise ValueError(f"{item!r}: unknown CPUID feature {name!r} (see --cpuid help)")
            spec.features[name] = item[0] == "+"
            continue
        key, sep, value = item.partition("=")
        if key not in SIGNATURE_FIELDS or not sep:
            raise ValueError(f"{item!r}: expected family=/model=/stepping= or +FEATURE/-FEATURE")
        try:
            spec.signature[key] = int(value, 0)
        except ValueError:
            raise ValueError(f"{item!r}: {key} takes a number") from None
    return spec


def cpuid_help() -> str:
    intel, amd = (", ".join(f"{k}={v:#x}" for k, v in zip(SIGNATURE_FIELDS, DEFAULT_SIGNATURE[cpu], strict=True))
                  for cpu in ("intel", "amd"))
    lines = ["--cpuid ITEM,... changes what CPUID tells the guest (vmm/cpuid.py):",
             f"  family=N,model=N,stepping=N   signature (Intel default {intel}; AMD {amd})",
             "  +FEATURE / -FEATURE           turn a feature bit on / off:"]
    regs = "eax ebx ecx edx".split()
    for name, (leaf, sub, reg, bit) in sorted(FEATURES.items()):
        where = f"CPUID {leaf:#x}" + (f".{sub}" if sub else "") + f":{regs[reg]}[{bit}]"
        note = "on by default" if name in DEFAULT_FEATURES else ""
        if name in PMU_CPUID_FEATURES:
            note = "set by the PMU (see --pmu help)"
        lines.append(f"    {name:<18} {where:<24} {note}")
    lines.append("The machine also turns on the bits of what it implements (spec_ctrl or amd_ibpb, mce, mca, mtrr).")
    return "\n".join(lines)


# -- both together -----------------------------------------------------------------------------
class CpuSetup(NamedTuple):
    """What MachineConfig takes: signature (None = vendor default), CPUID switches, PMU (None = default)."""

    signature: tuple[int, int, int] | None
    features: dict[str, bool]
    pmu: PmuConfig | None


def cpu_setup(cpu: str, cpuid: CpuidSpec | None = None, pmu: dict | None = None) -> CpuSetup:
    """Combine ``--cpu``, ``--cpuid`` and ``--pmu``; ValueError when they contradict each other."""
    cpuid = cpuid or CpuidSpec({}, {})
    signature = None
    if cpuid.signature:
        signature = tuple(cpuid.signature.get(k, d) for k, d in zip(SIGNATURE_FIELDS, DEFAULT_SIGNATURE[cpu],
                                                                    strict=True))
    owned = {k: v for k, v in cpuid.features.items() if k in PMU_CPUID_FEATURES}
    features = {k: v for k, v in cpuid.features.items() if k not in owned}
    if pmu is None and not owned:
        return CpuSetup(signature, features, None)
    spec = dict(pmu or {})
    for name, on in owned.items():
        if spec.get(name, on) != on:
            raise ValueError(f"{'+' if on else '-'}{name} contradicts the PMU's {name}={spec[name]}")
        spec[name] = on
    if spec.get("pdcm") is False:
        spec.setdefault("full_width_writes", False)     # a PERF_CAPABILITIES bit: gone with PDCM
    vendor = cpu_model(cpu).vendor
    config = PmuConfig(**{"vendor": vendor, "vmware_backdoor": True, **spec})
    for name, on in owned.items():
        if getattr(config, name) != on:
            raise ValueError(f"{'+' if on else '-'}{name}: an {VENDOR_NAMES[vendor]} PMU "
                             f"{'cannot have' if on else 'always has'} {name}")
    return CpuSetup(signature, features, config)
