# SPDX-License-Identifier: GPL-2.0-or-later
"""A configurable CPUID model: what the guest sees when it executes CPUID.

The model is a table of ``(leaf, subleaf) -> (eax, ebx, ecx, edx)`` built from a named CPU model
(vmm/cpu_models.py: vendor GenuineIntel or AuthenticAMD, family/model/stepping, brand string and
feature set; ``CpuidModel("intel")`` and ``CpuidModel("amd")`` are the generic models) and named
feature bits.  Devices that own leaves or bits (the PMU fills 0xA, 0x80000001 ECX[23], 0x80000022
and PDCM; the LAPIC keeps CPUID.1:EDX.APIC equal to IA32_APIC_BASE.EN) write them with
:meth:`CpuidModel.set_leaf` / :meth:`set_feature`; every change bumps :attr:`generation` so
dependants (the PMU's ``refresh()``) can tell they are stale.

Leaves that are not in the table read as zero, except that a leaf above the maximum basic
or extended leaf returns the highest basic leaf, as Intel CPUs do.  Hypervisor leaves
(0x40000000 up to 0x40000000.EAX) exist only when a device puts them there (devices/kvm_pv.py);
otherwise they are out of range like any other.  Leaves that take a subleaf
in ECX (:data:`SUBLEAF_LEAVES`) read as zero for subleaves not in the table; the others ignore ECX.

Bits that follow the vCPU's state (answered from ``vcpu.cr4()`` when a vCPU is attached):
CPUID.1:ECX.OSXSAVE[27] is CR4.OSXSAVE when XSAVE is advertised.

XSAVE (when advertised): leaf 0xD offers the x87 and SSE state components, the only ones the
engine saves and restores (both live in the 512-byte legacy area, so the save area is 576 bytes
whatever XCR0 enables); subleaf 1 carries the XSAVEOPT bit.  Without XSAVE, leaf 0xD is all zero.

Time leaves: on Intel, 0x15 (TSC/crystal ratio 1/1, crystal = the 1 GHz virtual clock) and 0x16
(base/max/bus MHz) tell the guest its TSC frequency, so Linux does not calibrate; AMD CPUs have no
such leaf and calibrate against the PIT, which runs on the same virtual clock.  CPUID
0x80000007:EDX[8] (invariant TSC) is set: the TSC rate never changes.

Topology (:meth:`CpuidModel.set_topology`, one model per vCPU): a single package of N cores with one
thread each, APIC ids 0..N-1; leaf 1 and leaf 0xB carry the vCPU's own id, 0xB the SMT and core
levels, AMD's 0x80000008:ECX the core count.

Control registers and EFER (:meth:`CpuidModel.reserved_bits`): a CR4 or EFER bit of a feature the
model does not advertise is reserved, so writing it is a #GP(0), as on a CPU without the feature; the
hook layer takes the masks from here whenever :attr:`generation` moves.

Not modelled: cache/TLB descriptor leaves (2, 4), AMD's 0x8000001E, leaf 0x1F, XSAVE state
components other than x87/SSE, SGX, and hypervisor leaves other than those a device adds.
Feature bits are only advertised, never enforced for instructions: a guest that uses an instruction
CPUID does not offer gets whatever the engine does with it (CR4 and EFER bits are checked, see above).
"""

from __future__ import annotations

from vmm.clock import CLOCK_HZ
from vmm.cpu_models import DEFAULT_FEATURES, DEFAULT_SIGNATURE, CpuidError, cpu_model

__all__ = ["DEFAULT_FEATURES", "DEFAULT_SIGNATURE", "FEATURES", "SUBLEAF_LEAVES", "VENDORS", "CpuidError",
           "CpuidModel"]

HYPERVISOR_BASE = 0x40000000     # the first hypervisor leaf: its EAX is the highest one

VENDORS = {
    "intel": b"GenuineIntel",
    "amd": b"AuthenticAMD",
}

# name -> (leaf, subleaf, register index 0..3 = eax/ebx/ecx/edx, bit).  vmm/cpu_models.py says which
# of them the engine executes (ENGINE_UNSUPPORTED lists those it does not).
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
    "sse3": (1, 0, 2, 0),
    "pclmulqdq": (1, 0, 2, 1),
    "ssse3": (1, 0, 2, 9),
    "cx16": (1, 0, 2, 13),
    "pdcm": (1, 0, 2, 15),
    "sse4_1": (1, 0, 2, 19),
    "sse4_2": (1, 0, 2, 20),
    "x2apic": (1, 0, 2, 21),
    "movbe": (1, 0, 2, 22),
    "popcnt": (1, 0, 2, 23),
    "tsc_deadline": (1, 0, 2, 24),
    "aes": (1, 0, 2, 25),
    "xsave": (1, 0, 2, 26),
    "avx": (1, 0, 2, 28),
    "rdrand": (1, 0, 2, 30),
    "pcid": (1, 0, 2, 17),  # process-context identifiers (CR4.PCIDE)
    "hypervisor": (1, 0, 2, 31),
    "fsgsbase": (7, 0, 1, 0),
    "tsc_adjust": (7, 0, 1, 1),  # IA32_TSC_ADJUST (MSR 0x3B), emulated by the hook layer
    "bmi1": (7, 0, 1, 3),
    "smep": (7, 0, 1, 7),
    "bmi2": (7, 0, 1, 8),
    "erms": (7, 0, 1, 9),  # enhanced REP MOVSB/STOSB
    "invpcid": (7, 0, 1, 10),
    "rdseed": (7, 0, 1, 18),
    "smap": (7, 0, 1, 20),
    "umip": (7, 0, 2, 2),
    "pku": (7, 0, 2, 3),
    "la57": (7, 0, 2, 16),  # 5-level paging (CR4.LA57)
    "rdpid": (7, 0, 2, 22),
    "fsrm": (7, 0, 3, 4),  # fast short REP MOVSB
    "arch_capabilities": (7, 0, 3, 29),
    "spec_ctrl": (7, 0, 3, 26),  # IBRS/IBPB on Intel
    "xsaveopt": (0xD, 1, 0, 0),
    "syscall": (0x80000001, 0, 3, 11),
    "nx": (0x80000001, 0, 3, 20),
    "pdpe1gb": (0x80000001, 0, 3, 26),
    "rdtscp": (0x80000001, 0, 3, 27),
    "lm": (0x80000001, 0, 3, 29),
    "lahf_lm": (0x80000001, 0, 2, 0),
    "abm": (0x80000001, 0, 2, 5),  # LZCNT
    "3dnowprefetch": (0x80000001, 0, 2, 8),  # PREFETCHW
    "perfctr_core": (0x80000001, 0, 2, 23),  # AMD PerfCtrExtCore
    "invtsc": (0x80000007, 0, 3, 8),     # invariant TSC: constant rate, runs in every C-state
    "amd_ibpb": (0x80000008, 0, 1, 12),
    "perfmon_v2": (0x80000022, 0, 0, 0),
}

#: Leaves whose ECX input selects a subleaf (Intel SDM / AMD APM); every other leaf ignores ECX.
SUBLEAF_LEAVES = frozenset({4, 7, 0xB, 0xD, 0xF, 0x10, 0x12, 0x14, 0x17, 0x18, 0x1D, 0x1F, 0x8000001D, 0x80000020})

CR4_OSXSAVE = 1 << 18
XSAVE_BIT = 1 << FEATURES["xsave"][3]   # CPUID.1:ECX
OSXSAVE_BIT = 1 << 27                   # CPUID.1:ECX: CR4.OSXSAVE
XCR0_X87_SSE = 0b11                     # the XSAVE state components the engine saves and restores
HTT_BIT = 1 << 28                        # CPUID.1:EDX: EBX[23:16] counts addressable logical processors
LEVEL_SMT, LEVEL_CORE = 1, 2             # leaf 0xB level types
XSAVE_AREA_SIZE = 512 + 64              # legacy region + XSAVE header: x87 and SSE live in the former

# CR4: VME, PVI, TSD, DE, PSE, PAE, MCE, PGE, PCE, OSFXSR and OSXMMEXCPT (bits 0-10) exist on every CPU
# that has long mode; each later bit is legal only where CPUID advertises its feature (SDM vol. 3 2.5).
# (CR4 bit, CPUID leaf, subleaf, register 0..3 = eax/ebx/ecx/edx, bit)
CR4_ALWAYS = 0x7FF
CR4_FEATURE_BITS = (
    (11, 7, 0, 2, 2),           # UMIP
    (12, 7, 0, 2, 16),          # LA57
    (13, 1, 0, 2, 5),           # VMXE: VMX
    (14, 1, 0, 2, 6),           # SMXE: SMX
    (16, 7, 0, 1, 0),           # FSGSBASE
    (17, 1, 0, 2, 17),          # PCIDE: PCID
    (18, 1, 0, 2, 26),          # OSXSAVE: XSAVE
    (19, 7, 0, 2, 23),          # KL: Key Locker
    (20, 7, 0, 1, 7),           # SMEP
    (21, 7, 0, 1, 20),          # SMAP
    (22, 7, 0, 2, 3),           # PKE: PKU
    (23, 7, 0, 2, 7),           # CET: CET shadow stacks
    (24, 7, 0, 2, 31),          # PKS
)
# EFER: LMA (bit 10) is the processor's to set (writes are ignored), the rest follow CPUID.
EFER_LMA = 1 << 10
EFER_FEATURE_BITS = (
    (0, 0x80000001, 0, 3, 11),  # SCE: SYSCALL
    (8, 0x80000001, 0, 3, 29),  # LME: long mode
    (11, 0x80000001, 0, 3, 20), # NXE: NX
    (12, 0x80000001, 0, 2, 2),  # SVME: SVM
    (14, 0x80000001, 0, 3, 25), # FFXSR: AMD fast FXSAVE/FXRSTOR
    (15, 0x80000001, 0, 2, 17), # TCE: AMD translation cache extension
)


def _words(text: bytes) -> tuple[int, ...]:
    return tuple(int.from_bytes(text[i:i + 4], "little") for i in range(0, len(text), 4))


class CpuidModel:
    """The guest's CPUID table for one named CPU model (vmm/cpu_models.py).

    ``cpu`` is a model name; ``family``/``model``/``stepping`` override its signature and
    ``features`` replaces its feature list.  ``vcpu`` (anything with ``cr4()``, see devices/vcpu.py)
    is where the bits that follow the vCPU's state are read from; without one they read 0.
    """

    def __init__(self, cpu: str = "intel", family: int | None = None, model: int | None = None,
                 stepping: int | None = None, features=None, vcpu=None):
        spec = cpu_model(cpu)
        self.cpu_model = spec
        self.vendor = spec.vendor
        self.family = spec.family if family is None else family
        self.model = spec.model if model is None else model
        self.stepping = spec.stepping if stepping is None else stepping
        # What CPUID.1:EAX can encode: family = base (4 bits) + extended (8 bits, only with base 0xF),
        # model = extended:base (4+4 bits), stepping 4 bits.  Anything else would silently change
        # another field.
        for name, value, limit in (("family", self.family, 0xF + 0xFF), ("model", self.model, 0xFF),
                                   ("stepping", self.stepping, 0xF)):
            if not 0 <= value <= limit:
                raise CpuidError(f"CPUID {name} {value:#x} cannot be encoded in CPUID.1:EAX (0-{limit:#x})")
        self.vcpu = vcpu
        self.generation = 0
        self._leaves: dict[tuple[int, int], list[int]] = {}
        self._build()
        for name in spec.features if features is None else features:
            self.set_feature(name, True)

    # -- construction -------------------------------------------------------------------
    def _build(self) -> None:
        vb, vd, vc = _words(VENDORS[self.vendor])
        self._leaves[(0, 0)] = [0x16 if self.vendor == "intel" else 0xD, vb, vc, vd]
        self._leaves[(1, 0)] = [self.signature(), 0x00010800, 0, 0]  # 1 logical CPU, CLFLUSH 64 B
        for leaf in (6, 7, 0xA, 0xB):
            self._leaves[(leaf, 0)] = [0, 0, 0, 0]
        # Read only while XSAVE is advertised (see query()).
        self._leaves[(0xD, 0)] = [XCR0_X87_SSE, XSAVE_AREA_SIZE, XSAVE_AREA_SIZE, 0]
        self._leaves[(0xD, 1)] = [0, 0, 0, 0]
        if self.vendor == "intel":
            # The TSC and the crystal (the APIC timer's clock) both run at the virtual clock's rate,
            # so a guest reads its TSC frequency here instead of calibrating against the PIT.
            mhz = CLOCK_HZ // 1_000_000
            self._leaves[(0x15, 0)] = [1, 1, CLOCK_HZ, 0]       # TSC/crystal = 1/1, crystal Hz
            self._leaves[(0x16, 0)] = [mhz, mhz, 100, 0]        # base, max and (reference) bus MHz
        self._leaves[(0x80000000, 0)] = [0x80000022, *(( vb, vc, vd) if self.vendor == "amd" else (0, 0, 0))]
        self._leaves[(0x80000001, 0)] = [self.signature() if self.vendor == "amd" else 0, 0, 0, 0]
        brand = self.cpu_model.brand.encode().ljust(48, b"\0")
        for i, leaf in enumerate((0x80000002, 0x80000003, 0x80000004)):
            self._leaves[(leaf, 0)] = list(_words(brand[16 * i:16 * i + 16]))
        self._leaves[(0x80000008, 0)] = [0x3030, 0, 0, 0]  # 48-bit physical and virtual addresses
        self._leaves[(0x80000022, 0)] = [0, 0, 0, 0]

    def set_topology(self, apic_id: int, nb_cpus: int) -> None:
        """This vCPU's place among ``nb_cpus`` single-threaded cores of one package."""
        if not 0 <= apic_id < nb_cpus <= 0xFF:
            raise CpuidError(f"APIC id {apic_id} of {nb_cpus} CPUs: ids are 0..N-1, N <= 255")
        core_bits = (nb_cpus - 1).bit_length()     # APIC id bits that number the cores
        eax, ebx, ecx, edx = self._leaves[(1, 0)]
        ebx = (ebx & 0xFFFF) | (apic_id << 24) | ((1 << core_bits) << 16)   # addressable ids: a power of two
        edx = (edx | HTT_BIT) if nb_cpus > 1 else (edx & ~HTT_BIT)
        self.set_leaf(1, 0, eax, ebx, ecx, edx)
        self.set_leaf(0xB, 0, 0, 1, LEVEL_SMT << 8, apic_id)
        self.set_leaf(0xB, 1, core_bits, nb_cpus, 1 | LEVEL_CORE << 8, apic_id)
        self.set_leaf(0xB, 2, 0, 0, 2, apic_id)     # level 2 is invalid: the list ends
        if self.vendor == "amd":
            eax, ebx, _, edx = self._leaves[(0x80000008, 0)]
            self.set_leaf(0x80000008, 0, eax, ebx, (nb_cpus - 1) | core_bits << 12, edx)

    def signature(self) -> int:
        """CPUID.1:EAX from family/model/stepping with the extended fields as the SDM encodes them."""
        fam, mod = self.family, self.model
        base_fam = min(fam, 0xF)
        ext_fam = fam - 0xF if fam >= 0xF else 0
        return (ext_fam << 20) | ((mod >> 4) << 16) | (base_fam << 8) | ((mod & 0xF) << 4) | (self.stepping & 0xF)

    # -- queries and updates --------------------------------------------------------------
    def query(self, leaf: int, subleaf: int = 0) -> tuple[int, int, int, int]:
        """What CPUID returns for EAX=leaf, ECX=subleaf, in the vCPU's current state."""
        regs = self._table(leaf, subleaf)
        if leaf == 1 and regs[2] & XSAVE_BIT and self.vcpu is not None and self.vcpu.cr4() & CR4_OSXSAVE:
            return regs[0], regs[1], regs[2] | OSXSAVE_BIT, regs[3]
        return regs

    def _table(self, leaf: int, subleaf: int) -> tuple[int, int, int, int]:
        """The table's answer, without the bits that follow the vCPU's state."""
        max_basic = self._leaves[(0, 0)][0]
        if (max_basic < leaf < 0x80000000 and not HYPERVISOR_BASE <= leaf <= self._max_hypervisor()) \
                or leaf > self._leaves[(0x80000000, 0)][0]:
            leaf = max_basic        # Intel: out-of-range leaves answer with the highest basic leaf
        regs = self._leaves.get((leaf, subleaf if leaf in SUBLEAF_LEAVES else 0))
        if regs is None or (leaf == 0xD and not self._leaves[(1, 0)][2] & XSAVE_BIT):
            return (0, 0, 0, 0)
        return regs[0], regs[1], regs[2], regs[3]

    def _max_hypervisor(self) -> int:
        """The highest hypervisor leaf (0x40000000.EAX when a hypervisor device set that leaf), else 0."""
        leaf = self._leaves.get((HYPERVISOR_BASE, 0))
        return 0 if leaf is None else leaf[0]

    def entries(self) -> tuple[int, int, int, list[tuple[int, int, bool, int, int, int, int]]]:
        """The table as :meth:`query` reads it, for a compiled copy (the vCPU hook layer's C path):
        the highest basic, hypervisor (0: none) and extended leaves, and ``(leaf, subleaf,
        takes_subleaf, eax, ebx, ecx, edx)`` per table entry that a lookup can reach (subleaf 0
        only, for leaves that ignore ECX), with :meth:`_table`'s answer.  The copy must send
        out-of-range leaves to the highest basic one, answer zero for what is not listed and add
        CPUID.1:ECX.OSXSAVE from CR4 itself.  Valid while :attr:`generation` is unchanged."""
        rows = []
        for leaf, subleaf in self._leaves:
            takes_subleaf = leaf in SUBLEAF_LEAVES
            if subleaf == 0 or takes_subleaf:
                rows.append((leaf, subleaf, takes_subleaf, *self._table(leaf, subleaf)))
        return self._leaves[(0, 0)][0], self._max_hypervisor(), self._leaves[(0x80000000, 0)][0], rows

    def reserved_bits(self) -> tuple[int, int, int]:
        """What a CPU with this model's features refuses (#GP(0)) to load: the reserved bits of CR4 and
        of IA32_EFER, and MAXPHYADDR (CPUID 0x80000008:EAX[7:0], 36 without that leaf), above which CR3
        bits are reserved in long mode.  EFER.LMSLE (AMD, bit 13) is always reserved: the engine does
        no segment-limit checks in 64-bit mode."""
        def has(leaf: int, subleaf: int, reg: int, bit: int) -> bool:
            return bool(self._table(leaf, subleaf)[reg] >> bit & 1)

        cr4 = CR4_ALWAYS
        for cr4_bit, *where in CR4_FEATURE_BITS:
            cr4 |= has(*where) << cr4_bit
        efer = EFER_LMA
        for efer_bit, *where in EFER_FEATURE_BITS:
            efer |= has(*where) << efer_bit
        max_ext = self._leaves[(0x80000000, 0)][0]
        maxphyaddr = self._table(0x80000008, 0)[0] & 0xFF if max_ext >= 0x80000008 else 36
        return ~cr4 & (1 << 64) - 1, ~efer & (1 << 64) - 1, maxphyaddr

    def set_leaf(self, leaf: int, subleaf: int, eax: int, ebx: int, ecx: int, edx: int) -> None:
        self._leaves[(leaf, subleaf)] = [eax & 0xFFFFFFFF, ebx & 0xFFFFFFFF, ecx & 0xFFFFFFFF, edx & 0xFFFFFFFF]
        self.generation += 1

    def has(self, name: str) -> bool:
        leaf, sub, reg, bit = self._feature(name)
        return bool(self._table(leaf, sub)[reg] >> bit & 1)

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
