# SPDX-License-Identifier: GPL-2.0-or-later
"""The shape of a virtual PMU and the host policies that CPUID cannot express.

:class:`PmuConfig` is either derived from the guest's CPUID (:meth:`PmuConfig.from_cpuid`, which
clamps what CPUID claims to what we emulate, as KVM does) or built by hand, in which case every
field is validated and an impossible combination raises :class:`ValueError` saying why.
:meth:`PmuConfig.apply_to_cpuid` writes the shape back into a CPUID model so that the guest sees
exactly the PMU it gets: leaf 0xA and CPUID.1:ECX.PDCM on Intel, CPUID 0x80000001:ECX[23]
(PerfCtrExtCore) and 0x80000022 (PerfMonV2) on AMD.

Policies (not part of CPUID):

* ``full_width_writes``: initial IA32_PERF_CAPABILITIES bit 13 (needs ``pdcm``).
* ``tsx``: EVTSEL bits 32/33 (IN_TX, IN_TXCP) are writable instead of reserved.
* ``global_ctrl_reset``: ``"upstream"`` (Linux 6.9: GLOBAL_CTRL gets all GP enable bits after
  reset/refresh) or ``"seed"`` (GP and fixed enable bits).
* ``rdpmc_fast``: ``"upstream"`` (Linux 6.9: ECX bits 31:16 are a type, only 0 and 0x4000 valid,
  a "fast" read is #GP; AMD: ECX must be a counter index) or ``"seed"`` (bit 31 asks for a 32-bit
  read, bits 31:30 are ignored by the index decode).
* ``vmware_backdoor``: RDPMC of the VMware pseudo-PMCs 0x10000-0x10002 is allowed.
* ``guest_clock_offset_ns``: added to real time for the "apparent time" pseudo-PMC.

Not supported: Intel PMU versions above 2 (CPUID is clamped to 2), AMD PMUs without counters,
Intel LBR/PEBS/topdown capabilities in PERF_CAPABILITIES, and hybrid (per-core-type) PMUs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

INTEL_MAX_GP = 8
INTEL_MAX_FIXED = 3
AMD_LEGACY_COUNTERS = 4
AMD_MAX_COUNTERS = 6
AMD_WIDTH = 48
#: Length of the CPUID.0xA:EBX event vector we describe (seven architectural events).
ARCH_EVENTS_LENGTH = 7

POLICY_FIELDS = ("full_width_writes", "tsx", "global_ctrl_reset", "rdpmc_fast", "vmware_backdoor",
                 "guest_clock_offset_ns")


@dataclass(frozen=True)
class PmuConfig:
    vendor: str = "intel"
    version: int | None = None  # None: Intel 2; AMD 2 with PerfMonV2, else 1
    gp_counters: int | None = None  # None: Intel 8; AMD 4, or 6 with PerfCtrExtCore
    gp_width: int = 48
    fixed_counters: int = 3
    fixed_width: int = 48
    events_mask: int = 0  # CPUID.0xA:EBX: a set bit marks an architectural event unavailable
    events_length: int = ARCH_EVENTS_LENGTH
    pdcm: bool = True
    perfctr_core: bool = False
    perfmon_v2: bool = False
    full_width_writes: bool = True
    tsx: bool = False
    global_ctrl_reset: str = "upstream"
    rdpmc_fast: str = "upstream"
    vmware_backdoor: bool = False
    guest_clock_offset_ns: int = 0

    def __post_init__(self) -> None:
        if self.vendor == "amd":
            self._amd_defaults()
        else:
            self._intel_defaults()
        self._validate()

    def _intel_defaults(self) -> None:
        if self.version is None:
            object.__setattr__(self, "version", 2)
        if self.gp_counters is None:
            object.__setattr__(self, "gp_counters", INTEL_MAX_GP if self.version else 0)

    def _amd_defaults(self) -> None:
        # An AMD PMU's version, counter count (unless PerfMonV2 says otherwise) and widths follow
        # from its feature bits, so AMD configs need only name the features.
        set_ = object.__setattr__
        version = 2 if self.perfmon_v2 else 1
        if self.version not in (None, version):
            raise ValueError(f"an AMD PMU {'with' if self.perfmon_v2 else 'without'} PerfMonV2 is version {version}")
        set_(self, "version", version)
        counters = AMD_MAX_COUNTERS if self.perfctr_core else AMD_LEGACY_COUNTERS
        if self.perfmon_v2:
            counters = AMD_MAX_COUNTERS if self.gp_counters is None else self.gp_counters
        elif self.gp_counters not in (None, counters):
            raise ValueError(f"an AMD PMU without PerfMonV2 has {counters} counters "
                             f"({'with' if self.perfctr_core else 'without'} PerfCtrExtCore), not {self.gp_counters}")
        set_(self, "gp_counters", counters)
        set_(self, "gp_width", AMD_WIDTH)
        set_(self, "fixed_counters", 0)
        set_(self, "fixed_width", 0)
        set_(self, "events_mask", 0)
        set_(self, "events_length", 0)
        set_(self, "pdcm", False)
        set_(self, "full_width_writes", False)
        set_(self, "tsx", False)

    def _validate(self) -> None:
        if not -(1 << 63) <= self.guest_clock_offset_ns < 1 << 63:
            raise ValueError(f"guest_clock_offset_ns must fit 64 bits (signed), not {self.guest_clock_offset_ns}")
        if self.global_ctrl_reset not in ("upstream", "seed"):
            raise ValueError(f"global_ctrl_reset must be 'upstream' or 'seed', not {self.global_ctrl_reset!r}")
        if self.rdpmc_fast not in ("upstream", "seed"):
            raise ValueError(f"rdpmc_fast must be 'upstream' or 'seed', not {self.rdpmc_fast!r}")
        if self.vendor == "amd":
            if self.perfmon_v2 and not self.perfctr_core:
                raise ValueError("AMD PerfMonV2 requires PerfCtrExtCore (perfctr_core=True)")
            if not 1 <= self.gp_counters <= AMD_MAX_COUNTERS:
                raise ValueError(f"AMD PMU supports 1..{AMD_MAX_COUNTERS} counters, not {self.gp_counters}")
            return
        if self.vendor != "intel":
            raise ValueError(f"unknown PMU vendor {self.vendor!r}; choose 'intel' or 'amd'")
        if self.perfctr_core or self.perfmon_v2:
            raise ValueError("perfctr_core and perfmon_v2 are AMD features")
        if not 0 <= self.version <= 2:
            raise ValueError(f"Intel PMU version must be 0 (no PMU), 1 or 2, not {self.version}")
        if self.full_width_writes and not self.pdcm:
            raise ValueError("full_width_writes is a PERF_CAPABILITIES bit and needs pdcm=True")
        if self.version == 0:
            return
        if not 1 <= self.gp_counters <= INTEL_MAX_GP:
            raise ValueError(f"Intel PMU needs 1..{INTEL_MAX_GP} GP counters, not {self.gp_counters}")
        if not 32 <= self.gp_width <= 64:
            raise ValueError(f"GP counter width must be 32..64 bits, not {self.gp_width}")
        if not 0 <= self.fixed_counters <= INTEL_MAX_FIXED:
            raise ValueError(f"Intel PMU has 0..{INTEL_MAX_FIXED} fixed counters, not {self.fixed_counters}")
        if self.version == 1 and self.fixed_counters:
            raise ValueError("fixed counters need architectural perfmon version 2")
        if self.fixed_counters and not 32 <= self.fixed_width <= 64:
            raise ValueError(f"fixed counter width must be 32..64 bits, not {self.fixed_width}")
        if not 0 <= self.events_length <= 0xFF or not 0 <= self.events_mask <= 0xFFFFFFFF:
            raise ValueError("events_length must fit 8 bits and events_mask 32 bits")

    # -- derived facts ----------------------------------------------------------------------
    @property
    def unavailable_events(self) -> int:
        """Bit i set: architectural event i is unavailable (EBX bit set, or beyond the EBX length)."""
        return (self.events_mask | ~((1 << self.events_length) - 1)) & 0xFF

    @property
    def perf_capabilities(self) -> int:
        return (1 << 13) if self.full_width_writes else 0

    def replace(self, **changes) -> PmuConfig:
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    # -- CPUID --------------------------------------------------------------------------------
    @classmethod
    def from_cpuid(cls, cpuid, **policy) -> PmuConfig:
        """The PMU the guest's CPUID describes, clamped to what we emulate; ``policy`` sets the rest."""
        unknown = set(policy) - set(POLICY_FIELDS)
        if unknown:
            raise ValueError(f"unknown PMU policy {sorted(unknown)}; known: {', '.join(POLICY_FIELDS)}")
        if cpuid.vendor == "amd":
            v2 = cpuid.has("perfmon_v2")
            core = cpuid.has("perfctr_core") or v2
            counters = min(cpuid.query(0x80000022)[1] & 0xF, AMD_MAX_COUNTERS) if v2 else None
            return cls(vendor="amd", perfctr_core=core, perfmon_v2=v2, gp_counters=counters, **policy)
        eax, ebx, _, edx = cpuid.query(0xA)
        version = min(eax & 0xFF, 2)
        pdcm = cpuid.has("pdcm")
        policy.setdefault("full_width_writes", pdcm)
        if version == 0:
            return cls(vendor="intel", version=0, gp_counters=0, fixed_counters=0, pdcm=pdcm, **policy)
        fixed = min(edx & 0x1F, INTEL_MAX_FIXED) if version >= 2 else 0
        return cls(vendor="intel", version=version, gp_counters=min((eax >> 8) & 0xFF, INTEL_MAX_GP),
                   gp_width=(eax >> 16) & 0xFF, fixed_counters=fixed,
                   fixed_width=(edx >> 5) & 0xFF if fixed else 48, events_mask=ebx,
                   events_length=eax >> 24, pdcm=pdcm, **policy)

    def apply_to_cpuid(self, cpuid) -> None:
        """Make ``cpuid`` describe this PMU (and no PMU feature of the other vendor)."""
        if cpuid.vendor != self.vendor:
            raise ValueError(f"a {self.vendor} PMU cannot be described by a {cpuid.vendor} CPUID")
        if self.vendor == "intel":
            eax = ebx = edx = 0
            if self.version:
                eax = self.version | self.gp_counters << 8 | self.gp_width << 16 | self.events_length << 24
                ebx = self.events_mask
                if self.version >= 2:
                    edx = self.fixed_counters | (self.fixed_width if self.fixed_counters else 0) << 5
            cpuid.set_leaf(0xA, 0, eax, ebx, 0, edx)
            cpuid.set_feature("pdcm", self.pdcm)
            cpuid.set_feature("perfctr_core", False)
            cpuid.set_feature("perfmon_v2", False)
            return
        cpuid.set_leaf(0xA, 0, 0, 0, 0, 0)
        cpuid.set_feature("pdcm", False)
        cpuid.set_feature("perfctr_core", self.perfctr_core)
        eax, ebx, ecx, edx = cpuid.query(0x80000022)
        eax = (eax | 1) if self.perfmon_v2 else (eax & ~1)
        ebx = (ebx & ~0xF) | (self.gp_counters if self.perfmon_v2 else 0)
        cpuid.set_leaf(0x80000022, 0, eax, ebx, ecx, edx)
