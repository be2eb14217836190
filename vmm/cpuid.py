# SPDX-License-Identifier: GPL-2.0-or-later
"""A configurable CPUID model: what the guest sees when it executes CPUID.

The model is a table of ``(leaf, subleaf) -> (eax, ebx, ecx, edx)`` built from a vendor
(GenuineIntel or AuthenticAMD), family/model/stepping and a set of named feature bits.
Devices that own leaves (the PMU fills 0xA, 0x80000001 ECX[23], 0x80000022 and PDCM) write
them with :meth:`CpuidModel.set_leaf` / :meth:`set_feature`; every change bumps
:attr:`generation` so dependants (the PMU's ``refresh()``) can tell they are stale.

Leaves that are not in the table read as zero, except that a leaf above the maximum basic
or extended leaf returns the highest basic leaf, as Intel CPUs do.

Time leaves: on Intel, 0x15 (TSC/crystal ratio 1/1, crystal = the 1 GHz virtual clock) and 0x16
(base/max/bus MHz) tell the guest its TSC frequency, so Linux does not calibrate; AMD CPUs have no
such leaf and calibrate against the PIT, which runs on the same virtual clock.  CPUID
0x80000007:EDX[8] (invariant TSC) is set: the TSC rate never changes.

Not modelled: cache/TLB descriptor leaves (2, 4), topology beyond one thread (0xB/0x1F
report one logical processor), XSAVE state components, SGX, and hypervisor leaves.
"""

from __future__ import annotations

from vmm.clock import CLOCK_HZ

VENDORS = {
    "intel": b"GenuineIntel",
    "amd": b"AuthenticAMD",
}

# name -> (leaf, subleaf, register index 0..3 = eax/ebx/ecx/edx, bit)
FEATURES = {
    "fpu": (1, 0, 3, 0),
    "tsc": (1, 0, 3, 4),
    "msr": (1, 0, 3, 5),
    "pae": (1, 0, 3, 6),
    "mce": (1, 0, 3, 7),  # machine-check exception (CR4.MCE, #MC)
    "cx8": (1, 0, 3, 8),
    "apic": (1, 0, 3, 9),
    "sep": (1, 0, 3, 11),
    "mtrr": (1, 0, 3, 12),  # memory type range registers
    "pge": (1, 0, 3, 13),
    "mca": (1, 0, 3, 14),  # machine-check architecture (IA32_MCG_CAP and the banks)
    "cmov": (1, 0, 3, 15),
    "pat": (1, 0, 3, 16),
    "clflush": (1, 0, 3, 19),
    "mmx": (1, 0, 3, 23),
    "fxsr": (1, 0, 3, 24),
    "sse": (1, 0, 3, 25),
    "sse2": (1, 0, 3, 26),
    "pdcm": (1, 0, 2, 15),
    "x2apic": (1, 0, 2, 21),
    "tsc_deadline": (1, 0, 2, 24),
    "hypervisor": (1, 0, 2, 31),
    "arch_capabilities": (7, 0, 3, 29),
    "spec_ctrl": (7, 0, 3, 26),  # IBRS/IBPB on Intel
    "syscall": (0x80000001, 0, 3, 11),
    "nx": (0x80000001, 0, 3, 20),
    "pdpe1gb": (0x80000001, 0, 3, 26),
    "rdtscp": (0x80000001, 0, 3, 27),
    "lm": (0x80000001, 0, 3, 29),
    "lahf_lm": (0x80000001, 0, 2, 0),
    "perfctr_core": (0x80000001, 0, 2, 23),  # AMD PerfCtrExtCore
    "invtsc": (0x80000007, 0, 3, 8),     # invariant TSC: constant rate, runs in every C-state
    "amd_ibpb": (0x80000008, 0, 1, 12),
    "perfmon_v2": (0x80000022, 0, 0, 0),
}

DEFAULT_FEATURES = (
    "fpu", "tsc", "msr", "pae", "cx8", "apic", "sep", "pge", "cmov", "pat", "clflush",
    "mmx", "fxsr", "sse", "sse2", "x2apic", "tsc_deadline", "hypervisor", "syscall", "nx", "lm",
    "lahf_lm", "rdtscp", "invtsc",
)

DEFAULT_SIGNATURE = {"intel": (6, 0x55, 4), "amd": (0x17, 0x31, 0)}  # Cascade Lake / Zen 2


class CpuidError(ValueError):
    """A CPUID model was configured with an unknown vendor or feature."""


def _words(text: bytes) -> tuple[int, ...]:
    return tuple(int.from_bytes(text[i:i + 4], "little") for i in range(0, len(text), 4))


class CpuidModel:
    """The guest's CPUID table."""

    def __init__(self, vendor: str = "intel", family: int | None = None, model: int | None = None,
                 stepping: int | None = None, features=DEFAULT_FEATURES):
        if vendor not in VENDORS:
            raise CpuidError(f"unknown CPU vendor {vendor!r}; choose one of {sorted(VENDORS)}")
        self.vendor = vendor
        fam, mod, step = DEFAULT_SIGNATURE[vendor]
        self.family = fam if family is None else family
        self.model = mod if model is None else model
        self.stepping = step if stepping is None else stepping
        self.generation = 0
        self._leaves: dict[tuple[int, int], list[int]] = {}
        self._build()
        for name in features:
            self.set_feature(name, True)

    # -- construction -------------------------------------------------------------------
    def _build(self) -> None:
        vb, vd, vc = _words(VENDORS[self.vendor])
        self._leaves[(0, 0)] = [0x16 if self.vendor == "intel" else 0xD, vb, vc, vd]
        self._leaves[(1, 0)] = [self.signature(), 0x00010800, 0, 0]  # 1 logical CPU, CLFLUSH 64 B
        for leaf in (6, 7, 0xA, 0xB, 0xD):
            self._leaves[(leaf, 0)] = [0, 0, 0, 0]
        if self.vendor == "intel":
            # The TSC and the crystal (the APIC timer's clock) both run at the virtual clock's rate,
            # so a guest reads its TSC frequency here instead of calibrating against the PIT.
            mhz = CLOCK_HZ // 1_000_000
            self._leaves[(0x15, 0)] = [1, 1, CLOCK_HZ, 0]       # TSC/crystal = 1/1, crystal Hz
            self._leaves[(0x16, 0)] = [mhz, mhz, 100, 0]        # base, max and (reference) bus MHz
        self._leaves[(0x80000000, 0)] = [0x80000022, *(( vb, vc, vd) if self.vendor == "amd" else (0, 0, 0))]
        self._leaves[(0x80000001, 0)] = [self.signature() if self.vendor == "amd" else 0, 0, 0, 0]
        brand = f"pmu-vmm virtual {self.vendor.upper()} CPU".encode().ljust(48, b"\0")
        for i, leaf in enumerate((0x80000002, 0x80000003, 0x80000004)):
            self._leaves[(leaf, 0)] = list(_words(brand[16 * i:16 * i + 16]))
        self._leaves[(0x80000008, 0)] = [0x3030, 0, 0, 0]  # 48-bit physical and virtual addresses
        self._leaves[(0x80000022, 0)] = [0, 0, 0, 0]

    def signature(self) -> int:
        """CPUID.1:EAX from family/model/stepping with the extended fields as the SDM encodes them."""
        fam, mod = self.family, self.model
        base_fam = min(fam, 0xF)
        ext_fam = fam - 0xF if fam >= 0xF else 0
        return (ext_fam << 20) | ((mod >> 4) << 16) | (base_fam << 8) | ((mod & 0xF) << 4) | (self.stepping & 0xF)

    # -- queries and updates --------------------------------------------------------------
    def query(self, leaf: int, subleaf: int = 0) -> tuple[int, int, int, int]:
        """What CPUID returns for EAX=leaf, ECX=subleaf."""
        regs = self._leaves.get((leaf, subleaf)) or self._leaves.get((leaf, 0))
        if regs is not None:
            return tuple(regs)
        max_basic = self._leaves[(0, 0)][0]
        max_ext = self._leaves[(0x80000000, 0)][0]
        if (leaf < 0x80000000 and leaf > max_basic) or leaf > max_ext:
            return tuple(self._leaves[(max_basic, 0)]) if (max_basic, 0) in self._leaves else (0, 0, 0, 0)
        return (0, 0, 0, 0)

    def set_leaf(self, leaf: int, subleaf: int, eax: int, ebx: int, ecx: int, edx: int) -> None:
        self._leaves[(leaf, subleaf)] = [eax & 0xFFFFFFFF, ebx & 0xFFFFFFFF, ecx & 0xFFFFFFFF, edx & 0xFFFFFFFF]
        self.generation += 1

    def has(self, name: str) -> bool:
        leaf, sub, reg, bit = self._feature(name)
        return bool(self.query(leaf, sub)[reg] >> bit & 1)

    def set_feature(self, name: str, on: bool) -> None:
        leaf, sub, reg, bit = self._feature(name)
        regs = list(self._leaves.get((leaf, sub), [0, 0, 0, 0]))
        regs[reg] = (regs[reg] | (1 << bit)) if on else (regs[reg] & ~(1 << bit))
        self.set_leaf(leaf, sub, *regs)

    @staticmethod
    def _feature(name: str):
        try:
            return FEATURES[name]
        except KeyError:
            raise CpuidError(f"unknown CPUID feature {name!r}; known: {', '.join(sorted(FEATURES))}") from None
